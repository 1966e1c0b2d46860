//! Each organization's audit chain: a SHA-256 hash chain over its events, in the shape the API
//! serves them, so that an auditor can check an export offline with no key and no data dir.
//!
//! The log's own HMAC chain cannot serve auditors: it needs the server's secret key, and it runs
//! through every organization's events in log order, so a single organization's export has holes
//! in it. This chain runs through one organization's events in sequence order (`id` 1, 2, 3, …):
//!
//! `hash(n) = SHA-256("quickztna-audit-chain-v1\n" ‖ hash(n-1) ‖ canonical(event n))`
//!
//! with `hash(0)` 32 zero bytes, and `canonical` the compact JSON of the event view without its
//! `chain` field. The server keeps the chain as a projection ([`digests`](super::digests)) and
//! signs its head on request (an organization checkpoint, Ed25519 with the log's checkpoint key):
//! an export that carries the chain links and a signed checkpoint of its last event shows any
//! changed, inserted, removed or reordered event, and a cut-off end.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::http::event_view::EventView;

const DOMAIN: &[u8] = b"quickztna-audit-chain-v1\n";

/// A chain hash.
pub type Hash = [u8; 32];

/// The chain's value before an organization's first event.
pub const GENESIS: Hash = [0; 32];

/// An event's place in its organization's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainLink {
    /// The chain hash of the organization's previous event (`id - 1`), hex; 64 zeros for its
    /// first event.
    pub previous: String,
    /// This event's chain hash, hex: SHA-256 of the domain, `previous` and the event's
    /// canonical JSON.
    pub hash: String,
}

/// The bytes of `view` the chain covers: its compact JSON, without the `chain` field.
pub fn canonical(view: &EventView) -> Vec<u8> {
    if view.chain.is_none() {
        return serde_json::to_vec(view).expect("an event view serializes");
    }
    let mut bare = view.clone();
    bare.chain = None;
    serde_json::to_vec(&bare).expect("an event view serializes")
}

/// The chain hash of an event whose predecessor's hash is `previous`.
pub fn next(previous: &Hash, view: &EventView) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(previous);
    if view.chain.is_some() {
        h.update(canonical(view));
    } else {
        // Straight into the hasher: the projection folds every event through here.
        serde_json::to_writer(HashWriter(&mut h), view).expect("an event view serializes");
    }
    h.finalize().into()
}

/// Feeds serialized bytes to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The link to attach to `view`.
pub fn link(previous: &Hash, view: &EventView) -> (ChainLink, Hash) {
    let hash = next(previous, view);
    (
        ChainLink {
            previous: hex::encode(previous),
            hash: hex::encode(hash),
        },
        hash,
    )
}

/// Parses a hex hash.
pub fn parse_hash(hex_text: &str) -> Option<Hash> {
    hex::decode(hex_text).ok()?.try_into().ok()
}
