//! The one module that turns persisted types into bytes and back.
//!
//! A record is `FORMAT_V1 ‖ postcard(Envelope)`. Because postcard writes fields in order with no
//! framing and `mac` is the envelope's last field (32 raw bytes), a record is also
//! `FORMAT_V1 ‖ body ‖ mac`, and the chain input `prev_mac ‖ body` is a slice of the record: the
//! chain can be verified without re-encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::Envelope;
use crate::error::Error;

/// The record format this version writes. Readers refuse formats they do not know.
pub const FORMAT_V1: u8 = 1;

/// Length of the MAC at the end of every record.
pub const MAC_LEN: usize = 32;

/// Encodes an envelope as a record.
pub fn encode_record(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + env.payload.len() + env.stream.len());
    out.push(FORMAT_V1);
    // Serializing plain structs of owned data into a Vec cannot fail.
    postcard::to_extend(env, out).expect("envelope serializes")
}

/// Decodes a record; `position` is only used to say where a corrupt record sits.
pub fn decode_record(position: u64, bytes: &[u8]) -> Result<Envelope, Error> {
    let (&format, rest) = bytes.split_first().ok_or_else(|| Error::Corrupt {
        position,
        reason: "empty record".into(),
    })?;
    if format != FORMAT_V1 {
        return Err(Error::UnknownFormat(format));
    }
    let (env, tail) = postcard::take_from_bytes::<Envelope>(rest).map_err(|e| Error::Corrupt {
        position,
        reason: e.to_string(),
    })?;
    if !tail.is_empty() {
        return Err(Error::Corrupt {
            position,
            reason: format!("{} trailing bytes", tail.len()),
        });
    }
    Ok(env)
}

/// The bytes the chain MAC covers (everything but the format byte and the MAC itself).
pub fn mac_body(record: &[u8]) -> Option<&[u8]> {
    if record.len() < 1 + MAC_LEN {
        return None;
    }
    Some(&record[1..record.len() - MAC_LEN])
}

pub fn encode_payload<T: Serialize>(payload: &T) -> Vec<u8> {
    postcard::to_stdvec(payload).expect("payload serializes")
}

pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| Error::Corrupt {
        position: 0,
        reason: format!("payload: {e}"),
    })
}

/// Encodes any value for snapshots and other internal state (same format as the log).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("value serializes")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| Error::Corrupt {
        position: 0,
        reason: e.to_string(),
    })
}
