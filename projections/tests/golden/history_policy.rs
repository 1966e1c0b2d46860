//! The golden history's policy, posture and webhook chapters: every branch of their folds.

use events::event::{
    OsMinimum, PolicyApplied, PolicyTestFailed, PolicyTestRestored, PostureConfigured,
    PostureReported, PostureRequirements, PostureRestored, PostureViolation, Signals, TestFailure,
};

use crate::history::History;

pub fn policy(log: &mut History) {
    let org = "org_a";
    for (version, rollback_of) in [(1, None), (2, None), (3, Some(1))] {
        log.push(
            org,
            "policy:org_a",
            PolicyApplied {
                org_id: org.into(),
                version,
                format: if version == 2 { "json" } else { "yaml" }.into(),
                text: format!("version: 1\n# v{version}\n"),
                reason: Some(format!("change {version}")),
                rollback_of,
            },
        );
    }
    log.push(
        org,
        "policy:org_a",
        PolicyTestFailed {
            org_id: org.into(),
            policy_version: 3,
            test: "ssh".into(),
            failures: vec![TestFailure {
                pointer: "/tests/0/accept/0".into(),
                message: "dev_2 cannot reach tag:prod:22".into(),
            }],
        },
    );
    log.push(
        org,
        "policy:org_a",
        PolicyTestFailed {
            org_id: org.into(),
            policy_version: 3,
            test: "db".into(),
            failures: vec![],
        },
    );
    log.push(
        org,
        "policy:org_a",
        PolicyTestRestored {
            org_id: org.into(),
            policy_version: 3,
            test: "ssh".into(),
        },
    );
    log.push(
        org,
        "posture:org_a",
        PostureConfigured {
            org_id: org.into(),
            requirements: PostureRequirements {
                min_os_version: vec![OsMinimum {
                    os: "linux".into(),
                    version: "6.1".into(),
                }],
                min_client_version: None,
                disk_encrypted: true,
                firewall: false,
                screen_lock: false,
                action: "block".into(),
            },
        },
    );
    for (disk, firewall) in [(false, Some(true)), (true, Some(true)), (true, None)] {
        log.push(
            org,
            "posture:org_a",
            PostureReported {
                device_id: "dev_2".into(),
                signals: Signals {
                    os_version: Some("6.8".into()),
                    client_version: None,
                    disk_encrypted: Some(disk),
                    firewall,
                    screen_lock: None,
                },
            },
        );
    }
    log.push(
        org,
        "posture:org_a",
        PostureViolation {
            device_id: "dev_2".into(),
            failing: vec!["disk_encrypted".into()],
            action: "block".into(),
        },
    );
    log.push(
        org,
        "posture:org_a",
        PostureRestored {
            device_id: "dev_2".into(),
        },
    );
}

/// The webhooks' chapter: created, changed, disabled and enabled again, rotated, replayed,
/// and one removed.
pub fn webhooks(log: &mut History) {
    use events::event::{
        WebhookCreated, WebhookDisabled, WebhookRemoved, WebhookReplayed, WebhookSecretRotated,
        WebhookUpdated,
    };
    let org = "org_a";
    for id in ["wh_1", "wh_2"] {
        log.push(
            org,
            &format!("webhook:{id}"),
            WebhookCreated {
                webhook_id: id.into(),
                org_id: org.into(),
                url: format!("https://siem.example.com/{id}"),
                event_types: "device.*".into(),
                description: "SIEM".into(),
            },
        );
    }
    log.push(
        org,
        "webhook:wh_1",
        WebhookDisabled {
            webhook_id: "wh_1".into(),
            org_id: org.into(),
            reason: "no 2xx answer for 24 hours".into(),
            event_id: 3,
            failing_since: 1,
        },
    );
    log.push(
        org,
        "webhook:wh_1",
        WebhookUpdated {
            webhook_id: "wh_1".into(),
            org_id: org.into(),
            url: "https://siem.example.com/new".into(),
            event_types: String::new(),
            description: "SIEM, moved".into(),
            enabled: true,
        },
    );
    log.push(
        org,
        "webhook:wh_1",
        WebhookSecretRotated {
            webhook_id: "wh_1".into(),
            org_id: org.into(),
            previous_valid_until: 9_000_000,
        },
    );
    log.push(
        org,
        "webhook:wh_1",
        WebhookReplayed {
            webhook_id: "wh_1".into(),
            org_id: org.into(),
            since_id: 2,
        },
    );
    log.push(
        org,
        "webhook:wh_2",
        WebhookRemoved {
            webhook_id: "wh_2".into(),
            org_id: org.into(),
        },
    );
}
