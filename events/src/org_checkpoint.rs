//! Organization checkpoints: "organization O's audit chain had hash H at its event `id` N",
//! signed with the log's checkpoint key.
//!
//! An export carries each event's link in its organization's audit chain (a SHA-256 chain that
//! needs no key, so an auditor can recompute it) and one of these for its last event. The links
//! show an event changed, inserted, removed or reordered; the signature shows the end was not
//! cut off and the whole chain not recomputed by someone editing the file, because only the
//! server holds the key. The log's own [`Checkpoint`](crate::Checkpoint) cannot serve here: it
//! covers every organization's records and names global positions, which a tenant must never
//! see.
//!
//! The signed message is
//! `"quickztna-org-checkpoint-v1\n" ‖ org_id ‖ "\n" ‖ id (u64 BE) ‖ hash ‖ time micros (i64 BE)`.
//! The newline after the org id ends it unambiguously: org ids never contain one.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointKey;
use crate::log::Log;

const DOMAIN: &[u8] = b"quickztna-org-checkpoint-v1\n";

/// A signed statement about one organization's audit chain. Its JSON has hex fields and an
/// RFC 3339 `time`, as `GET /audit-log/checkpoint` serves it and exports carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct OrgCheckpoint {
    pub org_id: String,
    /// The organization's event sequence number (`id` in the audit log) the hash is of.
    pub id: u64,
    /// The audit chain hash of event `id`.
    pub hash: [u8; 32],
    /// Microseconds since the Unix epoch when it was signed.
    pub time: i64,
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

impl CheckpointKey {
    /// Signs `(org_id, id, hash)` at `time` (microseconds).
    pub fn sign_org(&self, org_id: &str, id: u64, hash: [u8; 32], time: i64) -> OrgCheckpoint {
        OrgCheckpoint {
            org_id: org_id.to_owned(),
            id,
            hash,
            time,
            public_key: self.public_key(),
            signature: self.sign_message(&message(org_id, id, &hash, time)),
        }
    }
}

impl Log {
    /// Signs organization `org_id`'s audit chain hash `hash` of its event `id`, now, with the
    /// key that signs the log's checkpoints. The caller vouches that `hash` is that chain's.
    pub fn sign_org_checkpoint(&self, org_id: &str, id: u64, hash: [u8; 32]) -> OrgCheckpoint {
        self.checkpoint_key()
            .sign_org(org_id, id, hash, crate::now_micros())
    }

    /// The public half of the checkpoint key: what an auditor compares an export's key with.
    pub fn checkpoint_public_key(&self) -> [u8; 32] {
        self.checkpoint_key().public_key()
    }
}

impl OrgCheckpoint {
    /// Checks the signature against `expected` when given (the server's published key),
    /// otherwise against the checkpoint's own key, which proves only that nobody changed the
    /// checkpoint after whoever holds that key signed it.
    pub fn verify(&self, expected: Option<[u8; 32]>) -> Result<(), String> {
        if let Some(k) = expected
            && k != self.public_key
        {
            return Err(format!(
                "the checkpoint was signed by key {}, not by the expected key {}",
                hex::encode(self.public_key),
                hex::encode(k)
            ));
        }
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|e| format!("the checkpoint's public key is invalid: {e}"))?;
        key.verify_strict(
            &message(&self.org_id, self.id, &self.hash, self.time),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| "the checkpoint's signature does not verify".to_string())
    }
}

fn message(org_id: &str, id: u64, hash: &[u8; 32], time: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + org_id.len() + 1 + 48);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(org_id.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time.to_be_bytes());
    m
}

/// The JSON form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    org_id: String,
    id: u64,
    hash: String,
    time: String,
    public_key: String,
    signature: String,
}

impl From<OrgCheckpoint> for Wire {
    fn from(c: OrgCheckpoint) -> Wire {
        Wire {
            org_id: c.org_id,
            id: c.id,
            hash: hex::encode(c.hash),
            time: crate::format_time(c.time),
            public_key: hex::encode(c.public_key),
            signature: hex::encode(c.signature),
        }
    }
}

impl TryFrom<Wire> for OrgCheckpoint {
    type Error = String;

    fn try_from(w: Wire) -> Result<OrgCheckpoint, String> {
        let time: jiff::Timestamp = w
            .time
            .parse()
            .map_err(|e| format!("time {:?} is not RFC 3339: {e}", w.time))?;
        Ok(OrgCheckpoint {
            org_id: w.org_id,
            id: w.id,
            hash: hex_array("hash", &w.hash)?,
            time: time.as_microsecond(),
            public_key: hex_array("public_key", &w.public_key)?,
            signature: hex_array("signature", &w.signature)?,
        })
    }
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text).map_err(|e| format!("{field} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{field} has {} bytes, not {N}", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> CheckpointKey {
        CheckpointKey::from_bytes([seed; 32])
    }

    fn signed() -> OrgCheckpoint {
        key(7).sign_org("org_01ABC", 42, [9; 32], 1_764_000_000_123_456)
    }

    #[test]
    fn a_signed_checkpoint_verifies_against_its_key_and_round_trips_through_json() {
        let cp = signed();
        assert_eq!(cp.verify(None), Ok(()));
        assert_eq!(cp.verify(Some(key(7).public_key())), Ok(()));
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(json["hash"], hex::encode([9u8; 32]));
        assert_eq!(json["time"], "2025-11-24T16:00:00.123456Z");
        assert_eq!(json["id"], 42);
        let back: OrgCheckpoint = serde_json::from_value(json).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.verify(None), Ok(()));
    }

    #[test]
    fn changing_any_field_breaks_the_signature() {
        let cp = signed();
        let tampered: Vec<(&str, OrgCheckpoint)> = vec![
            (
                "org_id",
                OrgCheckpoint {
                    org_id: "org_01ABD".into(),
                    ..cp.clone()
                },
            ),
            (
                "org_id suffix",
                OrgCheckpoint {
                    org_id: "org_01ABC\n".into(),
                    ..cp.clone()
                },
            ),
            (
                "id",
                OrgCheckpoint {
                    id: 43,
                    ..cp.clone()
                },
            ),
            (
                "hash",
                OrgCheckpoint {
                    hash: {
                        let mut h = cp.hash;
                        h[31] ^= 1;
                        h
                    },
                    ..cp.clone()
                },
            ),
            (
                "time",
                OrgCheckpoint {
                    time: cp.time + 1,
                    ..cp.clone()
                },
            ),
            (
                "signature",
                OrgCheckpoint {
                    signature: {
                        let mut s = cp.signature;
                        s[0] ^= 1;
                        s
                    },
                    ..cp.clone()
                },
            ),
            (
                "public_key",
                OrgCheckpoint {
                    public_key: key(8).public_key(),
                    ..cp.clone()
                },
            ),
        ];
        for (field, t) in tampered {
            assert!(t.verify(None).is_err(), "a changed {field} still verifies");
        }
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_refused_when_the_key_is_given() {
        let forged = key(8).sign_org("org_01ABC", 42, [9; 32], 1);
        assert_eq!(forged.verify(None), Ok(()), "self-consistent");
        let err = forged.verify(Some(key(7).public_key())).unwrap_err();
        assert!(err.contains("not by the expected key"), "{err}");
    }

    #[test]
    fn malformed_json_is_refused_with_the_field_named() {
        let mut json = serde_json::to_value(signed()).unwrap();
        json["hash"] = "abcd".into();
        let err = serde_json::from_value::<OrgCheckpoint>(json).unwrap_err();
        assert!(err.to_string().contains("hash has 2 bytes"), "{err}");
        let mut json = serde_json::to_value(signed()).unwrap();
        json["time"] = "yesterday".into();
        let err = serde_json::from_value::<OrgCheckpoint>(json).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_checkpoint_round_trips_through_json_and_still_verifies(
            org in "org_[0-9a-z]{1,26}", id in 1u64.., hash in proptest::array::uniform32(0u8..),
            time in 0i64..4_102_444_800_000_000, seed in 0u8..,
        ) {
            let cp = key(seed).sign_org(&org, id, hash, time);
            let back: OrgCheckpoint =
                serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
            proptest::prop_assert_eq!(&back, &cp);
            proptest::prop_assert_eq!(back.verify(Some(key(seed).public_key())), Ok(()));
        }
    }

    #[test]
    fn the_log_signs_with_its_checkpoint_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), crate::LogOptions::default()).unwrap();
        let cp = log.sign_org_checkpoint("org_01", 1, [1; 32]);
        assert_eq!(cp.public_key, log.checkpoint_public_key());
        assert_eq!(cp.verify(Some(log.checkpoint_public_key())), Ok(()));
        log.close();
    }
}
