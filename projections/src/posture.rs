//! Device posture: each organization's requirements, and each device's last recorded signals
//! and compliance, folded from `posture.*` events. Which signals pass is decided where the
//! events are written (the posture worker and `PUT /posture/config`); this model only
//! remembers what was decided, and since when each signal held its value.

use events::event::{PostureRequirements, Signals};
use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

/// What the log says of one device's posture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePosture {
    /// `None` until the device first reports.
    pub signals: Option<Signals>,
    /// When each signal last changed value (microseconds), in the order `os_version`,
    /// `client_version`, `disk_encrypted`, `firewall`, `screen_lock`.
    pub changed_at: [i64; 5],
    /// The signals it fails, non-empty while in violation.
    pub failing: Vec<String>,
    /// When compliance last changed (microseconds; 0: never).
    pub compliance_since: i64,
}

impl DevicePosture {
    pub fn violating(&self) -> bool {
        !self.failing.is_empty()
    }
}

/// An organization's posture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPosture {
    pub requirements: Option<PostureRequirements>,
    /// When the requirements last changed (microseconds).
    pub configured_at: i64,
    /// The org sequence number of the last `posture.configured`.
    pub configured_seq: u64,
    /// Last revision of the `posture:<org>` stream (`None`: nothing written to it yet).
    pub revision: Option<u64>,
}

impl OrgPosture {
    /// Whether a violation takes the device out of every peer map.
    pub fn blocks(&self) -> bool {
        self.requirements
            .as_ref()
            .is_some_and(|r| r.action == "block")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    pub orgs: imbl::HashMap<String, OrgPosture>,
    pub devices: imbl::HashMap<String, DevicePosture>,
}

fn fields(s: &Signals) -> [String; 5] {
    [
        format!("{:?}", s.os_version),
        format!("{:?}", s.client_version),
        format!("{:?}", s.disk_encrypted),
        format!("{:?}", s.firewall),
        format!("{:?}", s.screen_lock),
    ]
}

impl Projection for Posture {
    const NAME: &'static str = "posture";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        let at = r.envelope.recorded_at;
        let org = r.envelope.org_id.as_str();
        let is_posture_stream = r.envelope.stream.starts_with("posture:");
        match &r.event {
            Event::PostureConfigured(e) => {
                let o = self.orgs.entry(org.to_owned()).or_default();
                o.requirements = Some(e.requirements.clone());
                o.configured_at = at;
                o.configured_seq = r.envelope.org_seq;
            }
            Event::PostureReported(e) => {
                let d = self.devices.entry(e.device_id.clone()).or_default();
                let before = d.signals.as_ref().map(fields);
                let after = fields(&e.signals);
                for (i, v) in after.iter().enumerate() {
                    if before.as_ref().is_none_or(|b| &b[i] != v) {
                        d.changed_at[i] = at;
                    }
                }
                d.signals = Some(e.signals.clone());
            }
            Event::PostureViolation(e) => {
                let d = self.devices.entry(e.device_id.clone()).or_default();
                if !d.violating() {
                    d.compliance_since = at;
                }
                d.failing = e.failing.clone();
            }
            Event::PostureRestored(e) => {
                let d = self.devices.entry(e.device_id.clone()).or_default();
                d.failing.clear();
                d.compliance_since = at;
            }
            Event::DeviceRemoved(e) => {
                self.devices.remove(&e.device_id);
            }
            _ => {}
        }
        if is_posture_stream {
            self.orgs.entry(org.to_owned()).or_default().revision = Some(r.envelope.revision);
        }
    }
}
