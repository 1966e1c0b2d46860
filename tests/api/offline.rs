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

    // The devices' budget alone: the API limits stay (lifted to a million by the test setup).
    let out = quickztna(&[
        "org",
        "set-limits",
        "--org",
        "acme",
        "--register-per-min",
        "5000",
        "--data-dir",
        &dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["register_per_min"], 5000);
    assert_eq!(v["write_per_min"], 1_000_000, "unchanged when not given");
    let out = quickztna(&["org", "list", "--data-dir", &dir]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["register_per_min"], 5000, "{list}");
    let out = quickztna(&["org", "set-limits", "--org", "acme", "--data-dir", &dir]);
    assert!(!out.status.success(), "at least one limit is needed");

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

/// Every file under `dir` with its bytes.
fn files_of(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn audit_log_verify_checks_a_live_data_dir_and_writes_nothing_into_a_stopped_one() {
    let mut app = spawn_app().await;
    let dir = app.data_dir().to_str().unwrap().to_owned();
    app.create_token(&["read"], "verify me").await;

    // While the server holds the data dir: the check needs no lock.
    let out = quickztna(&["audit-log", "verify", "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopped: shutdown publishes a signed checkpoint, and the check leaves every byte as it was.
    app.stop().await;
    let before = files_of(app.data_dir());
    let out = quickztna(&["audit-log", "verify", "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_bad_position"], Value::Null);
    assert_eq!(report["checkpoint"]["position"], report["head"], "{report}");
    assert_eq!(
        files_of(app.data_dir()),
        before,
        "verify wrote into the data dir"
    );

    // Without the chain key it fails clearly, and creates none.
    std::fs::remove_file(app.data_dir().join("chain.key")).unwrap();
    let out = quickztna(&["audit-log", "verify", "--data-dir", &dir]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chain.key"), "{stderr}");
    assert!(!app.data_dir().join("chain.key").exists());

    // And the server refuses to start on that data dir rather than start a new chain.
    let out = Command::new(env!("CARGO_BIN_EXE_quickztna"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir])
        .output()
        .expect("runs");
    assert!(
        !out.status.success(),
        "the server must not start without its chain key"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chain.key") && stderr.contains("Restore"),
        "{stderr}"
    );
    assert!(!app.data_dir().join("chain.key").exists());
}
