//! The offline commands (`init`, `org …`, `audit-log verify`) through the real binary.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;

fn quickztna(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quickztna"))
        .args(args)
        .output()
        .expect("run quickztna")
}

#[tokio::test]
async fn offline_commands_refuse_a_data_dir_held_by_a_running_server() {
    let mut app = spawn_app().await;
    let dir = app.data_dir().to_str().unwrap().to_owned();
    let out = quickztna(&["init", "--org", "second", "--data-dir", &dir]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another process"),
        "clear message, got: {stderr}"
    );
    assert!(out.stdout.is_empty(), "no token printed on failure");

    app.stop().await;
    let out = quickztna(&["init", "--org", "second", "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("init prints JSON");
    assert!(created["token"].as_str().unwrap().starts_with("qz_"));
    assert!(created["org_id"].as_str().unwrap().starts_with("org_"));

    let out = quickztna(&["init", "--org", "second", "--data-dir", &dir]);
    assert!(!out.status.success(), "the name is taken");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[tokio::test]
async fn org_settings_limits_and_chain_verification_work_offline() {
    let mut app = spawn_app().await;
    app.stop().await;
    let dir = app.data_dir().to_str().unwrap().to_owned();

    let out = quickztna(&[
        "org",
        "set-settings",
        "--org",
        "acme",
        "--device-idle-removal",
        "90d",
        "--ephemeral-offline",
        "10m",
        "--data-dir",
        &dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device_idle_removal_days"], 90);
    assert_eq!(v["ephemeral_offline_secs"], 600);

    let out = quickztna(&[
        "org",
        "set-settings",
        "--org",
        "acme",
        "--device-idle-removal",
        "off",
        "--data-dir",
        &dir,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device_idle_removal_days"], Value::Null);
    assert_eq!(v["ephemeral_offline_secs"], 600, "unchanged when not given");

    let out = quickztna(&[
        "org",
        "set-limits",
        "--org",
        "nope",
        "--read-per-min",
        "5",
        "--write-per-min",
        "5",
        "--data-dir",
        &dir,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no organization"));

    let out = quickztna(&["audit-log", "verify", "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_bad_position"], Value::Null);
    assert_eq!(report["verified"], report["head"]);
    assert!(report["head"].as_u64().unwrap() >= 4);
}
