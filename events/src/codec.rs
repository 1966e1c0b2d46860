//! The one module that turns persisted types into bytes and back.
//!
//! A record is `FORMAT_V2 ‖ postcard(Envelope)`. Because postcard writes fields in order with no
//! framing and `mac` is the envelope's last field (32 raw bytes), a record is also
//! `FORMAT_V2 ‖ body ‖ mac`, and the chain input `prev_mac ‖ body` is a slice of the record: the
//! chain can be verified without re-encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Actor, Envelope, EnvelopeRef, EnvelopeV1};
use crate::error::Error;

/// The first record format: no per-org sequence. Still decoded, never written.
pub const FORMAT_V1: u8 = 1;
/// The record format this version writes: [`Envelope`] with the org sequence.
pub const FORMAT_V2: u8 = 2;

/// Length of the MAC at the end of every record.
pub const MAC_LEN: usize = 32;

/// Encodes an envelope as a record.
pub fn encode_record(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + env.payload.len() + env.stream.len());
    out.push(FORMAT_V2);
    // Serializing plain structs of owned data into a Vec cannot fail.
    postcard::to_extend(env, out).expect("envelope serializes")
}

/// The caller's part of a record: every envelope field from `stream` to `payload`, encoded
/// before the request is queued so the writer thread does not spend its time on it.
pub fn encode_tail(
    stream: &str,
    event_type: &str,
    schema_version: u16,
    org_id: &str,
    actor: &Actor,
    request_id: &str,
    payload: &[u8],
) -> Vec<u8> {
    let fields = (
        stream,
        event_type,
        schema_version,
        org_id,
        actor,
        request_id,
        payload,
    );
    let out = Vec::with_capacity(64 + stream.len() + payload.len() + request_id.len());
    postcard::to_extend(&fields, out).expect("fields serialize")
}

/// The writer's part: the fields it assigns, then the caller's `tail`, then room for the MAC.
/// Equal, byte for byte, to [`encode_record`] of the same envelope with a zero MAC (tested).
pub fn assemble_record(
    position: u64,
    org_seq: u64,
    revision: u64,
    event_id: [u8; 16],
    recorded_at: i64,
    tail: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 48 + tail.len() + MAC_LEN);
    out.push(FORMAT_V2);
    let head = (position, org_seq, revision, event_id, recorded_at);
    let mut out = postcard::to_extend(&head, out).expect("integers serialize");
    out.extend_from_slice(tail);
    out.extend_from_slice(&[0u8; MAC_LEN]);
    out
}

/// Decodes a record; `position` is only used to say where a corrupt record sits.
pub fn decode_record(position: u64, bytes: &[u8]) -> Result<Envelope, Error> {
    let (&format, rest) = bytes.split_first().ok_or_else(|| Error::Corrupt {
        position,
        reason: "empty record".into(),
    })?;
    match format {
        FORMAT_V2 => decode_exact::<Envelope>(position, rest),
        FORMAT_V1 => decode_exact::<EnvelopeV1>(position, rest).map(Envelope::from),
        other => Err(Error::UnknownFormat(other)),
    }
}

/// Decodes a format-2 record's envelope in place, without allocating.
pub fn decode_ref(position: u64, bytes: &[u8]) -> Result<EnvelopeRef<'_>, Error> {
    let (&format, rest) = bytes.split_first().ok_or_else(|| Error::Corrupt {
        position,
        reason: "empty record".into(),
    })?;
    match format {
        FORMAT_V2 => decode_exact::<EnvelopeRef<'_>>(position, rest),
        FORMAT_V1 => Err(Error::Corrupt {
            position,
            reason: "format 1 record where format 2 is required".into(),
        }),
        other => Err(Error::UnknownFormat(other)),
    }
}

/// The format byte of a record, if it has one.
pub fn format_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

fn decode_exact<'a, T: serde::Deserialize<'a>>(position: u64, bytes: &'a [u8]) -> Result<T, Error> {
    let (value, tail) = postcard::take_from_bytes::<T>(bytes).map_err(|e| Error::Corrupt {
        position,
        reason: e.to_string(),
    })?;
    if !tail.is_empty() {
        return Err(Error::Corrupt {
            position,
            reason: format!("{} trailing bytes", tail.len()),
        });
    }
    Ok(value)
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
