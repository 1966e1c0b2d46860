//! What a policy is evaluated against: the devices and people of one organization, as plain
//! values. The server builds a [`Fleet`] from its read models; tests build them by hand.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::model::{Posture, Principal, Version};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    pub devices: Vec<Device>,
    pub users: Vec<User>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub ipv4: Ipv4Addr,
    /// With their `tag:` prefix. A tagged device belongs to its tags, not to its owner: `user:`,
    /// `group:`, `autogroup:member` and `autogroup:self` never select it (as in Tailscale).
    pub tags: BTreeSet<String>,
    pub owner_id: Option<String>,
    pub owner_email: Option<String>,
    pub signals: Signals,
    /// Out of compliance with a posture whose action is `block`: no principal selects it
    /// (neither as a source nor as a destination of any rule, not even `*` or
    /// `autogroup:self`), so its peer map is empty and nobody's map names it.
    pub blocked: bool,
}

/// The posture signals a device last reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Lowercase: `linux`, `macos`, `windows`…
    pub os: String,
    pub os_version: Option<Version>,
    pub client_version: Option<Version>,
    pub disk_encrypted: bool,
    pub firewall: bool,
    pub screen_lock: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    /// Group names, without `group:`.
    pub groups: BTreeSet<String>,
}

impl Device {
    pub fn is_tagged(&self) -> bool {
        !self.tags.is_empty()
    }

    /// Whether the device passes every signal the posture requires. A signal the posture does
    /// not name passes; a version the device never reported fails.
    pub fn passes(&self, posture: &Posture) -> bool {
        let s = &self.signals;
        let at_least =
            |have: &Option<Version>, min: &Version| have.as_ref().is_some_and(|v| v >= min);
        posture
            .min_os_version
            .get(&s.os.to_lowercase())
            .is_none_or(|min| at_least(&s.os_version, min))
            && posture
                .min_client_version
                .as_ref()
                .is_none_or(|min| at_least(&s.client_version, min))
            && (posture.disk_encrypted != Some(true) || s.disk_encrypted)
            && (posture.firewall != Some(true) || s.firewall)
            && (posture.screen_lock != Some(true) || s.screen_lock)
    }
}

impl Fleet {
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Whether `device` is one of the devices `p` names. `hosts` resolves `host:` aliases;
    /// `autogroup:self` depends on the other side of a rule, so it selects nothing here.
    pub fn selects(
        &self,
        p: &Principal,
        d: &Device,
        hosts: &dyn Fn(&str) -> Option<ipnet::IpNet>,
    ) -> bool {
        Fleet::selects_with(p, d, hosts, &|id| self.user(id))
    }

    /// [`Fleet::selects`] with the owner looked up by `user`, so that a compiler over many
    /// devices can index the people once instead of scanning them per device.
    pub fn selects_with<'u>(
        p: &Principal,
        d: &Device,
        hosts: &dyn Fn(&str) -> Option<ipnet::IpNet>,
        user: &dyn Fn(&str) -> Option<&'u User>,
    ) -> bool {
        if d.blocked {
            return false;
        }
        let owned = !d.is_tagged();
        match p {
            Principal::Any => true,
            Principal::User(u) => {
                owned
                    && (d.owner_email.as_deref() == Some(u.as_str())
                        || d.owner_id.as_deref() == Some(u.as_str()))
            }
            Principal::Group(g) => {
                owned
                    && d.owner_id
                        .as_deref()
                        .and_then(user)
                        .is_some_and(|u| u.groups.contains(g))
            }
            Principal::Tag(t) => d.tags.contains(t),
            Principal::Host(h) => {
                hosts(h).is_some_and(|n| n.contains(&std::net::IpAddr::V4(d.ipv4)))
            }
            Principal::Cidr(n) => n.contains(&std::net::IpAddr::V4(d.ipv4)),
            Principal::Member => owned && d.owner_id.is_some(),
            Principal::Tagged => d.is_tagged(),
            Principal::SelfDevices | Principal::Token(_) => false,
        }
    }

    /// `autogroup:self` from `src`'s side: the untagged devices of an untagged source's owner
    /// (blocked devices on neither side).
    pub fn same_owner(src: &Device, dst: &Device) -> bool {
        !src.blocked
            && !dst.blocked
            && !src.is_tagged()
            && !dst.is_tagged()
            && src.owner_id.is_some()
            && src.owner_id == dst.owner_id
    }
}
