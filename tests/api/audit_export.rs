//! Exporting the audit log and verifying it offline: `audit-log export|list|verify --export`
//! run as the real binary against a real server, every format, and every kind of tampering with
//! an export. The helpers here serve `audit_export_scale` and `audit_verify` too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use events::event::OrgLimitsSet;
use events::{Actor, AppendRequest, NewEvent};
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{TestApp, json, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");
pub(crate) const SINCE: &str = "2000-01-01T00:00:00Z";

/// Appends `n` events (an organization's limits set again) straight into the log, a thousand
/// per request: the fastest way to a long audit log.
pub(crate) async fn append_limit_changes(app: &TestApp, n: u64) {
    let mut done = 0;
    while done < n {
        let k = (n - done).min(1000);
        let events = (0..k)
            .map(|_| {
                NewEvent::new(
                    format!("org:{}", app.org_id),
                    OrgLimitsSet {
                        org_id: app.org_id.clone(),
                        read_per_min: 1_000_000,
                        write_per_min: 1_000_000,
                        register_per_min: None,
                    },
                )
            })
            .collect();
        app.state
            .log()
            .append(AppendRequest {
                org_id: app.org_id.clone(),
                actor: Actor::console("bulk"),
                request_id: format!("bulk-{done}"),
                expectations: vec![],
                events,
                idempotency: None,
            })
            .await
            .expect("append");
        done += k;
    }
    let head = app.state.log().head();
    assert!(
        app.state
            .models()
            .wait_for(head, Duration::from_secs(300))
            .await
    );
}

/// The binary, pointed at `server` with `token`, in a private home.
pub(crate) fn quickztna(server: &str, token: &str, home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("QUICKZTNA_SERVER", server)
        .env("QUICKZTNA_TOKEN", token)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("QUICKZTNA_LOG")
        .env_remove("RUST_LOG")
        .env_remove("QUICKZTNA_DATA_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `quickztna audit-log export --since SINCE <extra> --output FILE` as `token`, from a fresh
/// home (no saved login).
pub(crate) async fn export(server: &str, token: &str, file: &Path, extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut args = vec!["audit-log", "export", "--since", SINCE];
    args.extend_from_slice(extra);
    args.extend(["--output", file.to_str().unwrap()]);
    run(server, token, home.path(), &args).await
}

pub(crate) async fn run(server: &str, token: &str, home: &Path, args: &[&str]) -> Output {
    quickztna(server, token, home)
        .args(args)
        .output()
        .await
        .expect("runs quickztna")
}

pub(crate) fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn assert_ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = texts(out);
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Runs `audit-log verify --export FILE` with no server and no data dir (both unset, and the
/// working directory a fresh one).
pub(crate) async fn verify(file: &Path, extra: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["audit-log", "verify", "--export"])
        .arg(file)
        .args(extra)
        .current_dir(cwd.path())
        .env_remove("QUICKZTNA_SERVER")
        .env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_DATA_DIR")
        .env("HOME", cwd.path())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs verify");
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "verify --export created nothing (no data dir)"
    );
    out
}

/// Asserts that verification fails and that its message names `needle`.
async fn assert_caught(file: &Path, needle: &str, what: &str) {
    let out = verify(file, &[]).await;
    let (stdout, stderr) = texts(&out);
    assert!(
        !out.status.success(),
        "{what} passed verification:\n{stdout}"
    );
    assert!(
        stderr.contains(needle),
        "{what}: expected {needle:?} in: {stderr}\n{stdout}"
    );
}

/// The export's lines, decompressed when it ends in `.gz` (with `MultiGzDecoder`, as readers of
/// appended gzip must).
pub(crate) fn lines_of(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("opens the export");
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    reader.lines().map(|l| l.expect("reads a line")).collect()
}

/// The events of an export in either format, and its checkpoint.
pub(crate) fn events_of(path: &Path) -> (Vec<Value>, Value) {
    let lines = lines_of(path);
    let name = path.to_string_lossy();
    if name.contains(".jsonl") {
        let (last, events) = lines.split_last().expect("a trailer");
        let trailer: Value = serde_json::from_str(last).unwrap();
        let events = events
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (events, trailer["checkpoint"].clone())
    } else {
        let whole: Value = serde_json::from_str(&lines.join("\n")).unwrap();
        (
            whole["items"].as_array().unwrap().clone(),
            whole["checkpoint"].clone(),
        )
    }
}

/// Every event the audit log serves oldest first with chain links, page by page.
pub(crate) async fn walk(app: &TestApp, until: &str) -> Vec<Value> {
    let query = format!(
        "sort=time:asc&limit=200&chain=true&since={SINCE}&until={}",
        enc(until)
    );
    app.list_all(&app.token, "/api/v1/audit-log", &query)
        .await
        .0
}

fn enc(v: &str) -> String {
    v.replace(':', "%3A").replace('+', "%2B")
}

pub(crate) fn now_rfc3339() -> String {
    // A moment after the last event: the log's clock never goes back.
    std::thread::sleep(Duration::from_millis(5));
    events::format_time(events::now_micros())
}

async fn checkpoint_key(app: &TestApp) -> String {
    let cp = json(app.get("/api/v1/audit-log/checkpoint").await).await;
    cp["public_key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_export_in_every_format_verifies_offline_and_holds_exactly_the_audit_logs_events() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.create_token(&["read"], &format!("export me {n}")).await;
    }
    append_limit_changes(&app, 450).await;
    let until = now_rfc3339();
    let served = walk(&app, &until).await;
    assert!(served.len() > 450);
    let key = checkpoint_key(&app).await;
    let out_dir = tempfile::tempdir().unwrap();

    for name in ["a.json", "a.jsonl", "a.json.gz", "a.jsonl.gz"] {
        let file = out_dir.path().join(name);
        let out = export(&app.address, &app.token, &file, &["--until", &until]).await;
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{name}: {stderr}");
        // Not a terminal: no progress bar, nothing on stdout.
        assert!(
            stdout.is_empty() && stderr.is_empty(),
            "{name}: {stdout}{stderr}"
        );
        let (events, checkpoint) = events_of(&file);
        assert_eq!(events, served, "{name} holds exactly the pages served");
        let last = served.last().unwrap();
        assert_eq!(checkpoint["id"], last["id"], "{name}");
        assert_eq!(checkpoint["hash"], last["chain"]["hash"], "{name}");
        assert_eq!(checkpoint["public_key"], key.as_str());

        let report = assert_ok(&verify(&file, &[]).await, name);
        assert!(report.contains("OK"), "{report}");
        assert!(report.contains("compare the key"), "{report}");
        let report = assert_ok(&verify(&file, &["--public-key", &key]).await, name);
        assert!(!report.contains("compare the key"), "{report}");
        // Another key: the signature is not the server's.
        let out = verify(&file, &["--public-key", &"ab".repeat(32)]).await;
        assert!(!out.status.success(), "{name} verified against another key");
        assert!(texts(&out).1.contains("not by the expected key"));
    }
    // The temporary files are gone; the outputs are the owner's alone.
    let mut names: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.json", "a.json.gz", "a.jsonl", "a.jsonl.gz"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.path().join("a.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

/// Writes `lines` to `path` (plain jsonl).
fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn every_change_to_an_export_fails_verification_naming_the_event() {
    let app = spawn_app().await;
    append_limit_changes(&app, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("x.jsonl");
    let json_file = dir.path().join("x.json");
    for f in [&jsonl, &json_file] {
        let out = export(&app.address, &app.token, f, &[]).await;
        assert_ok(&out, "export");
    }
    let lines = lines_of(&jsonl);
    let n = lines.len() - 1; // events; the last line is the trailer
    let id_at = |i: usize| -> u64 {
        serde_json::from_str::<Value>(&lines[i]).unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let k = 20;
    let tampered = dir.path().join("t.jsonl");

    // A field of one event changed.
    let mut changed = lines.clone();
    let mut event: Value = serde_json::from_str(&changed[k]).unwrap();
    event["data"]["write_per_min"] = 7.into();
    changed[k] = event.to_string();
    write_lines(&tampered, &changed);
    assert_caught(
        &tampered,
        &format!("event {} was altered", id_at(k)),
        "a changed field",
    )
    .await;

    // The actor changed, and the event's own hash recomputed to match: the next link breaks.
    let mut forged = lines.clone();
    let mut event: Value = serde_json::from_str(&forged[k]).unwrap();
    event["actor"]["display"] = "someone else".into();
    let view: quickztna::http::event_view::EventView =
        serde_json::from_value(event.clone()).unwrap();
    let previous =
        quickztna::audit::chain::parse_hash(event["chain"]["previous"].as_str().unwrap()).unwrap();
    event["chain"]["hash"] = hex::encode(quickztna::audit::chain::next(&previous, &view)).into();
    forged[k] = event.to_string();
    write_lines(&tampered, &forged);
    assert_caught(
        &tampered,
        &format!(
            "event {}'s previous hash is not event {}'s",
            id_at(k + 1),
            id_at(k)
        ),
        "a recomputed hash",
    )
    .await;

    // A field added that the chain does not cover.
    let mut added = lines.clone();
    let mut event: Value = serde_json::from_str(&added[k]).unwrap();
    event["note"] = "harmless".into();
    added[k] = event.to_string();
    write_lines(&tampered, &added);
    assert_caught(
        &tampered,
        &format!("event {} has fields", id_at(k)),
        "an added field",
    )
    .await;

    // A line deleted.
    let mut deleted = lines.clone();
    deleted.remove(k);
    write_lines(&tampered, &deleted);
    assert_caught(
        &tampered,
        &format!("event {} is missing", id_at(k)),
        "a deleted line",
    )
    .await;

    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(k, k + 1);
    write_lines(&tampered, &swapped);
    assert_caught(
        &tampered,
        &format!("event {} follows event {}", id_at(k + 1), id_at(k - 1)),
        "swapped lines",
    )
    .await;

    // The end cut off: events and the checkpoint, or just the last events.
    write_lines(&tampered, &lines[..n - 3]);
    assert_caught(
        &tampered,
        &format!("ends at event {} without its checkpoint", id_at(n - 4)),
        "a cut-off end",
    )
    .await;
    let mut cut = lines[..n - 3].to_vec();
    cut.push(lines[n].clone());
    write_lines(&tampered, &cut);
    assert_caught(
        &tampered,
        &format!("the checkpoint is of event {}", id_at(n - 1)),
        "events cut before the checkpoint",
    )
    .await;

    // The checkpoint's hash changed to match a recomputed chain: the signature fails.
    let mut resigned = lines.clone();
    let mut trailer: Value = serde_json::from_str(&resigned[n]).unwrap();
    trailer["checkpoint"]["time"] = "2030-01-01T00:00:00Z".into();
    resigned[n] = trailer.to_string();
    write_lines(&tampered, &resigned);
    assert_caught(
        &tampered,
        "signature does not verify",
        "a changed checkpoint",
    )
    .await;

    // The json format: a changed event, and a file cut in the middle.
    let text = std::fs::read_to_string(&json_file).unwrap();
    let changed = text.replacen("\"write_per_min\":1000000", "\"write_per_min\":1000001", 1);
    assert_ne!(changed, text);
    let tampered_json = dir.path().join("t.json");
    std::fs::write(&tampered_json, changed).unwrap();
    assert_caught(&tampered_json, "was altered", "a changed json event").await;
    std::fs::write(&tampered_json, &text[..text.len() / 2]).unwrap();
    assert_caught(&tampered_json, "after event", "a cut json file").await;

    // The unchanged files still pass.
    assert_ok(&verify(&jsonl, &[]).await, "the original jsonl");
    assert_ok(&verify(&json_file, &[]).await, "the original json");
}

#[tokio::test]
async fn an_export_filtered_by_type_has_no_chain_and_says_it_cannot_be_verified() {
    let app = spawn_app().await;
    app.create_token(&["read"], "typed").await;
    append_limit_changes(&app, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.jsonl");
    let out = export(
        &app.address,
        &app.token,
        &file,
        &["--event-type", "token.*"],
    )
    .await;
    assert_ok(&out, "export");
    assert!(texts(&out).1.contains("cannot be verified"));
    let (events, checkpoint) = events_of(&file);
    assert_eq!(events.len(), 2, "the owner token and one more");
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "token.created" && e.get("chain").is_none())
    );
    assert!(checkpoint.is_null());
    assert_caught(&file, "cannot be verified", "a typed export").await;
}

#[tokio::test]
async fn audit_log_list_prints_the_filtered_events_newest_first() {
    let app = spawn_app().await;
    for n in 0..4 {
        app.create_token(&["read"], &format!("listed {n}")).await;
    }
    append_limit_changes(&app, 3).await;
    let home = tempfile::tempdir().unwrap();
    let out = run(
        &app.address,
        &app.token,
        home.path(),
        &[
            "audit-log",
            "list",
            "--event-type",
            "token.created",
            "--limit",
            "3",
            "--json",
        ],
    )
    .await;
    let listed: Value = serde_json::from_str(&assert_ok(&out, "list")).unwrap();
    let page = json(
        app.get("/api/v1/audit-log?event_type=token.created&limit=3")
            .await,
    )
    .await;
    assert_eq!(listed, page["items"]);
    assert_eq!(listed[0]["data"]["description"], "listed 3");

    let owner = app.token_id_of(&app.token);
    let out = run(
        &app.address,
        &app.token,
        home.path(),
        &[
            "audit-log",
            "list",
            "--actor",
            &owner,
            "--since",
            SINCE,
            "--limit",
            "500",
        ],
    )
    .await;
    let listed: Value = serde_json::from_str(&assert_ok(&out, "list")).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        4,
        "the four tokens the owner made"
    );
}
