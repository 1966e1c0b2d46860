//! One organization's peer maps: its policy compiled over its fleet, kept up to date in place
//! by the policy core's incremental updates, and each device's peer-map version (the org
//! sequence number of the last change to what it may reach, or to who may reach it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use projections::OrgView;

use super::fleet;
use crate::policy::{self, Compiled, Policy, PortRange, Proto};

/// What one device may reach, and who may reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePeers {
    /// The peer-map version: fetch again when it moves.
    pub version: u64,
    /// Each destination with the protocols and ports it may be reached on, by device id.
    pub outbound: Vec<(String, Vec<(Proto, PortRange)>)>,
    /// The devices that may reach this one (their keys must be accepted), by id.
    pub inbound: Vec<String>,
}

pub struct OrgPeers {
    /// The version of the policy compiled (0: none yet, so the empty policy: default deny).
    policy_version: u64,
    compiled: Compiled,
    /// Per device, the sequence number its peer map last changed at.
    versions: HashMap<String, u64>,
    /// The version of every device not in `versions`: when this map was built.
    floor: u64,
}

/// What changed about the organization, for [`OrgPeers::touch`].
#[derive(Debug, Clone, Copy)]
pub struct Touched<'a> {
    /// Devices whose access may have changed (tags, owner, posture, removal…).
    pub devices: &'a BTreeSet<String>,
    /// Devices whose name, key or addresses changed: whoever sees them must refetch.
    pub shown: &'a BTreeSet<String>,
    /// People whose groups, email or standing changed.
    pub users: &'a BTreeSet<String>,
}

/// Parses the policy text of the organization's current version. A stored version always
/// linted clean, so a parse failure means a bug: fail closed (no access) and say so.
pub fn policy_in_force(org: OrgView<'_>) -> (Arc<Policy>, u64) {
    let Some(v) = org.policy().current() else {
        return (Arc::new(Policy::default()), 0);
    };
    match policy::parse(&v.text, policy::Format::named(&v.format)) {
        Ok(p) => (Arc::new(p.policy), v.version),
        Err(d) => {
            tracing::error!(org = org.id(), version = v.version, problem = %d.message, "stored policy does not parse; denying all");
            (Arc::new(Policy::default()), v.version)
        }
    }
}

impl OrgPeers {
    /// Builds the organization's peer maps from scratch; every device's version is `seq`.
    pub fn build(org: OrgView<'_>, seq: u64) -> OrgPeers {
        let (policy, policy_version) = policy_in_force(org);
        OrgPeers {
            policy_version,
            compiled: Compiled::from_parts(policy, fleet::fleet(org)),
            versions: HashMap::new(),
            floor: seq,
        }
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// The policy compiled over the current fleet (the empty policy before the first).
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The policy in force, parsed (`None` before the first).
    pub fn policy(&self) -> Option<&Policy> {
        (self.policy_version > 0).then(|| self.compiled.policy())
    }

    pub fn version(&self, device_id: &str) -> u64 {
        self.versions.get(device_id).copied().unwrap_or(self.floor)
    }

    /// What `device_id` may reach and who may reach it.
    pub fn peers(&self, device_id: &str) -> DevicePeers {
        let mut out = DevicePeers {
            version: self.version(device_id),
            ..DevicePeers::default()
        };
        for g in self.compiled.grants(device_id) {
            match out.outbound.last_mut() {
                Some((dst, ports)) if dst == g.dst => ports.push((g.proto, g.ports)),
                _ => out
                    .outbound
                    .push((g.dst.to_owned(), vec![(g.proto, g.ports)])),
            }
        }
        out.inbound = self
            .compiled
            .inbound(device_id)
            .into_iter()
            .map(str::to_owned)
            .collect();
        out
    }

    fn bump(&mut self, ids: impl IntoIterator<Item = String>, seq: u64) {
        for id in ids {
            self.versions.insert(id, seq);
        }
    }

    /// After a change that may touch everyone (a new policy, new posture rules, a renamed
    /// group): compiles again and moves the version of every device whose map changed.
    pub fn rebuild(&mut self, org: OrgView<'_>, seq: u64) {
        let (policy, policy_version) = policy_in_force(org);
        let next = Compiled::from_parts(policy, fleet::fleet(org));
        let changed = self.compiled.replace(next);
        self.policy_version = policy_version;
        self.bump(changed, seq);
    }

    /// After changes to some devices and people: updates only what they touch, and moves the
    /// versions of the devices whose maps changed — and, for devices whose name, key or
    /// addresses changed, of everyone who sees them.
    pub fn touch(&mut self, org: OrgView<'_>, t: Touched<'_>, seq: u64) {
        let mut bump: BTreeSet<String> = BTreeSet::new();
        let mut devices = t.devices.clone();
        for id in t.users {
            match org.user(id) {
                Some(u) => {
                    bump.extend(self.compiled.upsert_user(fleet::user(org, u)));
                    // Deactivation and reactivation change whether their devices connect.
                    devices.extend(org.devices_of(u).into_iter().map(|d| d.id.clone()));
                }
                None => bump.extend(self.compiled.remove_user(id)),
            }
        }
        for id in t.shown {
            bump.extend(self.compiled.peers(id).into_iter().map(str::to_owned));
        }
        for id in &devices {
            let now = org.device(id).and_then(|d| fleet::device(org, d));
            bump.extend(match now {
                Some(d) => self.compiled.upsert_device(d),
                None => self.compiled.remove_device(id),
            });
        }
        for id in t.shown {
            bump.insert(id.clone());
            bump.extend(self.compiled.peers(id).into_iter().map(str::to_owned));
        }
        self.bump(bump, seq);
    }
}
