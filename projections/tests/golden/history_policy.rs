//! The golden history's policy and posture chapter: every branch of their folds.

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
