//! The catalogue of domain events.
//!
//! Each event is named in the past tense, has a stable `type` string and a schema version, and
//! carries the data its readers need. Payload structs are persisted with postcard: never reorder
//! or remove their fields; add a new schema version instead: freeze the old struct in
//! [`crate::legacy`] with a pure upcast to the current one. Every `(type, version)`, old ones
//! included, has a golden fixture in `tests/fixtures`.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;

/// Subscription plan of an organization; gates audit retention, webhooks and the SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Business,
    #[default]
    Workforce,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Business => "business",
            Plan::Workforce => "workforce",
        }
    }

    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "free" => Some(Plan::Free),
            "business" => Some(Plan::Business),
            "workforce" => Some(Plan::Workforce),
            _ => None,
        }
    }
}

/// `org.created`: an organization (tenant) exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgCreated {
    pub org_id: String,
    pub name: String,
    pub plan: Plan,
    pub read_per_min: u32,
    pub write_per_min: u32,
}

/// `org.limits_set`: the organization's rate limits were changed ("contact support").
/// Version 2 added the device registrations' budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgLimitsSet {
    pub org_id: String,
    pub read_per_min: u32,
    pub write_per_min: u32,
    /// Device registrations a minute; `None`: the plan's default.
    pub register_per_min: Option<u32>,
}

/// `org.settings_changed`: fleet hygiene settings changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettingsChanged {
    pub org_id: String,
    /// Remove any device idle longer than this many days (None: never).
    pub device_idle_removal_days: Option<u32>,
    /// Remove an ephemeral device after this many seconds offline.
    pub ephemeral_offline_secs: u64,
}

/// `token.created`: an API token was issued. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token_id: String,
    /// The first characters of the token, safe to show (`qz_ab12cd`).
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    /// Microseconds since the epoch; never after the parent's.
    pub expires_at: i64,
    /// The token that issued it, whose revocation revokes it too (`None`: issued at the
    /// console; a version 1 record does not say).
    pub parent_token_id: Option<String>,
    /// The person a sign-in session acts for (`None`: an API token of the organization). A
    /// session's scopes follow the person's current role, and end with their deactivation.
    pub user_id: Option<String>,
}

/// `token.revoked`: an API token stopped working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub token_id: String,
}

/// `key.created`: a pre-auth key was issued. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreated {
    pub key_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub reusable: bool,
    pub ephemeral: bool,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub expires_at: i64,
    pub description: String,
    pub max_uses: Option<u32>,
}

/// `key.used`: a device joined with a pre-auth key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsed {
    pub key_id: String,
    pub device_id: String,
    /// The key's use count after this use.
    pub uses: u32,
}

/// `key.revoked`: a pre-auth key stopped working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRevoked {
    pub key_id: String,
}

/// `device.registered`: a device joined the organization with a pre-auth key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    pub device_id: String,
    pub key_id: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub public_key: String,
    pub ipv4: String,
    pub ipv6: String,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub ephemeral: bool,
    /// SHA-256 of the device's node credential.
    pub credential_hash: [u8; 32],
    /// When the device's authentication expires (microseconds), if it does.
    pub key_expires_at: Option<i64>,
}

/// `device.updated`: mutable fields of a device changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUpdated {
    pub device_id: String,
    pub hostname: Option<String>,
}

/// `device.tagged`: tags were added to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTagged {
    pub device_id: String,
    pub tags: Vec<String>,
}

/// `device.untagged`: tags were removed from a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUntagged {
    pub device_id: String,
    pub tags: Vec<String>,
}

/// `device.owner_changed`: a device was reassigned to another user (or to none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOwnerChanged {
    pub device_id: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `device.key_expired`: the device's authentication was force-expired; it must re-authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeyExpired {
    pub device_id: String,
}

/// `device.removed`: a device left the organization and its credential was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRemoved {
    pub device_id: String,
    /// Why: `api`, `ephemeral_offline`, `idle`, `user_removed`, …
    pub reason: String,
}

/// `device.purged`: a device removed longer ago than the retention window left the read
/// models. Its events stay in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePurged {
    pub device_id: String,
}

/// `key.purged`: a pre-auth key revoked or expired longer ago than the retention window left
/// the read models. Its events stay in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPurged {
    pub key_id: String,
}

/// `token.purged`: an API token revoked or expired longer ago than the retention window left
/// the read models. Its events stay in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPurged {
    pub token_id: String,
}

/// `device.credential_rotated`: the device exchanged its node credential for a new one; the old
/// one stopped working. Only the SHA-256 of the new secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentialRotated {
    pub device_id: String,
    /// SHA-256 of the device's new node credential.
    pub credential_hash: [u8; 32],
}

/// `org.retention_set`: a workforce organization chose how long its audit log is served. The
/// plans without the choice keep their fixed retention; see the server's `domain::retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRetentionSet {
    pub org_id: String,
    /// Days the audit log keeps an event.
    pub days: u32,
}

pub use crate::directory_events::*;
pub use crate::policy_events::*;
pub use crate::webhook_events::*;

macro_rules! catalogue {
    ($( $variant:ident($ty:ident) = $name:literal v $ver:literal ),* $(,)?) => {
        /// Every event the log can hold, in its current schema version.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $( $variant($ty), )*
        }

        $( impl From<$ty> for Event {
            fn from(p: $ty) -> Event { Event::$variant(p) }
        } )*

        impl Event {
            /// Every `(type, current schema version)` pair.
            pub const TYPES: &'static [(&'static str, u16)] = &[ $( ($name, $ver), )* ];

            /// The stable type name, e.g. `device.registered`.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$variant(_) => $name, )* }
            }

            pub fn schema_version(&self) -> u16 {
                match self { $( Event::$variant(_) => $ver, )* }
            }

            /// The payload bytes stored in the envelope.
            pub fn encode_payload(&self) -> Vec<u8> {
                match self { $( Event::$variant(p) => codec::encode_payload(p), )* }
            }

            /// Decodes a payload of any known `(type, version)`, upcasting old versions.
            pub fn decode(event_type: &str, version: u16, bytes: &[u8]) -> Result<Event, Error> {
                match (event_type, version) {
                    $( ($name, $ver) => codec::decode_payload::<$ty>(bytes).map(Event::$variant), )*
                    _ => decode_legacy(event_type, version, bytes),
                }
            }

            fn payload_json(&self) -> serde_json::Value {
                let v = match self { $( Event::$variant(p) => serde_json::to_value(p), )* };
                v.unwrap_or(serde_json::Value::Null)
            }
        }
    };
}

catalogue! {
    OrgCreated(OrgCreated) = "org.created" v 1,
    OrgLimitsSet(OrgLimitsSet) = "org.limits_set" v 2,
    OrgSettingsChanged(OrgSettingsChanged) = "org.settings_changed" v 1,
    TokenCreated(TokenCreated) = "token.created" v 3,
    TokenRevoked(TokenRevoked) = "token.revoked" v 1,
    KeyCreated(KeyCreated) = "key.created" v 1,
    KeyUsed(KeyUsed) = "key.used" v 1,
    KeyRevoked(KeyRevoked) = "key.revoked" v 1,
    DeviceRegistered(DeviceRegistered) = "device.registered" v 1,
    DeviceUpdated(DeviceUpdated) = "device.updated" v 1,
    DeviceTagged(DeviceTagged) = "device.tagged" v 1,
    DeviceUntagged(DeviceUntagged) = "device.untagged" v 1,
    DeviceOwnerChanged(DeviceOwnerChanged) = "device.owner_changed" v 1,
    DeviceKeyExpired(DeviceKeyExpired) = "device.key_expired" v 1,
    DeviceRemoved(DeviceRemoved) = "device.removed" v 1,
    DevicePurged(DevicePurged) = "device.purged" v 1,
    KeyPurged(KeyPurged) = "key.purged" v 1,
    TokenPurged(TokenPurged) = "token.purged" v 1,
    DeviceCredentialRotated(DeviceCredentialRotated) = "device.credential_rotated" v 1,
    OrgRetentionSet(OrgRetentionSet) = "org.retention_set" v 1,
    UserInvited(UserInvited) = "user.invited" v 1,
    UserProvisioned(UserProvisioned) = "user.provisioned" v 1,
    UserUpdated(UserUpdated) = "user.updated" v 1,
    UserDeactivated(UserDeactivated) = "user.deactivated" v 1,
    UserReactivated(UserReactivated) = "user.reactivated" v 1,
    UserSignedIn(UserSignedIn) = "user.signed_in" v 1,
    UserRemoved(UserRemoved) = "user.removed" v 1,
    GroupCreated(GroupCreated) = "group.created" v 1,
    GroupUpdated(GroupUpdated) = "group.updated" v 1,
    GroupMemberAdded(GroupMemberAdded) = "group.member_added" v 1,
    GroupMemberRemoved(GroupMemberRemoved) = "group.member_removed" v 1,
    GroupRemoved(GroupRemoved) = "group.removed" v 1,
    SsoDomainAdded(SsoDomainAdded) = "sso.domain_added" v 1,
    SsoDomainRemoved(SsoDomainRemoved) = "sso.domain_removed" v 1,
    OrgOidcConfigured(OrgOidcConfigured) = "org.oidc_configured" v 1,
    PolicyApplied(PolicyApplied) = "policy.applied" v 1,
    PolicyTestFailed(PolicyTestFailed) = "policy.test_failed" v 1,
    PolicyTestRestored(PolicyTestRestored) = "policy.test_restored" v 1,
    PostureConfigured(PostureConfigured) = "posture.configured" v 1,
    PostureReported(PostureReported) = "posture.reported" v 1,
    PostureViolation(PostureViolation) = "posture.violation" v 1,
    PostureRestored(PostureRestored) = "posture.restored" v 1,
    WebhookCreated(WebhookCreated) = "webhook.created" v 1,
    WebhookUpdated(WebhookUpdated) = "webhook.updated" v 1,
    WebhookSecretRotated(WebhookSecretRotated) = "webhook.secret_rotated" v 1,
    WebhookReplayed(WebhookReplayed) = "webhook.replayed" v 1,
    WebhookDisabled(WebhookDisabled) = "webhook.disabled" v 1,
    WebhookRemoved(WebhookRemoved) = "webhook.removed" v 1,
}

/// Older schema versions decode through the frozen structs and pure upcasts of
/// [`crate::legacy`].
fn decode_legacy(event_type: &str, version: u16, bytes: &[u8]) -> Result<Event, Error> {
    crate::legacy::decode(event_type, version, bytes)
}

impl Event {
    /// The payload as JSON for the audit log, SSE and webhooks. Hashes of secrets are removed:
    /// they are not secrets, but nobody outside the server needs them.
    pub fn data_json(&self) -> serde_json::Value {
        let mut v = self.payload_json();
        if let serde_json::Value::Object(map) = &mut v {
            map.retain(|k, _| !k.ends_with("_hash"));
        }
        v
    }

    /// What the event is about, as `kind:id` (the audit log's `subject`).
    pub fn subject(&self) -> String {
        match self {
            Event::OrgCreated(e) => format!("org:{}", e.org_id),
            Event::OrgLimitsSet(e) => format!("org:{}", e.org_id),
            Event::OrgSettingsChanged(e) => format!("org:{}", e.org_id),
            Event::TokenCreated(e) => format!("token:{}", e.token_id),
            Event::TokenRevoked(e) => format!("token:{}", e.token_id),
            Event::KeyCreated(e) => format!("key:{}", e.key_id),
            Event::KeyUsed(e) => format!("key:{}", e.key_id),
            Event::KeyRevoked(e) => format!("key:{}", e.key_id),
            Event::DeviceRegistered(e) => format!("device:{}", e.device_id),
            Event::DeviceUpdated(e) => format!("device:{}", e.device_id),
            Event::DeviceTagged(e) => format!("device:{}", e.device_id),
            Event::DeviceUntagged(e) => format!("device:{}", e.device_id),
            Event::DeviceOwnerChanged(e) => format!("device:{}", e.device_id),
            Event::DeviceKeyExpired(e) => format!("device:{}", e.device_id),
            Event::DeviceRemoved(e) => format!("device:{}", e.device_id),
            Event::DevicePurged(e) => format!("device:{}", e.device_id),
            Event::KeyPurged(e) => format!("key:{}", e.key_id),
            Event::TokenPurged(e) => format!("token:{}", e.token_id),
            Event::DeviceCredentialRotated(e) => format!("device:{}", e.device_id),
            Event::OrgRetentionSet(e) => format!("org:{}", e.org_id),
            Event::UserInvited(e) => format!("user:{}", e.user_id),
            Event::UserProvisioned(e) => format!("user:{}", e.user_id),
            Event::UserUpdated(e) => format!("user:{}", e.user_id),
            Event::UserDeactivated(e) => format!("user:{}", e.user_id),
            Event::UserReactivated(e) => format!("user:{}", e.user_id),
            Event::UserSignedIn(e) => format!("user:{}", e.user_id),
            Event::UserRemoved(e) => format!("user:{}", e.user_id),
            Event::GroupCreated(e) => format!("group:{}", e.group_id),
            Event::GroupUpdated(e) => format!("group:{}", e.group_id),
            Event::GroupMemberAdded(e) => format!("group:{}", e.group_id),
            Event::GroupMemberRemoved(e) => format!("group:{}", e.group_id),
            Event::GroupRemoved(e) => format!("group:{}", e.group_id),
            Event::SsoDomainAdded(e) => format!("org:{}", e.org_id),
            Event::SsoDomainRemoved(e) => format!("org:{}", e.org_id),
            Event::OrgOidcConfigured(e) => format!("org:{}", e.org_id),
            Event::PolicyApplied(e) => format!("policy:{}", e.org_id),
            Event::PolicyTestFailed(e) => format!("policy:{}", e.org_id),
            Event::PolicyTestRestored(e) => format!("policy:{}", e.org_id),
            Event::PostureConfigured(e) => format!("org:{}", e.org_id),
            Event::PostureReported(e) => format!("device:{}", e.device_id),
            Event::PostureViolation(e) => format!("device:{}", e.device_id),
            Event::PostureRestored(e) => format!("device:{}", e.device_id),
            Event::WebhookCreated(e) => format!("webhook:{}", e.webhook_id),
            Event::WebhookUpdated(e) => format!("webhook:{}", e.webhook_id),
            Event::WebhookSecretRotated(e) => format!("webhook:{}", e.webhook_id),
            Event::WebhookReplayed(e) => format!("webhook:{}", e.webhook_id),
            Event::WebhookDisabled(e) => format!("webhook:{}", e.webhook_id),
            Event::WebhookRemoved(e) => format!("webhook:{}", e.webhook_id),
        }
    }
}
