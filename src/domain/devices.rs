//! Decisions about devices once they joined: renaming, tagging, reassigning, force-expiring
//! and removing them. Joining is in [`super::registration`]; the value types the decisions
//! take live in their own modules and are re-exported here for the callers' convenience.

use events::Event;
use events::Expected;
use events::event::{
    DeviceCredentialRotated, DeviceKeyExpired, DeviceOwnerChanged, DeviceRemoved, DeviceTagged,
    DeviceUntagged, DeviceUpdated,
};
use events::stream::Stream;
use projections::OrgView;
use projections::devices::Device;

use super::Rejection;
use super::decision::Decision;
pub use super::hostname::Hostname;
pub use super::ipam::{MAX_ALLOCATIONS, ipv4_for, ipv6_for};
pub use super::registration::{
    KeyRefusal, NODE_KEY_LIFETIME_MICROS, Register, RegisterRefusal, check_key, decide_register,
    register,
};
pub use super::tag::{MAX_TAG_NAME, MAX_TAGS, Tag, parse_tags};
pub use super::text::check_text;

/// Finds a live device of the organization; another organization's device is not in the view,
/// so it is indistinguishable from a missing one.
pub fn live<'a>(org: OrgView<'a>, id: &str) -> Result<&'a Device, Rejection> {
    org.live_device(id)
        .ok_or_else(|| Rejection::NotFound(format!("no device '{id}'")))
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

/// Removes `device`. `None` when it was removed already (DELETE is idempotent for devices that
/// existed).
pub fn decide_remove(device: &Device, reason: &str) -> Option<DeviceRemoved> {
    (!device.is_removed()).then(|| DeviceRemoved {
        device_id: device.id.clone(),
        reason: reason.to_owned(),
    })
}

/// Why a removed device's credential stopped working.
pub const REMOVED: &str = "the device was removed";

/// Whether a device's credential still works at `now`; `Err` says why it does not.
pub fn credential_valid(device: &Device, now: i64) -> Result<(), &'static str> {
    // Time first: the sweeper records a key that ran out as expired too, and the device
    // should hear why.
    if device.is_removed() {
        Err(REMOVED)
    } else if device.key_expires_at.is_some_and(|t| t <= now) {
        Err("the device's key has expired")
    } else if device.key_expired {
        Err("the device's key was expired by an administrator")
    } else {
        Ok(())
    }
}

/// Changes a live device of the organization by the events `change` returns, expecting its
/// stream unchanged since it was read; nothing to append when `change` returns none.
pub fn change(
    org: OrgView<'_>,
    id: &str,
    change: impl FnOnce(&Device) -> Vec<Event>,
) -> Result<Decision, Rejection> {
    let device = live(org, id)?;
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

/// Replaces a live device's node credential with the one hashed to `credential_hash` (made by
/// the caller): the old one stops working with this event. Refused, like the credential
/// itself, once the device was removed or its key expired.
pub fn rotate_credential(
    org: OrgView<'_>,
    id: &str,
    credential_hash: [u8; 32],
    now: i64,
) -> Result<Decision, Rejection> {
    credential_valid(live(org, id)?, now).map_err(|why| Rejection::Forbidden(why.into()))?;
    change(org, id, |_| {
        vec![
            DeviceCredentialRotated {
                device_id: id.to_owned(),
                credential_hash,
            }
            .into(),
        ]
    })
}

/// Removes a device of the organization (see [`decide_remove`]); 404 for ids that never
/// existed in it, nothing to append for devices removed already.
pub fn remove(org: OrgView<'_>, id: &str, reason: &str) -> Result<Decision, Rejection> {
    let device = org
        .device(id)
        .ok_or_else(|| Rejection::NotFound(format!("no device '{id}'")))?;
    let Some(event) = decide_remove(device, reason) else {
        return Ok(Decision::none());
    };
    let stream = Stream::device(id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::Exact(device.revision))
        .event(stream, event))
}
#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;

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
    fn removal_is_idempotent() {
        let mut d = device(&[]);
        assert!(decide_remove(&d, "api").is_some());
        d.removed_at = Some(NOW);
        assert_eq!(decide_remove(&d, "api"), None);
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
