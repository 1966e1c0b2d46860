//! The access policy's and device posture's events: policy versions, the verdicts of the
//! policy's own tests as the fleet changes, posture requirements and each device's posture.
//! Part of the catalogue in [`crate::event`], with the same rules: never reorder or remove a
//! field.

use serde::{Deserialize, Serialize};

/// `policy.applied`: a new version of the organization's policy is in force. It carries the
/// whole text as it was sent (YAML or JSON), so any version can be shown and rolled back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyApplied {
    pub org_id: String,
    /// 1 for the first policy, then one more per apply.
    pub version: u64,
    /// `yaml` or `json`.
    pub format: String,
    pub text: String,
    /// Why it changed (`X-Change-Reason` or `reason`), if the caller said.
    pub reason: Option<String>,
    /// The version whose text this is, when the apply rolled back to it.
    pub rollback_of: Option<u64>,
}

/// One way a test of the policy fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFailure {
    /// Where in the policy text: a JSON pointer.
    pub pointer: String,
    pub message: String,
}

/// `policy.test_failed`: a test of the policy in force started failing because the fleet
/// changed (tags, group membership, posture) — not because the policy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTestFailed {
    pub org_id: String,
    pub policy_version: u64,
    pub test: String,
    pub failures: Vec<TestFailure>,
}

/// `policy.test_restored`: a test that had failed passes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTestRestored {
    pub org_id: String,
    pub policy_version: u64,
    pub test: String,
}

/// A minimum OS version for one operating system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OsMinimum {
    /// Lowercase: `linux`, `macos`, `windows`…
    pub os: String,
    pub version: String,
}

/// The signals every device of an organization must show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureRequirements {
    pub min_os_version: Vec<OsMinimum>,
    pub min_client_version: Option<String>,
    pub disk_encrypted: bool,
    pub firewall: bool,
    pub screen_lock: bool,
    /// `block` (out of every peer map until compliant) or `warn` (events only).
    pub action: String,
}

/// `posture.configured`: the organization's posture requirements changed. Devices whose
/// compliance changes with them get `posture.violation` / `posture.restored` in the same append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureConfigured {
    pub org_id: String,
    pub requirements: PostureRequirements,
}

/// The posture signals a device reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    pub os_version: Option<String>,
    pub client_version: Option<String>,
    pub disk_encrypted: Option<bool>,
    pub firewall: Option<bool>,
    pub screen_lock: Option<bool>,
}

/// `posture.reported`: a device's posture signals differ from the last ones recorded.
/// Heartbeats are not events; this is written only when a signal changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureReported {
    pub device_id: String,
    pub signals: Signals,
}

/// `posture.violation`: a device stopped meeting the organization's posture requirements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureViolation {
    pub device_id: String,
    /// The signals it fails: `min_os_version`, `min_client_version`, `disk_encrypted`,
    /// `firewall`, `screen_lock`.
    pub failing: Vec<String>,
    /// `block` or `warn`, as configured when it happened.
    pub action: String,
}

/// `posture.restored`: a device meets the requirements again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureRestored {
    pub device_id: String,
}
