//! Joining the network: a pre-auth key admits a device, which takes the organization's next
//! overlay address (see [`super::ipam`]).

use events::Expected;
use events::event::{DeviceRegistered, KeyUsed};
use events::stream::Stream;
use projections::OrgView;
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
}

/// Joins a device with `key`: the key's use and the device's registration, with the next
/// address of the organization (`ipam_revision` is the last revision of its `ipam:<org>`
/// stream, `None` before the first registration).
pub fn decide_register(
    key: &Key,
    ipam_revision: Option<u64>,
    cmd: Register,
    now: i64,
) -> Result<(KeyUsed, DeviceRegistered), RegisterRefusal> {
    check_key(key, now).map_err(RegisterRefusal::Key)?;
    let index = ipam_revision.map_or(0, |r| r + 1);
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
    let ipam_revision = org.ipam_revision();
    let device_id = cmd.device_id.clone();
    let holder = org
        .device_index()
        .and_then(|index| index.holder_of(cmd.public_key.as_str()))
        .and_then(|id| org.live_device(id));
    // A device whose key expired registers again with its own public key: it takes the
    // place of its old self, which could not authenticate any more, in the same append.
    let superseded = match holder {
        Some(d) if credential_valid(d, now).is_ok() => {
            return Err(RegisterRefusal::PublicKeyInUse {
                device_id: d.id.clone(),
            });
        }
        Some(d) => decide_remove(d, REREGISTERED).map(|e| (d, e)),
        None => None,
    };
    let (used, registered) = decide_register(key, ipam_revision, cmd, now)?;
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
    Ok(decision
        .expect(
            ipam.clone(),
            ipam_revision.map_or(Expected::NoStream, Expected::Exact),
        )
        .expect(Stream::key(key_id), Expected::Exact(key.revision))
        .event(ipam, used)
        .event(Stream::device(device_id), registered))
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
        let (used, reg) = decide_register(&key(), None, register(), NOW).unwrap();
        assert_eq!(used.uses, 1);
        assert_eq!(reg.hostname, "web-01");
        assert_eq!(reg.tags, vec!["tag:ci"]);
        assert_eq!(reg.owner.as_deref(), Some("alice@example.com"));
        assert!(reg.ephemeral);
        assert_eq!(reg.ipv4, "100.64.0.1");
        assert_eq!(reg.key_expires_at, None, "tagged devices do not expire");
    }

    #[test]
    fn addresses_follow_the_registration_count() {
        let (_, reg) = decide_register(&key(), Some(41), register(), NOW).unwrap();
        assert_eq!(reg.ipv4, "100.64.0.43");
        assert!(reg.ipv6.starts_with("fd"), "{}", reg.ipv6);
        assert!(reg.ipv6.ends_with(":2b"), "{}", reg.ipv6);
        assert_eq!(
            decide_register(&key(), Some(MAX_ALLOCATIONS - 1), register(), NOW).unwrap_err(),
            RegisterRefusal::AddressesExhausted
        );
    }

    #[test]
    fn an_untagged_device_expires_after_180_days() {
        let mut k = key();
        k.tags.clear();
        let (_, reg) = decide_register(&k, None, register(), NOW).unwrap();
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
                decide_register(&k, None, register(), NOW).unwrap_err(),
                RegisterRefusal::Key(why)
            );
        }
        let mut reusable = key();
        reusable.reusable = true;
        reusable.uses = 100;
        assert!(decide_register(&reusable, None, register(), NOW).is_ok());
    }
}
