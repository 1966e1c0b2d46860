//! Joining by sign-in: a person signed in through the organization's identity provider for a
//! device (`quickztna up` without a pre-auth key), which joins as theirs.
//!
//! Unlike a key's device it carries no key (`key_id` is empty) and no tags: tags are for
//! servers, which join with keys. It is owned by the user's id, and like any untagged device
//! its authentication expires after [`NODE_KEY_LIFETIME_MICROS`]; then, or when its owner is
//! deactivated, the owner signs in again, and the new registration takes the place of the old
//! device (same public key, same owner) in the same append: a new device id, and the
//! organization's next overlay address (the old one rests in quarantine).
//!
//! The owner must be an active user, and the decision expects their stream unchanged, so a
//! deactivation or removal appended meanwhile makes it decide again (and refuse). It also
//! expects the address allocator (`ipam:<org>`) unchanged, so a concurrent key registration
//! (which advances it) cannot take the same address. A key-less registration writes no event
//! on that stream itself: the server runs it under both the organization's registration lock
//! and its directory lock, so that neither another registration nor a user's removal (which
//! expects the allocator unchanged to catch devices joining meanwhile) interleaves with it.

use events::Expected;
use events::event::DeviceRegistered;
use events::stream::Stream;
use projections::OrgView;

use super::decision::Decision;
use super::ipam::{ipv4_for, ipv6_for};
use super::registration::{NODE_KEY_LIFETIME_MICROS, Register, RegisterRefusal, admit};

/// Why a device cannot join as a person's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerRefusal {
    /// The person was removed or deactivated since they signed in.
    OwnerInactive,
    Register(RegisterRefusal),
}

impl From<RegisterRefusal> for OwnerRefusal {
    fn from(r: RegisterRefusal) -> Self {
        OwnerRefusal::Register(r)
    }
}

/// Registers the device of `cmd` as `owner`'s (a user id of the organization).
pub fn register_for_owner(
    org: OrgView<'_>,
    owner: &str,
    cmd: Register,
    now: i64,
) -> Result<Decision, OwnerRefusal> {
    let user = org
        .user(owner)
        .filter(|u| u.active)
        .ok_or(OwnerRefusal::OwnerInactive)?;
    let user_revision = user.revision;
    let device_id = cmd.device_id.clone();
    // The owner signing in again for their own device (its old registration forgotten by the
    // agent, e.g. after the owner was deactivated and reactivated) replaces it; another
    // person's device with the same public key is never displaced.
    let (decision, index) = admit(org, &cmd, now, |d| d.owner.as_deref() == Some(owner))?;
    let ipv4 = ipv4_for(index).ok_or(RegisterRefusal::AddressesExhausted)?;
    let registered = DeviceRegistered {
        device_id: cmd.device_id,
        key_id: String::new(),
        hostname: cmd.hostname.into_string(),
        os: cmd.os,
        os_version: cmd.os_version,
        public_key: cmd.public_key.into_string(),
        ipv4: ipv4.to_string(),
        ipv6: ipv6_for(org.id(), index).to_string(),
        tags: Vec::new(),
        owner: Some(owner.to_owned()),
        ephemeral: false,
        credential_hash: cmd.credential_hash,
        key_expires_at: Some(now.saturating_add(NODE_KEY_LIFETIME_MICROS)),
    };
    Ok(decision
        .expect(Stream::user(owner), Expected::Exact(user_revision))
        .event(Stream::device(device_id), registered))
}
