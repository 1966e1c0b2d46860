//! `quickztna events tail`, the real binary against the real server: it prints each event as
//! one JSON line, picks up after a server restart without gap or duplicate, filters, and stops
//! cleanly on SIGINT.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::events_stream::{HANG_GUARD, org_head, range, write};
use crate::helpers::{TestApp, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

/// `quickztna events tail ARGS` against `app`, with a private home directory.
fn tail(
    app: &TestApp,
    home: &tempfile::TempDir,
    args: &[&str],
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(BIN)
        .args(["events", "tail"])
        .args(args)
        .env("QUICKZTNA_SERVER", &app.address)
        .env("QUICKZTNA_TOKEN", &app.token)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn events tail");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

/// The ids of printed events, until the one with id `last`.
async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        let line = tokio::time::timeout(HANG_GUARD, lines.next_line())
            .await
            .expect("a line within the hang guard")
            .expect("read stdout")
            .expect("tail keeps running");
        let event: Value = serde_json::from_str(&line).expect("one JSON event a line");
        let id = event["id"].as_u64().expect("id");
        ids.push(id);
        if id >= last {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_events_and_picks_up_after_a_restart_without_gap_or_duplicate() {
    let app = spawn_app().await;
    write(&app, 3).await;
    let home = tempfile::tempdir().expect("temp home");
    let (mut child, mut lines) = tail(&app, &home, &["--since-id", "0"]);
    let head = org_head(&app, &app.org_id);
    let mut seen = read_until(&mut lines, head).await;
    let app = app.restart_on_same_port(None).await;
    write(&app, 4).await;
    let after = org_head(&app, &app.org_id);
    seen.extend(read_until(&mut lines, after).await);
    assert_eq!(seen, range(1, after));

    // SIGINT stops it cleanly.
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(killed.expect("kill").success());
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("tail stops")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_filters_by_type_and_starts_with_new_events_by_default() {
    let app = spawn_app().await;
    let home = tempfile::tempdir().expect("temp home");
    let (_child, mut lines) = tail(&app, &home, &["--event-type", "token.*"]);
    // Give it time to connect: without --since-id it prints only what comes after.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = org_head(&app, &app.org_id);
    write(&app, 2).await;
    let line = tokio::time::timeout(HANG_GUARD, lines.next_line())
        .await
        .expect("a line")
        .expect("read")
        .expect("a line");
    let event: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(event["type"], "token.created");
    assert!(event["id"].as_u64().unwrap() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_ends_with_the_servers_problem_on_a_bad_filter() {
    let app = spawn_app().await;
    let home = tempfile::tempdir().expect("temp home");
    let (child, _lines) = tail(&app, &home, &["--event-type", "nope"]);
    let out = tokio::time::timeout(HANG_GUARD, child.wait_with_output())
        .await
        .expect("tail ends")
        .expect("wait");
    assert!(!out.status.success());
}
