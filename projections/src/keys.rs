//! Pre-auth keys: who may join the network, with which tags and owner, how often, until when.

use std::sync::Arc;

use events::stream::Stream;
use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub org_id: String,
    /// The first characters of the key, safe to show (`qzk_ab12cd`).
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub reusable: bool,
    /// Devices joining with it are removed automatically once offline for a while.
    pub ephemeral: bool,
    /// Given to every device that joins with it (sorted, deduplicated).
    pub tags: Vec<String>,
    /// Given to every device that joins with it.
    pub owner: Option<String>,
    pub expires_at: i64,
    pub description: String,
    pub max_uses: Option<u32>,
    /// Devices that joined with it so far.
    pub uses: u32,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Last revision of the key's own stream (`key:<id>`): registrations expect it unchanged, so
    /// a revocation cannot slip between the decision and the append.
    pub revision: u64,
}

impl Key {
    /// True when the single use of a non-reusable key has been spent.
    pub fn is_used(&self) -> bool {
        !self.reusable && self.uses >= 1
    }

    /// True when a reusable key has reached its `max_uses`.
    pub fn is_exhausted(&self) -> bool {
        self.reusable && self.max_uses.is_some_and(|m| self.uses >= m)
    }

    /// `revoked`, `expired`, `used`, `exhausted` or `active`, in that order of precedence.
    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else if self.is_used() {
            "used"
        } else if self.is_exhausted() {
            "exhausted"
        } else {
            "active"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// Behind `Arc`: after the runner publishes a state, the next `apply` copies the nodes on
    /// its path, and a copied node then copies pointers instead of cloning whole keys.
    /// (`Arc<Key>` serializes as `Key`: the snapshot format is unchanged.)
    pub by_id: imbl::HashMap<String, Arc<Key>>,
    /// SHA-256 of the secret → key id: how a presented pre-auth key is found.
    pub by_hash: imbl::HashMap<[u8; 32], String>,
    /// Per organization, its keys (revoked ones too) ordered by `(created_at, id)`.
    pub by_org: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
}

impl Keys {
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    pub fn by_secret_hash(&self, hash: &[u8; 32]) -> Option<&Key> {
        self.by_hash.get(hash).and_then(|id| self.get(id))
    }
}

impl Projection for Keys {
    const NAME: &'static str = "keys";
    const VERSION: u32 = 2;

    fn apply(&mut self, r: &Recorded) {
        let own_stream =
            |id: &str| matches!(Stream::parse(&r.envelope.stream), Ok(Stream::Key(k)) if k == id);
        match &r.event {
            Event::KeyCreated(e) => {
                self.by_hash.insert(e.secret_hash, e.key_id.clone());
                self.by_org
                    .entry(r.envelope.org_id.clone())
                    .or_default()
                    .insert((r.envelope.recorded_at, e.key_id.clone()));
                self.by_id.insert(
                    e.key_id.clone(),
                    Arc::new(Key {
                        id: e.key_id.clone(),
                        org_id: r.envelope.org_id.clone(),
                        prefix: e.prefix.clone(),
                        secret_hash: e.secret_hash,
                        reusable: e.reusable,
                        ephemeral: e.ephemeral,
                        tags: e.tags.clone(),
                        owner: e.owner.clone(),
                        expires_at: e.expires_at,
                        description: e.description.clone(),
                        max_uses: e.max_uses,
                        uses: 0,
                        created_at: r.envelope.recorded_at,
                        last_used_at: None,
                        revoked_at: None,
                        revision: r.envelope.revision,
                    }),
                );
            }
            Event::KeyPurged(e) => {
                if let Some(k) = self.by_id.remove(&e.key_id) {
                    self.by_hash.remove(&k.secret_hash);
                    if let Some(set) = self.by_org.get_mut(&k.org_id) {
                        set.remove(&(k.created_at, k.id.clone()));
                    }
                }
            }
            Event::KeyUsed(e) => {
                if let Some(k) = self.by_id.get_mut(&e.key_id).map(Arc::make_mut) {
                    k.uses = k.uses.max(e.uses);
                    k.last_used_at = Some(r.envelope.recorded_at);
                    if own_stream(&e.key_id) {
                        k.revision = r.envelope.revision;
                    }
                }
            }
            Event::KeyRevoked(e) => {
                if let Some(k) = self.by_id.get_mut(&e.key_id).map(Arc::make_mut) {
                    k.revoked_at.get_or_insert(r.envelope.recorded_at);
                    if own_stream(&e.key_id) {
                        k.revision = r.envelope.revision;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use events::event::{KeyCreated, KeyRevoked, KeyUsed};
    use events::{Event, Recorded};

    use super::*;

    fn recorded(position: u64, stream: &str, revision: u64, event: impl Into<Event>) -> Recorded {
        crate::testing::recorded(
            position,
            "org_1",
            stream,
            revision,
            10 * position as i64,
            event,
        )
    }

    fn created(reusable: bool, max_uses: Option<u32>) -> KeyCreated {
        KeyCreated {
            key_id: "key_1".into(),
            prefix: "qzk_abcdef".into(),
            secret_hash: [9; 32],
            reusable,
            ephemeral: false,
            tags: vec![],
            owner: None,
            expires_at: 1_000,
            description: String::new(),
            max_uses,
        }
    }

    fn used(uses: u32) -> KeyUsed {
        KeyUsed {
            key_id: "key_1".into(),
            device_id: format!("dev_{uses}"),
            uses,
        }
    }

    #[test]
    fn status_follows_uses_expiry_and_revocation() {
        let mut keys = Keys::default();
        keys.apply(&recorded(1, "key:key_1", 0, created(true, Some(2))));
        assert_eq!(keys.get("key_1").unwrap().status(100), "active");
        keys.apply(&recorded(2, "ipam:org_1", 0, used(1)));
        keys.apply(&recorded(3, "ipam:org_1", 1, used(2)));
        let k = keys.get("key_1").unwrap();
        assert_eq!((k.uses, k.revision, k.last_used_at), (2, 0, Some(30)));
        assert_eq!(k.status(100), "exhausted");
        assert_eq!(k.status(1_000), "expired");
        keys.apply(&recorded(
            4,
            "key:key_1",
            1,
            KeyRevoked {
                key_id: "key_1".into(),
            },
        ));
        let k = keys.get("key_1").unwrap();
        assert_eq!((k.status(100), k.revision), ("revoked", 1));
        assert_eq!(keys.by_secret_hash(&[9; 32]).unwrap().id, "key_1");
    }

    #[test]
    fn a_single_use_key_is_used_after_one_device() {
        let mut keys = Keys::default();
        keys.apply(&recorded(1, "key:key_1", 0, created(false, None)));
        keys.apply(&recorded(2, "ipam:org_1", 0, used(1)));
        assert_eq!(keys.get("key_1").unwrap().status(100), "used");
    }
}
