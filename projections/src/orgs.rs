//! Organizations (tenants): plan, rate limits and fleet settings.

use events::event::Plan;
use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

/// Remove an ephemeral device after this long offline unless the org says otherwise.
pub const DEFAULT_EPHEMERAL_OFFLINE_SECS: u64 = 30 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub read_per_min: u32,
    pub write_per_min: u32,
    /// Device registrations a minute, if set apart from the plan's default.
    pub register_per_min: Option<u32>,
    pub device_idle_removal_days: Option<u32>,
    pub ephemeral_offline_secs: u64,
    pub created_at: i64,
    /// The organization's sequence number of its last event: its read models' version, which
    /// changes whenever anything the organization can see does (answer caches key on it).
    pub last_seq: u64,
    /// Days the audit log keeps an event, as the organization chose (`org.retention_set`); what
    /// applies also depends on the plan (the server's `domain::retention`).
    pub audit_retention_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orgs {
    pub by_id: imbl::HashMap<String, Org>,
}

impl Orgs {
    pub fn get(&self, id: &str) -> Option<&Org> {
        self.by_id.get(id)
    }

    pub fn by_name(&self, name: &str) -> Option<&Org> {
        self.by_id.values().find(|o| o.name == name)
    }
}

impl Projection for Orgs {
    const NAME: &'static str = "orgs";
    const VERSION: u32 = 4;

    fn apply(&mut self, r: &Recorded) {
        if let Some(o) = self.by_id.get_mut(&r.envelope.org_id) {
            o.last_seq = r.org_seq();
        }
        match &r.event {
            Event::OrgCreated(e) => {
                self.by_id.insert(
                    e.org_id.clone(),
                    Org {
                        id: e.org_id.clone(),
                        name: e.name.clone(),
                        plan: e.plan,
                        read_per_min: e.read_per_min,
                        write_per_min: e.write_per_min,
                        register_per_min: None,
                        device_idle_removal_days: None,
                        ephemeral_offline_secs: DEFAULT_EPHEMERAL_OFFLINE_SECS,
                        created_at: r.envelope.recorded_at,
                        last_seq: r.org_seq(),
                        audit_retention_days: None,
                    },
                );
            }
            Event::OrgLimitsSet(e) => {
                if let Some(o) = self.by_id.get_mut(&e.org_id) {
                    o.read_per_min = e.read_per_min;
                    o.write_per_min = e.write_per_min;
                    o.register_per_min = e.register_per_min;
                }
            }
            Event::OrgSettingsChanged(e) => {
                if let Some(o) = self.by_id.get_mut(&e.org_id) {
                    o.device_idle_removal_days = e.device_idle_removal_days;
                    o.ephemeral_offline_secs = e.ephemeral_offline_secs;
                }
            }
            Event::OrgRetentionSet(e) => {
                if let Some(o) = self.by_id.get_mut(&e.org_id) {
                    o.audit_retention_days = Some(e.days);
                }
            }
            _ => {}
        }
    }
}
