//! A deterministic sample of every event type: the golden fixtures of the codec tests are made
//! from them, and the OpenAPI document shows one example per event type with them. A new event
//! type needs a sample here (the codec tests fail until it has one).

use crate::Event;
use crate::codec;
use crate::envelope::ActorKind;
use crate::event::*;
use crate::legacy::{OrgLimitsSetV1, TokenCreatedV1, TokenCreatedV2};

/// A fixed hash-like value, distinct per use so a swapped field shows.
fn hash(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
}

/// A deterministic sample of every current event type, and the kind of actor that causes it
/// (so every `ActorKind` is in some fixture). `None`: no sample yet, which fails the tests.
pub fn sample(event_type: &str) -> Option<(Event, ActorKind)> {
    let device = || String::from("dev_01J8Z3Q4ZP6ZK7S2M5V4W3X2Y1");
    Some(match event_type {
        "org.created" => (
            OrgCreated {
                org_id: "org_01".into(),
                name: "Acme Corp".into(),
                plan: Plan::Business,
                read_per_min: 1200,
                write_per_min: 300,
            }
            .into(),
            ActorKind::Console,
        ),
        "org.limits_set" => (
            OrgLimitsSet {
                org_id: "org_01".into(),
                read_per_min: 6000,
                write_per_min: 70_000,
                register_per_min: Some(5000),
            }
            .into(),
            ActorKind::Console,
        ),
        "org.settings_changed" => (
            OrgSettingsChanged {
                org_id: "org_01".into(),
                device_idle_removal_days: Some(90),
                ephemeral_offline_secs: 1800,
            }
            .into(),
            ActorKind::Token,
        ),
        "token.created" => (
            TokenCreated {
                token_id: "tok_01".into(),
                prefix: "qz_ab12cd".into(),
                secret_hash: hash(1),
                scopes: vec!["devices:read".into(), "devices:write".into()],
                description: "terraform".into(),
                expires_at: 1_800_000_000_000_000,
                parent_token_id: Some("tok_00".into()),
                user_id: Some(user()),
            }
            .into(),
            ActorKind::Token,
        ),
        "token.revoked" => (
            TokenRevoked {
                token_id: "tok_01".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "key.created" => (
            KeyCreated {
                key_id: "key_01".into(),
                prefix: "qzk_9f8e".into(),
                secret_hash: hash(2),
                reusable: true,
                ephemeral: false,
                tags: vec!["tag:server".into(), "tag:prod".into()],
                owner: Some("user_01".into()),
                expires_at: 1_790_000_000_000_000,
                description: "rack 4".into(),
                max_uses: Some(25),
            }
            .into(),
            ActorKind::Scim,
        ),
        "key.used" => (
            KeyUsed {
                key_id: "key_01".into(),
                device_id: device(),
                uses: 3,
            }
            .into(),
            ActorKind::Device,
        ),
        "key.revoked" => (
            KeyRevoked {
                key_id: "key_01".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "device.registered" => (
            DeviceRegistered {
                device_id: device(),
                key_id: "key_01".into(),
                hostname: "web-1".into(),
                os: "linux".into(),
                os_version: "6.8.0".into(),
                public_key: "nodekey:4f1c0a9e".into(),
                ipv4: "100.64.0.7".into(),
                ipv6: "fd7a:115c:a1e0::7".into(),
                tags: vec!["tag:server".into()],
                owner: None,
                ephemeral: true,
                credential_hash: hash(3),
                key_expires_at: Some(1_780_000_000_000_000),
            }
            .into(),
            ActorKind::Device,
        ),
        "device.updated" => (
            DeviceUpdated {
                device_id: device(),
                hostname: Some("web-1b".into()),
            }
            .into(),
            ActorKind::Token,
        ),
        "device.tagged" => (
            DeviceTagged {
                device_id: device(),
                tags: vec!["tag:db".into(), "tag:eu".into()],
            }
            .into(),
            ActorKind::Token,
        ),
        "device.untagged" => (
            DeviceUntagged {
                device_id: device(),
                tags: vec!["tag:eu".into()],
            }
            .into(),
            ActorKind::Token,
        ),
        "device.owner_changed" => (
            DeviceOwnerChanged {
                device_id: device(),
                from: Some("user_01".into()),
                to: None,
            }
            .into(),
            ActorKind::Scim,
        ),
        "device.key_expired" => (
            DeviceKeyExpired {
                device_id: device(),
            }
            .into(),
            ActorKind::System,
        ),
        "device.removed" => (
            DeviceRemoved {
                device_id: device(),
                reason: "ephemeral_offline".into(),
            }
            .into(),
            ActorKind::System,
        ),
        "device.purged" => (
            DevicePurged {
                device_id: device(),
            }
            .into(),
            ActorKind::System,
        ),
        "key.purged" => (
            KeyPurged {
                key_id: "key_01".into(),
            }
            .into(),
            ActorKind::System,
        ),
        "token.purged" => (
            TokenPurged {
                token_id: "tok_01".into(),
            }
            .into(),
            ActorKind::System,
        ),
        "device.credential_rotated" => (
            DeviceCredentialRotated {
                device_id: device(),
                credential_hash: hash(4),
            }
            .into(),
            ActorKind::Device,
        ),
        "org.retention_set" => (
            OrgRetentionSet {
                org_id: "org_01".into(),
                days: 730,
            }
            .into(),
            ActorKind::Console,
        ),
        "user.invited" => (
            UserInvited {
                user_id: user(),
                email: "alice@example.com".into(),
                role: "member".into(),
                invitation_hash: hash(7),
                expires_at: 1_800_000_000_000_000,
            }
            .into(),
            ActorKind::Token,
        ),
        "user.provisioned" => (
            UserProvisioned {
                user_id: user(),
                profile: profile(),
                role: "member".into(),
                active: true,
                source: "scim".into(),
            }
            .into(),
            ActorKind::Scim,
        ),
        "user.updated" => (
            UserUpdated {
                user_id: user(),
                profile: UserProfile {
                    family_name: None,
                    ..profile()
                },
            }
            .into(),
            ActorKind::Scim,
        ),
        "user.deactivated" => (UserDeactivated { user_id: user() }.into(), ActorKind::Scim),
        "user.reactivated" => (UserReactivated { user_id: user() }.into(), ActorKind::Scim),
        "user.signed_in" => (
            UserSignedIn {
                user_id: user(),
                issuer: "https://idp.example.com".into(),
                subject: "00u1abcd".into(),
                email: "alice@example.com".into(),
            }
            .into(),
            ActorKind::User,
        ),
        "user.removed" => (
            UserRemoved {
                user_id: user(),
                reason: "api".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "group.created" => (
            GroupCreated {
                group_id: group(),
                display_name: "Engineering".into(),
                external_id: Some("8f1c2b7e".into()),
                source: "scim".into(),
            }
            .into(),
            ActorKind::Scim,
        ),
        "group.updated" => (
            GroupUpdated {
                group_id: group(),
                display_name: "Platform".into(),
                external_id: None,
            }
            .into(),
            ActorKind::Scim,
        ),
        "group.member_added" => (
            GroupMemberAdded {
                group_id: group(),
                user_id: user(),
            }
            .into(),
            ActorKind::Scim,
        ),
        "group.member_removed" => (
            GroupMemberRemoved {
                group_id: group(),
                user_id: user(),
            }
            .into(),
            ActorKind::User,
        ),
        "group.removed" => (GroupRemoved { group_id: group() }.into(), ActorKind::Scim),
        "sso.domain_added" => (
            SsoDomainAdded {
                org_id: "org_01".into(),
                domain: "example.com".into(),
                role: "member".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "sso.domain_removed" => (
            SsoDomainRemoved {
                org_id: "org_01".into(),
                domain: "example.com".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "org.oidc_configured" => (
            OrgOidcConfigured {
                org_id: "org_01".into(),
                issuer: "https://idp.example.com".into(),
                client_id: "quickztna".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        other => return policy_sample(other),
    })
}

/// The samples of the policy's and posture's events.
fn policy_sample(event_type: &str) -> Option<(Event, ActorKind)> {
    let device = || String::from("dev_01J8Z3Q4ZP6ZK7S2M5V4W3X2Y1");
    Some(match event_type {
        "policy.applied" => (
            PolicyApplied {
                org_id: "org_01".into(),
                version: 3,
                format: "yaml".into(),
                text: "version: 1\nrules:\n  - { name: ssh, action: accept, src: [group:sre], dst: [tag:prod], ports: [22] }\n".into(),
                reason: Some("CHG-1234: let SRE reach production".into()),
                rollback_of: Some(1),
            }
            .into(),
            ActorKind::Token,
        ),
        "policy.test_failed" => (
            PolicyTestFailed {
                org_id: "org_01".into(),
                policy_version: 3,
                test: "sre-can-ssh".into(),
                failures: vec![TestFailure {
                    pointer: "/tests/0/accept/0".into(),
                    message: "dev_01 (laptop) cannot reach tag:prod:22".into(),
                }],
            }
            .into(),
            ActorKind::System,
        ),
        "policy.test_restored" => (
            PolicyTestRestored {
                org_id: "org_01".into(),
                policy_version: 3,
                test: "sre-can-ssh".into(),
            }
            .into(),
            ActorKind::System,
        ),
        "posture.configured" => (
            PostureConfigured {
                org_id: "org_01".into(),
                requirements: PostureRequirements {
                    min_os_version: vec![OsMinimum {
                        os: "linux".into(),
                        version: "6.1".into(),
                    }],
                    min_client_version: Some("1.4.0".into()),
                    disk_encrypted: true,
                    firewall: true,
                    screen_lock: false,
                    action: "block".into(),
                },
            }
            .into(),
            ActorKind::Token,
        ),
        "posture.reported" => (
            PostureReported {
                device_id: device(),
                signals: Signals {
                    os_version: Some("6.8.0".into()),
                    client_version: Some("1.4.2".into()),
                    disk_encrypted: Some(true),
                    firewall: Some(false),
                    screen_lock: None,
                },
            }
            .into(),
            ActorKind::System,
        ),
        "posture.violation" => (
            PostureViolation {
                device_id: device(),
                failing: vec!["firewall".into()],
                action: "block".into(),
            }
            .into(),
            ActorKind::System,
        ),
        "posture.restored" => (
            PostureRestored {
                device_id: device(),
            }
            .into(),
            ActorKind::System,
        ),
        other => return webhook_sample(other),
    })
}

/// The samples of the webhooks' events.
fn webhook_sample(event_type: &str) -> Option<(Event, ActorKind)> {
    let webhook = || String::from("wh_01J8Z3Q4ZP6ZK7S2M5V4W3X2Y1");
    let org = || String::from("org_01");
    Some(match event_type {
        "webhook.created" => (
            WebhookCreated {
                webhook_id: webhook(),
                org_id: org(),
                url: "https://siem.example.com/hooks/quickztna".into(),
                event_types: "device.*,policy.applied".into(),
                description: "SIEM".into(),
            }
            .into(),
            ActorKind::Token,
        ),
        "webhook.updated" => (
            WebhookUpdated {
                webhook_id: webhook(),
                org_id: org(),
                url: "https://siem.example.com/hooks/quickztna".into(),
                event_types: "device.*".into(),
                description: "SIEM".into(),
                enabled: true,
            }
            .into(),
            ActorKind::Token,
        ),
        "webhook.secret_rotated" => (
            WebhookSecretRotated {
                webhook_id: webhook(),
                org_id: org(),
                previous_valid_until: 1_764_086_400_000_000,
            }
            .into(),
            ActorKind::Token,
        ),
        "webhook.replayed" => (
            WebhookReplayed {
                webhook_id: webhook(),
                org_id: org(),
                since_id: 1200,
            }
            .into(),
            ActorKind::Token,
        ),
        "webhook.disabled" => (
            WebhookDisabled {
                webhook_id: webhook(),
                org_id: org(),
                reason: "no 2xx answer for 24 hours (last: HTTP 503)".into(),
                event_id: 1234,
                failing_since: 1_764_000_000_000_000,
            }
            .into(),
            ActorKind::System,
        ),
        "webhook.removed" => (
            WebhookRemoved {
                webhook_id: webhook(),
                org_id: org(),
            }
            .into(),
            ActorKind::Token,
        ),
        _ => return None,
    })
}

/// The sample person of the directory's events.
fn user() -> String {
    "usr_01j8z3q4zp6zk7s2m5v4w3x2y1".into()
}

fn group() -> String {
    "grp_01j8z3q4zp6zk7s2m5v4w3x2y1".into()
}

fn profile() -> UserProfile {
    UserProfile {
        user_name: "alice@example.com".into(),
        email: "alice@example.com".into(),
        display_name: "Alice Example".into(),
        given_name: Some("Alice".into()),
        family_name: Some("Example".into()),
        external_id: Some("alice".into()),
    }
}

/// A deterministic sample of an older schema version of an event (one of
/// [`crate::legacy::VERSIONS`]): its payload bytes as that version wrote them, what it upcasts
/// to, and the kind of actor that caused it. The golden fixture of that version was made from
/// it, so it must never change.
pub fn legacy_sample(event_type: &str, version: u16) -> Option<(Vec<u8>, Event, ActorKind)> {
    Some(match (event_type, version) {
        ("token.created", 1) => {
            let v1 = TokenCreatedV1 {
                token_id: "tok_01".into(),
                prefix: "qz_ab12cd".into(),
                secret_hash: hash(1),
                scopes: vec!["devices:read".into(), "devices:write".into()],
                description: "terraform".into(),
                expires_at: 1_800_000_000_000_000,
            };
            let payload = codec::encode_payload(&v1);
            (payload, TokenCreated::from(v1).into(), ActorKind::Token)
        }
        ("token.created", 2) => {
            let v2 = TokenCreatedV2 {
                token_id: "tok_01".into(),
                prefix: "qz_ab12cd".into(),
                secret_hash: hash(1),
                scopes: vec!["devices:read".into(), "devices:write".into()],
                description: "terraform".into(),
                expires_at: 1_800_000_000_000_000,
                parent_token_id: Some("tok_00".into()),
            };
            let payload = codec::encode_payload(&v2);
            (payload, TokenCreated::from(v2).into(), ActorKind::Token)
        }
        ("org.limits_set", 1) => {
            let v1 = OrgLimitsSetV1 {
                org_id: "org_01".into(),
                read_per_min: 6000,
                write_per_min: 70_000,
            };
            let payload = codec::encode_payload(&v1);
            (payload, OrgLimitsSet::from(v1).into(), ActorKind::Console)
        }
        _ => return None,
    })
}
