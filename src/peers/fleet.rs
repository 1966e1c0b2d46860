//! The bridge from the read models to the policy core: one organization's devices, people and
//! posture as a [`policy::Fleet`].

use std::collections::BTreeSet;

use projections::OrgView;
use projections::devices::Device as ReadDevice;

use crate::policy::{self, Version};

/// Whether a device takes part in the network at all: not removed, its credential not expired,
/// its owner (if a person of the directory) not deactivated.
pub fn is_connected(org: OrgView<'_>, d: &ReadDevice) -> bool {
    !d.is_removed() && !d.key_expired && org.owner_of(d).is_none_or(|u| u.active)
}

/// Whether posture keeps the device out of every peer map: the organization blocks on
/// violation, and the device is in violation — or has never reported while there are
/// requirements to meet (fail closed; the agent reports right after registering).
pub fn is_blocked(org: OrgView<'_>, d: &ReadDevice) -> bool {
    let posture = org.posture();
    if !posture.blocks() {
        return false;
    }
    match org.device_posture(&d.id) {
        Some(p) if p.signals.is_some() => p.violating(),
        _ => true,
    }
}

/// The signals the policy's postures are checked against: the last reported, else what the
/// device said when it registered.
pub fn signals(org: OrgView<'_>, d: &ReadDevice) -> policy::Signals {
    let reported = org.device_posture(&d.id).and_then(|p| p.signals.clone());
    let r = reported.unwrap_or_default();
    policy::Signals {
        os: d.os.to_lowercase(),
        os_version: Version::parse(r.os_version.as_deref().unwrap_or(&d.os_version)),
        client_version: r.client_version.as_deref().and_then(Version::parse),
        disk_encrypted: r.disk_encrypted.unwrap_or(false),
        firewall: r.firewall.unwrap_or(false),
        screen_lock: r.screen_lock.unwrap_or(false),
    }
}

/// The policy's view of one device, or `None` when it is not in the network (see
/// [`is_connected`]). A device posture blocks stays in, `blocked`: no rule selects it, on
/// either side, and the policy's tests see it fail.
pub fn device(org: OrgView<'_>, d: &ReadDevice) -> Option<policy::Device> {
    if !is_connected(org, d) {
        return None;
    }
    let owner = org.owner_of(d);
    Some(policy::Device {
        id: d.id.clone(),
        ipv4: d.ipv4.parse().ok()?,
        tags: d.tags.iter().cloned().collect(),
        owner_id: owner.map(|u| u.id.clone()).or_else(|| d.owner.clone()),
        owner_email: owner
            .map(|u| u.profile.email.to_lowercase())
            .filter(|e| !e.is_empty())
            .or_else(|| d.owner.clone().filter(|o| o.contains('@'))),
        signals: signals(org, d),
        blocked: is_blocked(org, d),
    })
}

/// The policy's view of one person: their id, email and group names.
pub fn user(org: OrgView<'_>, u: &projections::directory::User) -> policy::User {
    policy::User {
        id: u.id.clone(),
        email: u.profile.email.to_lowercase(),
        groups: org
            .groups_of(&u.id)
            .map(|g| g.display_name.clone())
            .collect(),
    }
}

/// The organization's whole fleet, as the policy sees it.
pub fn fleet(org: OrgView<'_>) -> policy::Fleet {
    policy::Fleet {
        devices: org.devices().filter_map(|d| device(org, d)).collect(),
        users: org.users().map(|u| user(org, u)).collect(),
    }
}

/// The group names a policy may refer to (without `group:`).
pub fn group_names(org: OrgView<'_>) -> BTreeSet<String> {
    org.groups().map(|g| g.display_name.clone()).collect()
}
