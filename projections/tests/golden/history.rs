//! The golden history: a fixed list of events that takes every branch of every read model's
//! `apply`, in fixed envelopes (ids, times, actors), so that folding it gives the same state in
//! every run. Add events here when a model learns a new one (and regenerate the digests).

use events::event::{
    DeviceCredentialRotated, DeviceKeyExpired, DeviceOwnerChanged, DevicePurged, DeviceRegistered,
    DeviceRemoved, DeviceTagged, DeviceUntagged, DeviceUpdated, KeyCreated, KeyPurged, KeyRevoked,
    KeyUsed, OrgCreated, OrgLimitsSet, OrgRetentionSet, OrgSettingsChanged, Plan, TokenCreated,
    TokenPurged, TokenRevoked,
};
use events::event::{
    GroupCreated, GroupMemberAdded, GroupMemberRemoved, GroupRemoved, GroupUpdated,
    OrgOidcConfigured, SsoDomainAdded, SsoDomainRemoved, UserDeactivated, UserInvited, UserProfile,
    UserProvisioned, UserReactivated, UserRemoved, UserSignedIn, UserUpdated,
};
use events::{Actor, Envelope, Event, Recorded};

/// A fixed instant (2026-01-01T00:00:00Z, in microseconds) the history's times count from.
const EPOCH: i64 = 1_767_225_600_000_000;

pub fn events() -> Vec<Recorded> {
    let mut log = History::default();
    for (org, name, plan) in [
        ("org_a", "acme", Plan::Workforce),
        ("org_b", "globex", Plan::Free),
    ] {
        log.push(
            org,
            &format!("org:{org}"),
            OrgCreated {
                org_id: org.into(),
                name: name.into(),
                plan,
                read_per_min: 600,
                write_per_min: 60,
            },
        );
    }
    log.push(
        "org_a",
        "org:org_a",
        OrgLimitsSet {
            org_id: "org_a".into(),
            read_per_min: 6_000,
            write_per_min: 600,
            register_per_min: Some(2_000),
        },
    );
    log.push(
        "org_a",
        "org:org_a",
        OrgSettingsChanged {
            org_id: "org_a".into(),
            device_idle_removal_days: Some(90),
            ephemeral_offline_secs: 600,
        },
    );
    for (org, id, n) in [("org_a", "tok_1", 1u8), ("org_b", "tok_2", 2)] {
        log.push(
            org,
            &format!("token:{id}"),
            TokenCreated {
                token_id: id.into(),
                prefix: format!("qz_{n}{n}{n}"),
                secret_hash: [n; 32],
                scopes: vec!["read".into(), "devices:write".into()],
                description: format!("token {n}"),
                expires_at: EPOCH + 3_600_000_000,
                parent_token_id: None,
                user_id: None,
            },
        );
    }
    log.push(
        "org_a",
        "token:tok_1",
        TokenRevoked {
            token_id: "tok_1".into(),
        },
    );
    for (id, n, reusable, ephemeral) in [("key_1", 11u8, true, false), ("key_2", 12, false, true)] {
        log.push(
            "org_a",
            &format!("key:{id}"),
            KeyCreated {
                key_id: id.into(),
                prefix: format!("qzk_{n}"),
                secret_hash: [n; 32],
                reusable,
                ephemeral,
                tags: vec!["tag:ci".into()],
                owner: Some("alice@example.com".into()),
                expires_at: EPOCH + 86_400_000_000,
                description: format!("key {n}"),
                max_uses: reusable.then_some(3),
            },
        );
    }
    for (key, device, n) in [("key_1", "dev_1", 21u8), ("key_2", "dev_2", 22)] {
        log.push(
            "org_a",
            "ipam:org_a",
            KeyUsed {
                key_id: key.into(),
                device_id: device.into(),
                uses: 1,
            },
        );
        log.push(
            "org_a",
            &format!("device:{device}"),
            DeviceRegistered {
                device_id: device.into(),
                key_id: key.into(),
                hostname: format!("host-{n}"),
                os: "linux".into(),
                os_version: "6.1".into(),
                public_key: format!("nodekey:{n}"),
                ipv4: format!("100.64.0.{n}"),
                ipv6: format!("fd7a:115c:a1e0::{n}"),
                tags: vec!["tag:web".into(), "tag:ci".into(), "tag:web".into()],
                owner: Some("alice@example.com".into()),
                ephemeral: key == "key_2",
                credential_hash: [n; 32],
                key_expires_at: Some(EPOCH + 7 * 86_400_000_000),
            },
        );
    }
    let dev_1 = "device:dev_1";
    let id = || "dev_1".to_owned();
    log.push(
        "org_a",
        dev_1,
        DeviceUpdated {
            device_id: id(),
            hostname: Some("build-01".into()),
        },
    );
    log.push(
        "org_a",
        dev_1,
        DeviceTagged {
            device_id: id(),
            tags: vec!["tag:prod".into(), "tag:ci".into()],
        },
    );
    log.push(
        "org_a",
        dev_1,
        DeviceUntagged {
            device_id: id(),
            tags: vec!["tag:web".into()],
        },
    );
    log.push(
        "org_a",
        dev_1,
        DeviceOwnerChanged {
            device_id: id(),
            from: Some("alice@example.com".into()),
            to: Some("bob@example.com".into()),
        },
    );
    log.push("org_a", dev_1, DeviceKeyExpired { device_id: id() });
    log.push(
        "org_a",
        "device:dev_2",
        DeviceRemoved {
            device_id: "dev_2".into(),
            reason: "ephemeral_offline".into(),
        },
    );
    log.push(
        "org_a",
        "key:key_1",
        KeyRevoked {
            key_id: "key_1".into(),
        },
    );
    // Retention: the removed device, the revoked key and the revoked token leave.
    log.push(
        "org_a",
        "device:dev_2",
        DevicePurged {
            device_id: "dev_2".into(),
        },
    );
    log.push(
        "org_a",
        "key:key_1",
        KeyPurged {
            key_id: "key_1".into(),
        },
    );
    log.push(
        "org_a",
        "token:tok_1",
        TokenPurged {
            token_id: "tok_1".into(),
        },
    );
    // Events of newer schema versions and types come last, so the histories the other models
    // fold stay as they were.
    log.push(
        "org_b",
        "token:tok_3",
        TokenCreated {
            token_id: "tok_3".into(),
            prefix: "qz_333".into(),
            secret_hash: [3; 32],
            scopes: vec!["devices:write".into()],
            description: "token 3, issued by token 2".into(),
            expires_at: EPOCH + 1_800_000_000,
            parent_token_id: Some("tok_2".into()),
            user_id: None,
        },
    );
    log.push(
        "org_a",
        dev_1,
        DeviceCredentialRotated {
            device_id: id(),
            credential_hash: [23; 32],
        },
    );
    log.push(
        "org_a",
        "org:org_a",
        OrgRetentionSet {
            org_id: "org_a".into(),
            days: 30,
        },
    );
    directory(&mut log);
    crate::history_policy::policy(&mut log);
    crate::history_policy::webhooks(&mut log);
    log.events
}

/// People, groups and SSO settings: every branch of the directory's fold.
fn directory(log: &mut History) {
    let profile = |name: &str| UserProfile {
        user_name: format!("{name}@acme.test"),
        email: format!("{name}@acme.test"),
        display_name: name.into(),
        given_name: Some(name.into()),
        family_name: None,
        external_id: Some(format!("ext-{name}")),
    };
    let (org, alice, bob) = ("org_a", "user:usr_alice", "user:usr_bob");
    log.push(
        org,
        alice,
        UserInvited {
            user_id: "usr_alice".into(),
            email: "alice@acme.test".into(),
            role: "admin".into(),
            invitation_hash: [31; 32],
            expires_at: EPOCH + 7 * 86_400_000_000,
        },
    );
    log.push(
        org,
        alice,
        UserSignedIn {
            user_id: "usr_alice".into(),
            issuer: "https://idp.acme.test".into(),
            subject: "sub-alice".into(),
            email: "alice@acme.test".into(),
        },
    );
    log.push(
        org,
        bob,
        UserProvisioned {
            user_id: "usr_bob".into(),
            profile: profile("bob"),
            role: "member".into(),
            active: true,
            source: "scim".into(),
        },
    );
    log.push(
        org,
        bob,
        UserUpdated {
            user_id: "usr_bob".into(),
            profile: profile("robert"),
        },
    );
    log.push(
        org,
        bob,
        UserDeactivated {
            user_id: "usr_bob".into(),
        },
    );
    log.push(
        org,
        bob,
        UserReactivated {
            user_id: "usr_bob".into(),
        },
    );
    for (id, name) in [("grp_eng", "Engineering"), ("grp_ops", "Ops")] {
        let stream = format!("group:{id}");
        log.push(
            org,
            &stream,
            GroupCreated {
                group_id: id.into(),
                display_name: name.into(),
                external_id: None,
                source: "scim".into(),
            },
        );
        for user in ["usr_alice", "usr_bob"] {
            log.push(
                org,
                &stream,
                GroupMemberAdded {
                    group_id: id.into(),
                    user_id: user.into(),
                },
            );
        }
    }
    log.push(
        org,
        "group:grp_eng",
        GroupUpdated {
            group_id: "grp_eng".into(),
            display_name: "Platform".into(),
            external_id: Some("8f1c".into()),
        },
    );
    log.push(
        org,
        "group:grp_eng",
        GroupMemberRemoved {
            group_id: "grp_eng".into(),
            user_id: "usr_alice".into(),
        },
    );
    log.push(
        org,
        "group:grp_ops",
        GroupRemoved {
            group_id: "grp_ops".into(),
        },
    );
    log.push(
        org,
        bob,
        UserRemoved {
            user_id: "usr_bob".into(),
            reason: "scim".into(),
        },
    );
    log.push(
        org,
        "org:org_a",
        SsoDomainAdded {
            org_id: org.into(),
            domain: "acme.test".into(),
            role: "member".into(),
        },
    );
    log.push(
        org,
        "org:org_a",
        SsoDomainAdded {
            org_id: org.into(),
            domain: "corp.acme.test".into(),
            role: "auditor".into(),
        },
    );
    log.push(
        org,
        "org:org_a",
        SsoDomainRemoved {
            org_id: org.into(),
            domain: "corp.acme.test".into(),
        },
    );
    log.push(
        org,
        "org:org_a",
        OrgOidcConfigured {
            org_id: org.into(),
            issuer: "https://idp.acme.test".into(),
            client_id: "quickztna".into(),
        },
    );
}

#[derive(Default)]
pub struct History {
    events: Vec<Recorded>,
    /// Each stream's next revision, as the log would assign it.
    revisions: std::collections::BTreeMap<String, u64>,
}

impl History {
    pub fn push(&mut self, org: &str, stream: &str, event: impl Into<Event>) {
        let event = event.into();
        let position = self.events.len() as u64 + 1;
        let revision = self.revisions.entry(stream.to_owned()).or_default();
        // Each org's own gap-free sequence, as the log assigns it.
        let org_seq = self
            .events
            .iter()
            .filter(|r| r.envelope.org_id == org)
            .count() as u64
            + 1;
        let envelope = Envelope {
            position,
            org_seq,
            stream: stream.to_owned(),
            revision: *revision,
            event_id: [position as u8; 16],
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at: EPOCH + position as i64 * 1_000_000,
            org_id: org.to_owned(),
            actor: Actor::system("golden history"),
            request_id: format!("req_{position}"),
            payload: event.encode_payload(),
            mac: [0; 32],
        };
        *revision += 1;
        self.events.push(Recorded { envelope, event });
    }
}
