//! Joining the network: a pre-auth key admits a device, which takes the organization's next
//! overlay address (see [`super::ipam`]).

use events::Expected;
use events::event::Plan;
use events::event::{DeviceRegistered, KeyUsed};
use events::stream::Stream;
use projections::OrgView;
use projections::devices::Addresses;
use projections::keys::Key;

use super::decision::Decision;
use super::devices::{credential_valid, decide_remove};
use super::hostname::Hostname;
use super::ipam::{ipv4_for, ipv6_for};
use super::public_key::PublicKey;

/// `reason` of a device removed because it registered again with the same public key.
pub const REREGISTERED: &str = "reregistered";

/// Devices joining with an untagged key must re-authenticate after this long (tagged devices
/// never expire: servers should not drop off the network because nobody logged in).
pub const NODE_KEY_LIFETIME_MICROS: i64 = 180 * 86_400 * 1_000_000;

/// Why a pre-auth key cannot be used to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Revoked,
    Expired,
    /// A single-use key that was used already.
    Used,
    /// A reusable key that reached its `max_uses`.
    Exhausted,
}

/// Whether `key` may admit one more device at `now`.
pub fn check_key(key: &Key, now: i64) -> Result<(), KeyRefusal> {
    if key.revoked_at.is_some() {
        Err(KeyRefusal::Revoked)
    } else if key.expires_at <= now {
        Err(KeyRefusal::Expired)
    } else if key.is_used() {
        Err(KeyRefusal::Used)
    } else if key.is_exhausted() {
        Err(KeyRefusal::Exhausted)
    } else {
        Ok(())
    }
}

/// A device asking to join, validated, with its id and credential hash already generated.
#[derive(Debug, Clone)]
pub struct Register {
    pub device_id: String,
    pub hostname: Hostname,
    pub os: String,
    pub os_version: String,
    pub public_key: PublicKey,
    pub credential_hash: [u8; 32],
}

/// How long a removed device's overlay address rests before another device may take it: long
/// enough for peers' caches, firewall rules and logs that name it to age out.
pub const ADDRESS_QUARANTINE_MICROS: i64 = 30 * 86_400 * 1_000_000;

/// The most live devices an organization of `plan` may have: a leaked reusable key can fill
/// an organization up to here, not to the end of its address space.
pub fn device_cap(plan: Plan) -> usize {
    match plan {
        Plan::Free => 100,
        Plan::Business => 10_000,
        Plan::Workforce => 1_000_000,
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterRefusal {
    Key(KeyRefusal),
    /// The organization has used up its address space.
    AddressesExhausted,
    /// A live device of the organization, which can still authenticate, holds the public key.
    PublicKeyInUse {
        device_id: String,
    },
    /// The organization has as many live devices as its plan allows.
    DeviceCap {
        plan: Plan,
        cap: usize,
    },
    /// The key's owner was removed from the directory, or deactivated: their keys admit
    /// nobody, so no device joins for a person who is gone.
    OwnerGone {
        why: &'static str,
    },
}

/// The overlay address index the organization's next device takes: the oldest address given
/// back at least [`ADDRESS_QUARANTINE_MICROS`] ago, else the first never handed out.
pub fn next_address(addresses: Option<&Addresses>, now: i64) -> u64 {
    let Some(a) = addresses else { return 0 };
    a.reusable(now.saturating_sub(ADDRESS_QUARANTINE_MICROS))
        .unwrap_or(a.fresh)
}

/// Joins a device with `key`: the key's use and the device's registration, with the overlay
/// address of `index`.
pub fn decide_register(
    key: &Key,
    index: u64,
    cmd: Register,
    now: i64,
) -> Result<(KeyUsed, DeviceRegistered), RegisterRefusal> {
    check_key(key, now).map_err(RegisterRefusal::Key)?;
    let ipv4 = ipv4_for(index).ok_or(RegisterRefusal::AddressesExhausted)?;
    let ipv6 = ipv6_for(&key.org_id, index);
    let key_expires_at = key
        .tags
        .is_empty()
        .then(|| now.saturating_add(NODE_KEY_LIFETIME_MICROS));
    Ok((
        KeyUsed {
            key_id: key.id.clone(),
            device_id: cmd.device_id.clone(),
            uses: key.uses.saturating_add(1),
        },
        DeviceRegistered {
            device_id: cmd.device_id,
            key_id: key.id.clone(),
            hostname: cmd.hostname.into_string(),
            os: cmd.os,
            os_version: cmd.os_version,
            public_key: cmd.public_key.into_string(),
            ipv4: ipv4.to_string(),
            ipv6: ipv6.to_string(),
            tags: key.tags.clone(),
            owner: key.owner.clone(),
            ephemeral: key.ephemeral,
            credential_hash: cmd.credential_hash,
            key_expires_at,
        },
    ))
}

/// Joins a device with pre-auth key `key_id` of the organization (see [`decide_register`]).
/// The decision expects the organization's address allocator and the key unchanged, so two
/// registrations can take neither the same address nor the last use of a key.
pub fn register(
    org: OrgView<'_>,
    key_id: &str,
    cmd: Register,
    now: i64,
) -> Result<Decision, RegisterRefusal> {
    // Keys are never dropped from the read model; a missing one (or another organization's)
    // cannot admit anybody.
    let key = org
        .key(key_id)
        .ok_or(RegisterRefusal::Key(KeyRefusal::Revoked))?;
    let device_id = cmd.device_id.clone();
    let (mut decision, index) = admit(org, &cmd, now, |_| false)?;
    if let Some(owner) = key.owner.as_deref() {
        match org.user(owner).or_else(|| org.user_by_email(owner)) {
            Some(u) if !u.active => {
                return Err(RegisterRefusal::OwnerGone {
                    why: "the key's owner is deactivated",
                });
            }
            // Expected unchanged: their removal racing this registration decides again.
            Some(u) => {
                decision = decision.expect(Stream::user(u.id.as_str()), Expected::Exact(u.revision))
            }
            None if crate::domain::ids::looks_like("usr", owner) => {
                return Err(RegisterRefusal::OwnerGone {
                    why: "the key's owner was removed from the organization",
                });
            }
            None => {}
        }
    }
    let (used, registered) = decide_register(key, index, cmd, now)?;
    Ok(decision
        .expect(Stream::key(key_id), Expected::Exact(key.revision))
        .event(Stream::ipam(org.id()), used)
        .event(Stream::device(device_id), registered))
}

/// What every registration decides before its admission (key or sign-in): the public key's
/// current holder, replaced in the same append when it can no longer authenticate (or when
/// `replaceable` says this registration may take its place); the plan's device cap; the overlay
/// address index. The decision expects the address allocator unchanged.
pub(super) fn admit(
    org: OrgView<'_>,
    cmd: &Register,
    now: i64,
    replaceable: impl Fn(&projections::devices::Device) -> bool,
) -> Result<(Decision, u64), RegisterRefusal> {
    let ipam_revision = org.ipam_revision();
    let holder = org
        .device_index()
        .and_then(|index| index.holder_of(cmd.public_key.as_str()))
        .and_then(|id| org.live_device(id));
    // A device whose key expired registers again with its own public key: it takes the
    // place of its old self, which could not authenticate any more, in the same append.
    let superseded = match holder {
        Some(d) if credential_valid(d, now).is_ok() && !replaceable(d) => {
            return Err(RegisterRefusal::PublicKeyInUse {
                device_id: d.id.clone(),
            });
        }
        Some(d) => decide_remove(d, REREGISTERED).map(|e| (d, e)),
        None => None,
    };
    // The replaced device's slot is free again in this same append.
    let live = org.device_count() - usize::from(superseded.is_some());
    let plan = org.settings().map(|o| o.plan).unwrap_or_default();
    if live >= device_cap(plan) {
        return Err(RegisterRefusal::DeviceCap {
            plan,
            cap: device_cap(plan),
        });
    }
    let index = next_address(org.addresses(), now);
    ipv4_for(index).ok_or(RegisterRefusal::AddressesExhausted)?;
    let ipam = Stream::ipam(org.id());
    let decision = match superseded {
        Some((old, removed)) => {
            let stream = Stream::device(old.id.as_str());
            Decision::none()
                .expect(stream.clone(), Expected::Exact(old.revision))
                .event(stream, removed)
        }
        None => Decision::none(),
    };
    Ok((
        decision.expect(
            ipam,
            ipam_revision.map_or(Expected::NoStream, Expected::Exact),
        ),
        index,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ipam::MAX_ALLOCATIONS;

    const NOW: i64 = 1_700_000_000_000_000;

    fn key() -> Key {
        Key {
            id: "key_1".into(),
            org_id: "org_1".into(),
            prefix: "qzk_abcdef".into(),
            secret_hash: [1; 32],
            reusable: false,
            ephemeral: true,
            tags: vec!["tag:ci".into()],
            owner: Some("alice@example.com".into()),
            expires_at: NOW + 3_600_000_000,
            description: String::new(),
            max_uses: None,
            uses: 0,
            created_at: NOW - 1,
            last_used_at: None,
            revoked_at: None,
            revision: 0,
        }
    }

    fn register() -> Register {
        Register {
            device_id: "dev_1".into(),
            hostname: Hostname::normalize("Web-01").unwrap(),
            os: "linux".into(),
            os_version: "6.1".into(),
            public_key: PublicKey::from_bytes(&[1; 32]),
            credential_hash: [2; 32],
        }
    }

    #[test]
    fn given_a_fresh_key_when_a_device_registers_then_it_inherits_the_keys_tags_and_owner() {
        let (used, reg) = decide_register(&key(), 0, register(), NOW).unwrap();
        assert_eq!(used.uses, 1);
        assert_eq!(reg.hostname, "web-01");
        assert_eq!(reg.tags, vec!["tag:ci"]);
        assert_eq!(reg.owner.as_deref(), Some("alice@example.com"));
        assert!(reg.ephemeral);
        assert_eq!(reg.ipv4, "100.64.0.1");
        assert_eq!(reg.key_expires_at, None, "tagged devices do not expire");
    }

    #[test]
    fn addresses_follow_the_index() {
        let (_, reg) = decide_register(&key(), 42, register(), NOW).unwrap();
        assert_eq!(reg.ipv4, "100.64.0.43");
        assert!(reg.ipv6.starts_with("fd"), "{}", reg.ipv6);
        assert!(reg.ipv6.ends_with(":2b"), "{}", reg.ipv6);
        assert_eq!(
            decide_register(&key(), MAX_ALLOCATIONS, register(), NOW).unwrap_err(),
            RegisterRefusal::AddressesExhausted
        );
    }

    #[test]
    fn a_released_address_is_reused_only_after_its_quarantine_oldest_first() {
        assert_eq!(next_address(None, NOW), 0);
        let mut a = Addresses {
            fresh: 10,
            released: imbl::Vector::new(),
        };
        assert_eq!(next_address(Some(&a), NOW), 10);
        a.released.push_back((NOW - ADDRESS_QUARANTINE_MICROS, 3));
        a.released
            .push_back((NOW - ADDRESS_QUARANTINE_MICROS - 1, 7));
        assert_eq!(next_address(Some(&a), NOW), 3, "the oldest removal first");
        assert_eq!(
            next_address(Some(&a), NOW - 1),
            10,
            "still resting: a fresh address"
        );
    }

    #[test]
    fn an_untagged_device_expires_after_180_days() {
        let mut k = key();
        k.tags.clear();
        let (_, reg) = decide_register(&k, 0, register(), NOW).unwrap();
        assert_eq!(reg.key_expires_at, Some(NOW + NODE_KEY_LIFETIME_MICROS));
    }

    #[test]
    fn spent_revoked_expired_and_exhausted_keys_are_refused() {
        let mut used = key();
        used.uses = 1;
        let mut revoked = key();
        revoked.revoked_at = Some(NOW);
        let mut expired = key();
        expired.expires_at = NOW;
        let mut exhausted = key();
        exhausted.reusable = true;
        exhausted.max_uses = Some(3);
        exhausted.uses = 3;
        for (k, why) in [
            (used, KeyRefusal::Used),
            (revoked, KeyRefusal::Revoked),
            (expired, KeyRefusal::Expired),
            (exhausted, KeyRefusal::Exhausted),
        ] {
            assert_eq!(
                decide_register(&k, 0, register(), NOW).unwrap_err(),
                RegisterRefusal::Key(why)
            );
        }
        let mut reusable = key();
        reusable.reusable = true;
        reusable.uses = 100;
        assert!(decide_register(&reusable, 0, register(), NOW).is_ok());
    }
}
