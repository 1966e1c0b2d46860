//! Devices: what joined the network, with which addresses, tags, owner and credential.
//!
//! Removed devices stay as tombstones (`removed_at` set): the API answers 404 for them, but a
//! repeated DELETE is still recognised, and a removed device's credential is still found so
//! that it gets "re-authentication required" rather than "invalid".
//!
//! Also folded here: each organization's address-allocation sequence, the stream `ipam:<org>`.
//! Every registration appends its `key.used` there, so the stream's revision counts
//! registrations and the next address is a pure function of it.

use std::sync::Arc;

use events::stream::Stream;
use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;
use crate::device_index::OrgDevices;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub org_id: String,
    /// The pre-auth key it joined with.
    pub key_id: String,
    pub hostname: String,
    pub os: String,
    /// As reported at registration; heartbeats may report newer ones (kept outside the log).
    pub os_version: String,
    pub public_key: String,
    pub ipv4: String,
    pub ipv6: String,
    /// Sorted, deduplicated.
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub ephemeral: bool,
    pub credential_hash: [u8; 32],
    pub key_expires_at: Option<i64>,
    /// Set by `device.key_expired`: the credential no longer works.
    pub key_expired: bool,
    pub created_at: i64,
    pub removed_at: Option<i64>,
    pub removed_reason: Option<String>,
    /// Last revision of the device's stream; mutations expect it unchanged.
    pub revision: u64,
    /// The org sequence number of the last event that changed this device.
    pub last_seq: u64,
}

impl Device {
    pub fn is_removed(&self) -> bool {
        self.removed_at.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    /// Every device ever registered, removed ones included (tombstones).
    ///
    /// Behind `Arc` for memory more than for clone cost: imbl allocates every HAMT node at its
    /// full width, each slot as large as the value, so inline ~400-byte devices made the
    /// structure cost 2.3× the devices themselves (BENCHMARKS.md, "Memory"). With a pointer
    /// per slot it is a small fraction. (`Arc<Device>` serializes as `Device`: the snapshot
    /// format is unchanged.)
    pub by_id: imbl::HashMap<String, Arc<Device>>,
    /// SHA-256 of a node credential → device id.
    ///
    /// Ordered rather than hashed for memory: imbl's HAMT nodes are allocated at full width,
    /// and with random keys the leaves stay sparse (335 B per device at 100,000 devices, against
    /// about a third of that in B-tree leaves). Both serialize as a map: snapshots are unchanged.
    pub by_credential: imbl::OrdMap<[u8; 32], String>,
    /// Per organization, its live devices, indexed for every list filter and sort.
    pub by_org: imbl::HashMap<String, OrgDevices>,
    /// Per organization, the last revision of its `ipam:<org>` stream.
    pub ipam: imbl::HashMap<String, u64>,
    /// Per organization, which overlay addresses were handed out and which were given back.
    pub addresses: imbl::HashMap<String, Addresses>,
    /// Per organization, its removed devices still in the read model, by `(removed_at, id)`:
    /// what retention purges first.
    pub removed: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
}

/// An organization's overlay addresses, by index (see the server's `domain::ipam`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// Indexes below this were handed out at least once.
    pub fresh: u64,
    /// Addresses of removed devices, oldest removal first: `(removed at, index)`. A
    /// registration takes the first one once its quarantine is over.
    pub released: imbl::Vector<(i64, u64)>,
}

impl Addresses {
    /// The oldest released address whose device was removed at or before `cutoff`.
    pub fn reusable(&self, cutoff: i64) -> Option<u64> {
        self.released
            .front()
            .filter(|(at, _)| *at <= cutoff)
            .map(|(_, index)| *index)
    }
}

/// The index of an overlay IPv4 address: 100.64.0.1 is 0. The inverse of the allocator's
/// `ipv4_for`; `None` for anything outside 100.64.0.0/10.
pub fn address_index(ipv4: &str) -> Option<u64> {
    let ip: std::net::Ipv4Addr = ipv4.parse().ok()?;
    let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 1));
    let offset = u32::from(ip).checked_sub(base)?;
    (offset < (1 << 22) - 2).then_some(u64::from(offset))
}

impl Devices {
    pub fn get(&self, id: &str) -> Option<&Device> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    pub fn by_credential_hash(&self, hash: &[u8; 32]) -> Option<&Device> {
        self.by_credential.get(hash).and_then(|id| self.get(id))
    }

    /// The organization's live devices, ordered by `(created_at, id)`.
    pub fn of_org(&self, org_id: &str) -> impl DoubleEndedIterator<Item = &Device> + '_ {
        self.by_org
            .get(org_id)
            .into_iter()
            .flat_map(|index| index.by_created.iter())
            .filter_map(|(_, id)| self.get(id))
    }

    /// The organization's live-device indexes (`None`: it has no live device).
    pub fn index(&self, org_id: &str) -> Option<&OrgDevices> {
        self.by_org.get(org_id)
    }

    /// The organization's live devices in `(created_at, id)` order (or reversed), starting
    /// after `after` (exclusive): a keyset page without scanning what comes before.
    pub fn of_org_after<'a>(
        &'a self,
        org_id: &str,
        after: Option<(i64, String)>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = &'a Device> + 'a> {
        let Some(set) = self.by_org.get(org_id).map(|i| &i.by_created) else {
            return Box::new(std::iter::empty());
        };
        let entries = crate::device_index::seek(set, after, descending);
        Box::new(entries.filter_map(|(_, id)| self.get(id)))
    }

    /// How many live devices the organization has.
    pub fn count(&self, org_id: &str) -> usize {
        self.by_org.get(org_id).map_or(0, |i| i.by_created.len())
    }

    /// The last revision of the organization's `ipam:<org>` stream (`None`: no registration yet).
    pub fn ipam_revision(&self, org_id: &str) -> Option<u64> {
        self.ipam.get(org_id).copied()
    }

    /// The organization's removed devices still in the read model, oldest removal first.
    pub fn removed_of_org(&self, org_id: &str) -> impl Iterator<Item = &(i64, String)> + '_ {
        self.removed.get(org_id).into_iter().flat_map(|s| s.iter())
    }

    /// The organization's overlay addresses (`None`: it never registered a device).
    pub fn addresses(&self, org_id: &str) -> Option<&Addresses> {
        self.addresses.get(org_id)
    }

    /// Applies `change` to a device, keeping its organization's indexes in step: a live device
    /// leaves them before the change and returns after it (unless the change removed it).
    fn touch(&mut self, r: &Recorded, id: &str, change: impl FnOnce(&mut Device)) {
        let Some(d) = self.by_id.get_mut(id).map(Arc::make_mut) else {
            return;
        };
        let was_live = !d.is_removed();
        if was_live && let Some(index) = self.by_org.get_mut(&d.org_id) {
            index.remove(d);
        }
        change(d);
        // Only events of the device's own stream move the revision its mutations expect.
        if matches!(Stream::parse(&r.envelope.stream), Ok(Stream::Device(d)) if d == id) {
            d.revision = r.envelope.revision;
        }
        d.last_seq = r.org_seq();
        if !d.is_removed() {
            self.by_org.entry(d.org_id.clone()).or_default().insert(d);
        } else if was_live && self.by_org.get(&d.org_id).is_some_and(OrgDevices::is_empty) {
            self.by_org.remove(&d.org_id);
        }
    }
}

impl Projection for Devices {
    const NAME: &'static str = "devices";
    const VERSION: u32 = 7;

    fn apply(&mut self, r: &Recorded) {
        if let Ok(Stream::Ipam(org)) = Stream::parse(&r.envelope.stream) {
            self.ipam.insert(org, r.envelope.revision);
        }
        match &r.event {
            Event::DeviceRegistered(e) => {
                let org_id = r.envelope.org_id.clone();
                let created_at = r.envelope.recorded_at;
                self.by_credential
                    .insert(e.credential_hash, e.device_id.clone());
                let mut tags = e.tags.clone();
                tags.sort();
                tags.dedup();
                let device = Device {
                    id: e.device_id.clone(),
                    org_id: org_id.clone(),
                    key_id: e.key_id.clone(),
                    hostname: e.hostname.clone(),
                    os: e.os.clone(),
                    os_version: e.os_version.clone(),
                    public_key: e.public_key.clone(),
                    ipv4: e.ipv4.clone(),
                    ipv6: e.ipv6.clone(),
                    tags,
                    owner: e.owner.clone(),
                    ephemeral: e.ephemeral,
                    credential_hash: e.credential_hash,
                    key_expires_at: e.key_expires_at,
                    key_expired: false,
                    created_at,
                    removed_at: None,
                    removed_reason: None,
                    revision: r.envelope.revision,
                    last_seq: r.org_seq(),
                };
                if let Some(index) = address_index(&e.ipv4) {
                    let addresses = self.addresses.entry(org_id.clone()).or_default();
                    if addresses.released.front().is_some_and(|(_, i)| *i == index) {
                        addresses.released.pop_front();
                    }
                    addresses.fresh = addresses.fresh.max(index + 1);
                }
                self.by_org.entry(org_id).or_default().insert(&device);
                self.by_id.insert(e.device_id.clone(), Arc::new(device));
            }
            Event::DeviceUpdated(e) => self.touch(r, &e.device_id, |d| {
                if let Some(h) = &e.hostname {
                    d.hostname = h.clone();
                }
            }),
            Event::DeviceTagged(e) => self.touch(r, &e.device_id, |d| {
                d.tags.extend(e.tags.iter().cloned());
                d.tags.sort();
                d.tags.dedup();
            }),
            Event::DeviceUntagged(e) => self.touch(r, &e.device_id, |d| {
                d.tags.retain(|t| !e.tags.contains(t));
            }),
            Event::DeviceOwnerChanged(e) => self.touch(r, &e.device_id, |d| d.owner = e.to.clone()),
            Event::DeviceKeyExpired(e) => self.touch(r, &e.device_id, |d| d.key_expired = true),
            Event::DeviceCredentialRotated(e) => {
                // The old credential stops working with this event: it no longer finds the
                // device at all (it was replaced, not revoked with the device).
                let Some(old) = self.by_id.get(&e.device_id).map(|d| d.credential_hash) else {
                    return;
                };
                self.by_credential.remove(&old);
                self.by_credential
                    .insert(e.credential_hash, e.device_id.clone());
                self.touch(r, &e.device_id, |d| d.credential_hash = e.credential_hash);
            }
            Event::DeviceRemoved(e) => {
                let mut released = None;
                self.touch(r, &e.device_id, |d| {
                    if d.removed_at.is_none() {
                        d.removed_at = Some(r.envelope.recorded_at);
                        d.removed_reason = Some(e.reason.clone());
                        released = Some((d.org_id.clone(), address_index(&d.ipv4)));
                    }
                });
                if let Some((org_id, index)) = released {
                    self.removed
                        .entry(org_id.clone())
                        .or_default()
                        .insert((r.envelope.recorded_at, e.device_id.clone()));
                    if let Some(index) = index {
                        let addresses = self.addresses.entry(org_id).or_default();
                        addresses
                            .released
                            .push_back((r.envelope.recorded_at, index));
                    }
                }
            }
            Event::DevicePurged(e) => {
                // Only a tombstone leaves: a live device is removed first, by its own event.
                if let Some(d) = self.by_id.get(&e.device_id).filter(|d| d.is_removed()) {
                    let (org_id, id, hash) = (d.org_id.clone(), d.id.clone(), d.credential_hash);
                    if let Some(set) = self.removed.get_mut(&org_id) {
                        set.remove(&(d.removed_at.unwrap_or_default(), id.clone()));
                        if set.is_empty() {
                            self.removed.remove(&org_id);
                        }
                    }
                    if self.by_credential.get(&hash) == Some(&id) {
                        self.by_credential.remove(&hash);
                    }
                    self.by_id.remove(&id);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use events::event::{
        DeviceCredentialRotated, DeviceRegistered, DeviceRemoved, DeviceTagged, KeyUsed,
    };
    use events::{Event, Recorded};

    use super::*;

    fn recorded(position: u64, stream: &str, revision: u64, event: impl Into<Event>) -> Recorded {
        crate::testing::recorded(
            position,
            "org_1",
            stream,
            revision,
            1_000 + position as i64,
            event,
        )
    }

    fn registered(id: &str) -> DeviceRegistered {
        DeviceRegistered {
            device_id: id.into(),
            key_id: "key_1".into(),
            hostname: id.into(),
            os: "linux".into(),
            os_version: "6.1".into(),
            public_key: "pk".into(),
            ipv4: "100.64.0.1".into(),
            ipv6: "fd00::1".into(),
            tags: vec!["tag:b".into(), "tag:a".into(), "tag:b".into()],
            owner: None,
            ephemeral: false,
            credential_hash: [id.len() as u8; 32],
            key_expires_at: None,
        }
    }

    fn history() -> Vec<Recorded> {
        let used = |d: &str, uses| KeyUsed {
            key_id: "key_1".into(),
            device_id: d.into(),
            uses,
        };
        vec![
            recorded(1, "ipam:org_1", 0, used("dev_a", 1)),
            recorded(2, "device:dev_a", 0, registered("dev_a")),
            recorded(3, "ipam:org_1", 1, used("dev_bb", 2)),
            recorded(4, "device:dev_bb", 0, registered("dev_bb")),
            recorded(
                5,
                "device:dev_a",
                1,
                DeviceTagged {
                    device_id: "dev_a".into(),
                    tags: vec!["tag:c".into(), "tag:a".into()],
                },
            ),
            recorded(
                6,
                "device:dev_bb",
                1,
                DeviceRemoved {
                    device_id: "dev_bb".into(),
                    reason: "api".into(),
                },
            ),
        ]
    }

    #[test]
    fn devices_fold_tags_tombstones_and_the_address_sequence() {
        let mut d = Devices::default();
        for r in history() {
            d.apply(&r);
        }
        assert_eq!(d.ipam_revision("org_1"), Some(1));
        assert_eq!(d.ipam_revision("org_2"), None);
        let a = d.get("dev_a").unwrap();
        assert_eq!(a.tags, vec!["tag:a", "tag:b", "tag:c"]);
        assert_eq!((a.revision, a.last_seq), (1, 5));
        let b = d.get("dev_bb").unwrap();
        assert!(b.is_removed());
        assert_eq!(b.removed_reason.as_deref(), Some("api"));
        assert_eq!(d.by_credential_hash(&[6; 32]).unwrap().id, "dev_bb");
        let live: Vec<&str> = d.of_org("org_1").map(|d| d.id.as_str()).collect();
        assert_eq!(live, vec!["dev_a"]);
        assert_eq!(d.count("org_1"), 1);
    }

    #[test]
    fn a_rotated_credential_finds_the_device_and_the_old_one_nothing() {
        let mut d = Devices::default();
        for r in history() {
            d.apply(&r);
        }
        d.apply(&recorded(
            7,
            "device:dev_a",
            2,
            DeviceCredentialRotated {
                device_id: "dev_a".into(),
                credential_hash: [42; 32],
            },
        ));
        assert!(d.by_credential_hash(&[5; 32]).is_none(), "the old one");
        let a = d.by_credential_hash(&[42; 32]).unwrap();
        assert_eq!((a.id.as_str(), a.credential_hash), ("dev_a", [42; 32]));
        assert_eq!((a.revision, a.last_seq), (2, 7));
    }

    #[test]
    fn pages_seek_past_the_cursor_in_either_direction() {
        let mut d = Devices::default();
        for (i, id) in ["dev_1", "dev_2", "dev_3"].iter().enumerate() {
            d.apply(&recorded(
                i as u64 + 1,
                &Stream::device(*id).to_string(),
                0,
                registered(id),
            ));
        }
        let ids = |it: Box<dyn Iterator<Item = &Device> + '_>| -> Vec<String> {
            it.map(|d| d.id.clone()).collect()
        };
        assert_eq!(
            ids(d.of_org_after("org_1", None, false)),
            ["dev_1", "dev_2", "dev_3"]
        );
        assert_eq!(
            ids(d.of_org_after("org_1", Some((1_002, "dev_2".into())), false)),
            ["dev_3"]
        );
        assert_eq!(
            ids(d.of_org_after("org_1", Some((1_002, "dev_2".into())), true)),
            ["dev_1"]
        );
        assert!(ids(d.of_org_after("org_9", None, false)).is_empty());
    }

    #[test]
    fn the_org_indexes_follow_tags_hostnames_and_removals() {
        let mut d = Devices::default();
        for r in history() {
            d.apply(&r);
        }
        let index = d.index("org_1").unwrap();
        let ids = |set: Option<&imbl::OrdSet<(i64, String)>>| -> Vec<String> {
            set.into_iter()
                .flatten()
                .map(|(_, id)| id.clone())
                .collect()
        };
        assert_eq!(ids(index.tagged("tag:c")), ["dev_a"]);
        // dev_bb was removed: it leaves every set, and empty sets leave their maps.
        assert_eq!(ids(index.tagged("tag:b")), ["dev_a"]);
        assert_eq!(ids(index.with_os("LINUX")), ["dev_a"]);
        assert!(index.hostname_is("dev_bb").next().is_none());
        assert_eq!(index.hostname_prefix("dev_").count(), 1);
        assert_eq!(index.by_tag.len(), 3);
        d.apply(&recorded(
            7,
            "device:dev_a",
            2,
            DeviceRemoved {
                device_id: "dev_a".into(),
                reason: "api".into(),
            },
        ));
        assert!(d.index("org_1").is_none(), "no live device, no index");
    }

    #[test]
    fn a_snapshot_of_the_devices_decodes_to_the_same_state() {
        let mut d = Devices::default();
        for r in history() {
            d.apply(&r);
        }
        let bytes = events::codec::encode(&d);
        let back: Devices = events::codec::decode(&bytes).unwrap();
        assert_eq!(back, d);
    }
}
