//! One organization's peer maps: its policy compiled over its fleet, and each device's
//! peer-map version (the org sequence number of the last change to what it may reach, or to
//! who may reach it).

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
    /// The policy in force, parsed (`None`: no policy yet, default deny).
    policy: Option<Arc<Policy>>,
    policy_version: u64,
    compiled: Option<Compiled>,
    /// Per device, the sequence number its peer map last changed at.
    versions: HashMap<String, u64>,
    /// The version of every device not in `versions`: when this map was built.
    floor: u64,
}

/// Parses the policy text of the organization's current version. A stored version always
/// linted clean, so a parse failure means a bug: fail closed (no access) and say so.
fn current_policy(org: OrgView<'_>) -> (Option<Arc<Policy>>, u64) {
    let Some(v) = org.policy().current() else {
        return (None, 0);
    };
    let format = if v.format == "json" {
        policy::Format::Json
    } else {
        policy::Format::Yaml
    };
    match policy::parse(&v.text, format) {
        Ok(p) => (Some(Arc::new(p.policy)), v.version),
        Err(d) => {
            tracing::error!(org = org.id(), version = v.version, problem = %d.message, "stored policy does not parse; denying all");
            (None, v.version)
        }
    }
}

impl OrgPeers {
    /// Builds the organization's peer maps from scratch; every device's version is `seq`.
    pub fn build(org: OrgView<'_>, seq: u64) -> OrgPeers {
        let (policy, policy_version) = current_policy(org);
        let compiled = policy
            .as_ref()
            .map(|p| Compiled::new(p, &fleet::fleet(org)));
        OrgPeers {
            policy,
            policy_version,
            compiled,
            versions: HashMap::new(),
            floor: seq,
        }
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
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
        let Some(c) = &self.compiled else {
            return out;
        };
        for g in c.grants(device_id) {
            match out.outbound.last_mut() {
                Some((dst, ports)) if dst == g.dst => ports.push((g.proto, g.ports)),
                _ => out
                    .outbound
                    .push((g.dst.to_owned(), vec![(g.proto, g.ports)])),
            }
        }
        out.inbound = inbound(c, device_id);
        out
    }

    /// Rebuilds after a change that may touch everyone (a new policy, new posture rules, a
    /// renamed group) and moves the version of every device whose map changed to `seq`.
    pub fn rebuild(&mut self, org: OrgView<'_>, seq: u64) {
        let next = OrgPeers::build(org, seq);
        let ids: BTreeSet<String> = self.device_ids().chain(next.device_ids()).collect();
        for id in ids {
            let (mut a, mut b) = (self.peers(&id), next.peers(&id));
            a.version = 0;
            b.version = 0;
            if a != b {
                self.versions.insert(id, seq);
            }
        }
        self.policy = next.policy;
        self.policy_version = next.policy_version;
        self.compiled = next.compiled;
    }

    /// After changes to the devices `touched` (their tags, owner, posture, person's groups…):
    /// brings the maps up to date, moving the versions of the devices whose maps changed, and
    /// of those that see a touched device as a peer (its name or key may have changed).
    pub fn touch(&mut self, org: OrgView<'_>, touched: &BTreeSet<String>, seq: u64) {
        let mut bump: BTreeSet<String> = touched.clone();
        for id in touched {
            let p = self.peers(id);
            bump.extend(p.outbound.into_iter().map(|(d, _)| d));
            bump.extend(p.inbound);
        }
        self.rebuild(org, seq);
        for id in touched {
            let p = self.peers(id);
            bump.extend(p.outbound.into_iter().map(|(d, _)| d));
            bump.extend(p.inbound);
        }
        for id in bump {
            self.versions.insert(id, seq);
        }
    }

    fn device_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.compiled
            .iter()
            .flat_map(|c| c.device_ids().map(str::to_owned))
    }
}

/// The sources that may reach `dst` on some port.
fn inbound(c: &Compiled, dst: &str) -> Vec<String> {
    c.device_ids()
        .filter(|&s| s != dst && c.grants(s).iter().any(|g| g.dst == dst))
        .map(str::to_owned)
        .collect()
}
