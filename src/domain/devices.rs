//! Decisions about devices: joining with a pre-auth key, renaming, tagging, reassigning,
//! force-expiring and removing; and the value types they take (`Tag`, `Hostname`).
//!
//! Overlay addresses are a pure function of the organization and of its registration count
//! (the revision of its `ipam:<org>` stream), so the log alone decides them: IPv4 from
//! 100.64.0.0/10 in order (100.64.0.1, 100.64.0.2, …), IPv6 in the organization's own ULA /48
//! (`fd` + 40 bits of SHA-256 of the org id, as RFC 4193 asks) with the same index as
//! interface id. Addresses of removed devices are not reused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use events::Event;
use events::Expected;
use events::event::{
    DeviceKeyExpired, DeviceOwnerChanged, DeviceRegistered, DeviceRemoved, DeviceTagged,
    DeviceUntagged, DeviceUpdated, KeyUsed,
};
use events::stream::Stream;
use projections::Models;
use projections::devices::Device;
use projections::keys::Key;
use sha2::{Digest, Sha256};

use super::Rejection;
use super::decision::Decision;

/// Longest tag name after `tag:`.
pub const MAX_TAG_NAME: usize = 63;
/// Most tags a device or a key may carry.
pub const MAX_TAGS: usize = 64;
/// Devices joining with an untagged key must re-authenticate after this long (tagged devices
/// never expire: servers should not drop off the network because nobody logged in).
pub const NODE_KEY_LIFETIME_MICROS: i64 = 180 * 86_400 * 1_000_000;
/// Registrations an organization can make: 100.64.0.0/10 minus its first and last address.
pub const MAX_ALLOCATIONS: u64 = (1 << 22) - 2;

/// A device tag, `tag:` followed by 1–63 of `a-z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let ok = s.strip_prefix("tag:").is_some_and(|name| {
            (1..=MAX_TAG_NAME).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a tag: expected 'tag:' followed by 1 to 63 of a-z, 0-9 and '-'"
            ))
        }
    }

    /// Like [`Tag::parse`], but `production` is taken as `tag:production` (filters, paths).
    pub fn parse_lenient(s: &str) -> Result<Tag, String> {
        if s.starts_with("tag:") {
            Tag::parse(s)
        } else {
            Tag::parse(&format!("tag:{s}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a list of tags for `field`, sorted and deduplicated.
pub fn parse_tags(field: &str, items: &[String]) -> Result<Vec<Tag>, Rejection> {
    if items.len() > MAX_TAGS {
        return Err(Rejection::Invalid(format!(
            "field '{field}' may hold at most {MAX_TAGS} tags"
        )));
    }
    let mut tags = items
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Rejection::Invalid(format!("field '{field}': {e}")))?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// A device's hostname: 1–63 of `a-z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Parses a hostname exactly as given (the admin API: uppercase is an error there).
    pub fn parse(s: &str) -> Result<Hostname, String> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Hostname(s.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a valid hostname: it must match [a-z0-9-]{{1,63}}",
                s.escape_debug()
            ))
        }
    }

    /// Lower-cases first, then parses (what a device reports: `Web-01` joins as `web-01`).
    pub fn normalize(s: &str) -> Result<Hostname, String> {
        Hostname::parse(&s.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks a free-text field: `min..=max` characters, no control characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Rejection::Invalid(if min == 0 {
            format!("field '{field}' must be at most {max} characters")
        } else {
            format!("field '{field}' must be {min} to {max} characters")
        }));
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::Invalid(format!(
            "field '{field}' must not contain control characters"
        )));
    }
    Ok(())
}

/// The IPv4 address of the organization's `index`-th registration (0-based).
pub fn ipv4_for(index: u64) -> Option<Ipv4Addr> {
    if index >= MAX_ALLOCATIONS {
        return None;
    }
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    Some(Ipv4Addr::from(base + 1 + index as u32))
}

/// The IPv6 address of the organization's `index`-th registration: its ULA /48, subnet 0,
/// interface id `index + 1`.
pub fn ipv6_for(org_id: &str, index: u64) -> Ipv6Addr {
    let digest = Sha256::digest(format!("quickztna ula {org_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes[0] = 0xfd;
    bytes[1..6].copy_from_slice(&digest[..5]);
    bytes[8..16].copy_from_slice(&(index + 1).to_be_bytes());
    Ipv6Addr::from(bytes)
}

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
    pub public_key: String,
    pub credential_hash: [u8; 32],
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterRefusal {
    Key(KeyRefusal),
    /// The organization has used up its address space.
    AddressesExhausted,
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
            public_key: cmd.public_key,
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

/// Finds a live device of `org_id`; another organization's device is indistinguishable from a
/// missing one.
pub fn live<'a>(
    device: Option<&'a Device>,
    org_id: &str,
    id: &str,
) -> Result<&'a Device, Rejection> {
    match device {
        Some(d) if d.org_id == org_id && !d.is_removed() => Ok(d),
        _ => Err(Rejection::NotFound(format!("no device '{id}'"))),
    }
}

/// What a PATCH asks to change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub hostname: Option<Hostname>,
    /// The complete new tag list.
    pub tags: Option<Vec<Tag>>,
    /// `Some(None)` clears the owner.
    pub owner: Option<Option<String>>,
}

/// The events that bring `device` to the requested state (none when nothing changes).
pub fn decide_update(device: &Device, update: Update) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(h) = update.hostname
        && h.as_str() != device.hostname
    {
        out.push(
            DeviceUpdated {
                device_id: device.id.clone(),
                hostname: Some(h.into_string()),
            }
            .into(),
        );
    }
    if let Some(tags) = update.tags {
        let wanted: Vec<String> = tags.into_iter().map(Tag::into_string).collect();
        if let Some(e) = decide_tag(device, &wanted) {
            out.push(e.into());
        }
        let gone: Vec<String> = device
            .tags
            .iter()
            .filter(|t| !wanted.contains(t))
            .cloned()
            .collect();
        if !gone.is_empty() {
            out.push(
                DeviceUntagged {
                    device_id: device.id.clone(),
                    tags: gone,
                }
                .into(),
            );
        }
    }
    if let Some(owner) = update.owner
        && owner != device.owner
    {
        out.push(
            DeviceOwnerChanged {
                device_id: device.id.clone(),
                from: device.owner.clone(),
                to: owner,
            }
            .into(),
        );
    }
    out
}

/// Adds the tags the device lacks; `None` when it has them all.
pub fn decide_tag(device: &Device, tags: &[String]) -> Option<DeviceTagged> {
    let mut added: Vec<String> = tags
        .iter()
        .filter(|t| !device.tags.contains(t))
        .cloned()
        .collect();
    added.sort();
    added.dedup();
    (!added.is_empty()).then(|| DeviceTagged {
        device_id: device.id.clone(),
        tags: added,
    })
}

/// Removes a tag; `None` when the device does not carry it (removal is idempotent).
pub fn decide_untag(device: &Device, tag: &Tag) -> Option<DeviceUntagged> {
    device
        .tags
        .iter()
        .any(|t| t == tag.as_str())
        .then(|| DeviceUntagged {
            device_id: device.id.clone(),
            tags: vec![tag.to_string()],
        })
}

/// Force-expires the device's authentication; `None` when it already is.
pub fn decide_expire_key(device: &Device) -> Option<DeviceKeyExpired> {
    (!device.key_expired).then(|| DeviceKeyExpired {
        device_id: device.id.clone(),
    })
}

/// Removes a device of `org_id`. `Ok(None)` when it was removed already (DELETE is idempotent
/// for devices that existed); 404 for ids that never existed in this organization.
pub fn decide_remove(
    device: Option<&Device>,
    org_id: &str,
    id: &str,
    reason: &str,
) -> Result<Option<DeviceRemoved>, Rejection> {
    match device {
        Some(d) if d.org_id == org_id => Ok((!d.is_removed()).then(|| DeviceRemoved {
            device_id: d.id.clone(),
            reason: reason.to_owned(),
        })),
        _ => Err(Rejection::NotFound(format!("no device '{id}'"))),
    }
}

/// Whether a device's credential still works at `now`; `Err` says why it does not.
pub fn credential_valid(device: &Device, now: i64) -> Result<(), &'static str> {
    if device.is_removed() {
        Err("the device was removed")
    } else if device.key_expired {
        Err("the device's key was expired by an administrator")
    } else if device.key_expires_at.is_some_and(|t| t <= now) {
        Err("the device's key has expired")
    } else {
        Ok(())
    }
}

/// Changes a live device of `org_id` by the events `change` returns, expecting its stream
/// unchanged since it was read; nothing to append when `change` returns none.
pub fn change(
    models: &Models,
    org_id: &str,
    id: &str,
    change: impl FnOnce(&Device) -> Vec<Event>,
) -> Result<Decision, Rejection> {
    let device = live(models.devices.get(id), org_id, id)?;
    let events = change(device);
    if events.is_empty() {
        return Ok(Decision::none());
    }
    let stream = Stream::device(id);
    Ok(events.into_iter().fold(
        Decision::none().expect(stream.clone(), Expected::Exact(device.revision)),
        |d, e| d.event(stream.clone(), e),
    ))
}

/// Removes a device of `org_id` (see [`decide_remove`]).
pub fn remove(
    models: &Models,
    org_id: &str,
    id: &str,
    reason: &str,
) -> Result<Decision, Rejection> {
    let device = models.devices.get(id);
    let Some(event) = decide_remove(device, org_id, id, reason)? else {
        return Ok(Decision::none());
    };
    let stream = Stream::device(id);
    Ok(Decision::none()
        .expect(
            stream.clone(),
            Expected::Exact(device.map_or(0, |d| d.revision)),
        )
        .event(stream, event))
}

/// Joins a device with pre-auth key `key_id` (see [`decide_register`]). The decision expects
/// the organization's address allocator and the key unchanged, so two registrations can take
/// neither the same address nor the last use of a key.
pub fn register(
    models: &Models,
    key_id: &str,
    cmd: Register,
    now: i64,
) -> Result<Decision, RegisterRefusal> {
    // Keys are never dropped from the read model; a missing one cannot admit anybody.
    let key = models
        .keys
        .get(key_id)
        .ok_or(RegisterRefusal::Key(KeyRefusal::Revoked))?;
    let ipam_revision = models.devices.ipam_revision(&key.org_id);
    let device_id = cmd.device_id.clone();
    let (used, registered) = decide_register(key, ipam_revision, cmd, now)?;
    let ipam = Stream::ipam(&key.org_id);
    Ok(Decision::none()
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
            public_key: "pk".into(),
            credential_hash: [2; 32],
        }
    }

    fn device(tags: &[&str]) -> Device {
        Device {
            id: "dev_1".into(),
            org_id: "org_1".into(),
            key_id: "key_1".into(),
            hostname: "web-01".into(),
            os: "linux".into(),
            os_version: "6.1".into(),
            public_key: "pk".into(),
            ipv4: "100.64.0.1".into(),
            ipv6: "fd00::1".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            owner: None,
            ephemeral: false,
            credential_hash: [2; 32],
            key_expires_at: None,
            key_expired: false,
            created_at: NOW,
            removed_at: None,
            removed_reason: None,
            revision: 0,
            last_seq: 1,
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
            ipv4_for(MAX_ALLOCATIONS - 1),
            Some(Ipv4Addr::new(100, 127, 255, 254))
        );
        assert_eq!(ipv4_for(MAX_ALLOCATIONS), None);
        assert_ne!(ipv6_for("org_a", 0), ipv6_for("org_b", 0));
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

    #[test]
    fn hostnames_and_tags_are_checked() {
        assert!(Hostname::parse("web-01").is_ok());
        for bad in ["", "Web", "web_01", "web.01", &"a".repeat(64)] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Hostname::normalize("WEB-01").unwrap().as_str(), "web-01");
        assert!(Tag::parse("tag:prod-1").is_ok());
        for bad in [
            "prod",
            "tag:",
            "tag:Prod",
            "tag:a_b",
            &format!("tag:{}", "a".repeat(64)),
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Tag::parse_lenient("prod").unwrap().as_str(), "tag:prod");
        let tags = parse_tags("tags", &["tag:b".into(), "tag:a".into(), "tag:b".into()]).unwrap();
        assert_eq!(
            tags,
            vec![Tag::parse("tag:a").unwrap(), Tag::parse("tag:b").unwrap()]
        );
    }

    #[test]
    fn given_tags_when_the_list_is_replaced_then_tagged_and_untagged_carry_the_difference() {
        let d = device(&["tag:a", "tag:b"]);
        let events = decide_update(
            &d,
            Update {
                tags: Some(vec![
                    Tag::parse("tag:b").unwrap(),
                    Tag::parse("tag:c").unwrap(),
                ]),
                ..Update::default()
            },
        );
        assert_eq!(
            events,
            vec![
                Event::from(DeviceTagged {
                    device_id: "dev_1".into(),
                    tags: vec!["tag:c".into()]
                }),
                Event::from(DeviceUntagged {
                    device_id: "dev_1".into(),
                    tags: vec!["tag:a".into()]
                }),
            ]
        );
    }

    #[test]
    fn an_update_that_changes_nothing_emits_nothing() {
        let d = device(&["tag:a"]);
        let events = decide_update(
            &d,
            Update {
                hostname: Some(Hostname::parse("web-01").unwrap()),
                tags: Some(vec![Tag::parse("tag:a").unwrap()]),
                owner: Some(None),
            },
        );
        assert!(events.is_empty());
        assert!(decide_tag(&d, &["tag:a".into()]).is_none());
        assert!(decide_untag(&d, &Tag::parse("tag:z").unwrap()).is_none());
    }

    #[test]
    fn removal_is_idempotent_for_existing_devices_only() {
        let mut d = device(&[]);
        assert!(
            decide_remove(Some(&d), "org_1", "dev_1", "api")
                .unwrap()
                .is_some()
        );
        d.removed_at = Some(NOW);
        assert_eq!(decide_remove(Some(&d), "org_1", "dev_1", "api"), Ok(None));
        assert!(matches!(
            decide_remove(Some(&d), "org_2", "dev_1", "api"),
            Err(Rejection::NotFound(_))
        ));
        assert!(decide_remove(None, "org_1", "dev_x", "api").is_err());
    }

    #[test]
    fn a_credential_stops_working_when_removed_expired_or_past_its_expiry() {
        let mut d = device(&[]);
        assert!(credential_valid(&d, NOW).is_ok());
        d.key_expires_at = Some(NOW);
        assert!(credential_valid(&d, NOW).is_err());
        d.key_expires_at = None;
        d.key_expired = true;
        assert!(credential_valid(&d, NOW).is_err());
    }
}
