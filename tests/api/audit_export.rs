//! Exporting the audit log and verifying it: `audit-log export|list|verify --export` run as the
//! real binary against a real server, `GET /audit-log/checkpoint` and `GET /audit-log/verify`,
//! tampering (with an export, and with the log on disk) and tenant isolation.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use events::event::OrgLimitsSet;
use events::{Actor, AppendRequest, NewEvent, OrgCheckpoint};
use reqwest::Method;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{TestApp, assert_problem, json, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");
const SINCE: &str = "2000-01-01T00:00:00Z";

/// Appends `n` events (an organization's limits set again) straight into the log, a thousand
/// per request: the fastest way to a long audit log.
pub async fn append_limit_changes(app: &TestApp, n: u64) {
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
fn quickztna(server: &str, token: &str, home: &Path) -> Command {
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

async fn run(server: &str, token: &str, home: &Path, args: &[&str]) -> Output {
    quickztna(server, token, home)
        .args(args)
        .output()
        .await
        .expect("runs quickztna")
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = texts(out);
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Runs `audit-log verify --export FILE` with no server and no data dir (both unset, and the
/// working directory a fresh one).
async fn verify(file: &Path, extra: &[&str]) -> Output {
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
fn lines_of(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("opens the export");
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    reader.lines().map(|l| l.expect("reads a line")).collect()
}

/// The events of an export in either format, and its checkpoint.
fn events_of(path: &Path) -> (Vec<Value>, Value) {
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
async fn walk(app: &TestApp, until: &str) -> Vec<Value> {
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

fn now_rfc3339() -> String {
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
    let home = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();

    for name in ["a.json", "a.jsonl", "a.json.gz", "a.jsonl.gz"] {
        let file = out_dir.path().join(name);
        let file_arg = file.to_str().unwrap();
        let out = run(
            &app.address,
            &app.token,
            home.path(),
            &[
                "audit-log",
                "export",
                "--since",
                SINCE,
                "--until",
                &until,
                "--output",
                file_arg,
            ],
        )
        .await;
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
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("x.jsonl");
    let json_file = dir.path().join("x.json");
    for f in [&jsonl, &json_file] {
        let out = run(
            &app.address,
            &app.token,
            home.path(),
            &[
                "audit-log",
                "export",
                "--since",
                SINCE,
                "--output",
                f.to_str().unwrap(),
            ],
        )
        .await;
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
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.jsonl");
    let out = run(
        &app.address,
        &app.token,
        home.path(),
        &[
            "audit-log",
            "export",
            "--since",
            SINCE,
            "--event-type",
            "token.*",
            "--output",
            file.to_str().unwrap(),
        ],
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

#[tokio::test]
async fn an_export_of_100000_events_equals_the_pages_it_walked() {
    let app = spawn_app().await;
    append_limit_changes(&app, 100_000).await;
    let until = now_rfc3339();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl.gz");
    let out = run(
        &app.address,
        &app.token,
        home.path(),
        &[
            "audit-log",
            "export",
            "--since",
            SINCE,
            "--until",
            &until,
            "--format",
            "jsonl",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_ok(&out, "export");
    let served = walk(&app, &until).await;
    assert!(served.len() > 100_000);
    let lines = lines_of(&file);
    assert_eq!(
        lines.len(),
        served.len() + 1,
        "every event, then the trailer"
    );
    for (line, event) in lines.iter().zip(&served) {
        assert_eq!(&serde_json::from_str::<Value>(line).unwrap(), event);
    }
    assert_ok(&verify(&file, &[]).await, "verify");
}

/// A TCP proxy in front of the server: it can cut the first connection once after `cut_after`
/// bytes towards the client, and follows the server to a new address after a restart.
struct Proxy {
    address: String,
    upstream: Arc<std::sync::Mutex<String>>,
    delivered: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: &str, cut_after: u64) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Arc::new(std::sync::Mutex::new(
            upstream.trim_start_matches("http://").to_owned(),
        ));
        let delivered = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let (up, d) = (upstream.clone(), delivered.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = up.lock().unwrap().clone();
                let (d, cut) = (d.clone(), cut.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return; // the server is restarting: the client sees the connection drop
                    };
                    pipe(client, server, d, cut, cut_after).await;
                });
            }
        });
        Proxy {
            address,
            upstream,
            delivered,
        }
    }

    fn retarget(&self, upstream: &str) {
        *self.upstream.lock().unwrap() = upstream.trim_start_matches("http://").to_owned();
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    delivered: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    cut_after: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let total = delivered.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > cut_after && !cut.swap(true, Ordering::Relaxed) {
            // Half a response, then the connection is gone.
            let _ = cw.write_all(&buf[..n / 2]).await;
            break;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

#[tokio::test]
async fn an_export_resumes_after_a_dropped_connection_and_a_server_restart() {
    let app = spawn_app().await;
    append_limit_changes(&app, 20_000).await;
    let until = now_rfc3339();
    let expected = walk(&app, &until).await;
    let proxy = Proxy::start(&app.address, 300_000).await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resumed.jsonl");
    let mut export = quickztna(&proxy.address, &app.token, home.path())
        .args([
            "audit-log",
            "export",
            "--since",
            SINCE,
            "--until",
            &until,
            "--output",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Past the cut, and a few more pages: restart the server under the export's feet.
    wait_until(|| proxy.delivered.load(Ordering::Relaxed) > 1_500_000).await;
    assert!(export.try_wait().unwrap().is_none(), "restarted mid-export");
    let app = app.restart().await;
    proxy.retarget(&app.address);

    let out = tokio::time::timeout(Duration::from_secs(300), export.wait_with_output())
        .await
        .expect("the export finishes")
        .unwrap();
    assert_ok(&out, "the resumed export");
    let stderr = texts(&out).1;
    assert!(stderr.contains("retrying the same page"), "{stderr}");
    assert!(
        proxy.delivered.load(Ordering::Relaxed) > expected.len() as u64 * 100,
        "the export went through the proxy"
    );
    let (events, _) = events_of(&file);
    assert_eq!(
        events.len(),
        expected.len(),
        "no page lost or written twice"
    );
    assert!(events == expected, "the same events as the pages served");
    assert_ok(&verify(&file, &[]).await, "verify");
    drop(app);
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}

/// Flips one byte of the first stored record that contains `needle`, behind the stopped
/// server's back; returns nothing the server could use to notice.
fn tamper_record(data_dir: &Path, needle: &[u8]) {
    let db = sled::open(data_dir.join("log")).expect("sled opens");
    let tree = db.open_tree("log").expect("the log tree");
    let (key, mut record) = tree
        .iter()
        .map(|kv| kv.expect("reads"))
        .find(|(_, v)| v.windows(needle.len()).any(|w| w == needle))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .expect("a record with the needle");
    let at = record
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    record[at] ^= 0x01; // 't' becomes 'u': still a valid string
    tree.insert(key, record).expect("writes");
    db.flush().expect("flushes");
}

#[tokio::test]
async fn the_verify_route_passes_on_an_honest_log_and_names_an_event_changed_on_disk() {
    let app = spawn_app().await;
    let (_, other_token) = app.second_org("globex").await;
    let tampered = app.create_token(&["read"], "tamper-target").await;
    for n in 0..3 {
        app.create_token(&["read"], &format!("after {n}")).await;
    }
    let tampered_event = json(
        app.get("/api/v1/audit-log?event_type=token.created&limit=50")
            .await,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["token_id"] == tampered["id"])
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let last = json(app.get("/api/v1/audit-log?limit=1").await).await["items"][0]["id"]
        .as_u64()
        .unwrap();

    let report = json(app.get("/api/v1/audit-log/verify").await).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["first_failure"], Value::Null);
    assert_eq!(
        report["events_checked"], last,
        "every event of ours, none of theirs"
    );
    let cp: OrgCheckpoint = serde_json::from_value(report["checkpoint"].clone()).unwrap();
    assert_eq!((cp.org_id.as_str(), cp.id), (app.org_id.as_str(), last));
    assert_eq!(cp.verify(None), Ok(()));

    let mut app = app;
    app.stop().await;
    tamper_record(app.data_dir(), b"tamper-target");
    let app = app.restart().await;

    let report = json(app.get("/api/v1/audit-log/verify").await).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_failure"]["id"], tampered_event, "{report}");
    assert!(
        report["first_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("event {tampered_event} was changed")),
        "{report}"
    );
    // Another organization learns that the log is broken, not where in ours.
    let theirs = json(
        app.request_as(&other_token, Method::GET, "/api/v1/audit-log/verify")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(theirs["ok"], false, "{theirs}");
    assert_eq!(theirs["first_failure"]["id"], Value::Null, "{theirs}");
    assert!(!theirs.to_string().contains(&app.org_id), "{theirs}");
}

#[tokio::test]
async fn the_checkpoint_route_signs_an_events_chain_hash_and_checks_its_input() {
    let app = spawn_app().await;
    app.create_token(&["read"], "one more").await;
    let latest = json(app.get("/api/v1/audit-log?limit=1").await).await["items"][0].clone();
    let cp = json(app.get("/api/v1/audit-log/checkpoint").await).await;
    assert_eq!(cp["id"], latest["id"]);
    assert_eq!(cp["org_id"], app.org_id.as_str());
    let event = json(app.get("/api/v1/audit-log/2").await).await;
    let cp2 = json(app.get("/api/v1/audit-log/checkpoint?id=2").await).await;
    assert_eq!(cp2["hash"], event["chain"]["hash"]);
    let parsed: OrgCheckpoint = serde_json::from_value(cp2.clone()).unwrap();
    assert_eq!(parsed.verify(None), Ok(()));
    assert_eq!(cp2["public_key"], cp["public_key"], "one key signs");

    for bad in ["id=0", "id=x", "id=-1", "other=1"] {
        assert_problem(
            app.get(&format!("/api/v1/audit-log/checkpoint?{bad}"))
                .await,
            400,
            "invalid_argument",
        )
        .await;
    }
    assert_problem(
        app.get("/api/v1/audit-log/checkpoint?id=1000000").await,
        404,
        "not_found",
    )
    .await;
    let devices_only = app.token_with(&["devices:read"]).await;
    for path in ["/api/v1/audit-log/checkpoint", "/api/v1/audit-log/verify"] {
        let resp = app
            .request_as(&devices_only, Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "permission_denied").await;
    }
    let auditor = app.token_with(&["audit:read"]).await;
    let resp = app
        .request_as(&auditor, Method::GET, "/api/v1/audit-log/checkpoint?id=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn another_organizations_token_gets_neither_our_checkpoints_nor_our_counts() {
    let app = spawn_app().await;
    let (other_org, other_token) = app.second_org("globex").await;
    append_limit_changes(&app, 50).await;
    let ours = json(app.get("/api/v1/audit-log/checkpoint").await).await;
    let our_last = ours["id"].as_u64().unwrap();

    let get = |path: String| app.request_as(&other_token, Method::GET, &path).send();
    // Our latest id is past theirs: no checkpoint of it for them.
    let resp = get(format!("/api/v1/audit-log/checkpoint?id={our_last}"))
        .await
        .unwrap();
    let problem = assert_problem(resp, 404, "not_found").await;
    assert!(!problem.to_string().contains(&app.org_id));
    let theirs = json(get("/api/v1/audit-log/checkpoint".into()).await.unwrap()).await;
    assert_eq!(theirs["org_id"], other_org.as_str());
    assert!(theirs["id"].as_u64().unwrap() < our_last);
    assert_ne!(theirs["hash"], ours["hash"]);

    let report = json(get("/api/v1/audit-log/verify".into()).await.unwrap()).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["events_checked"], theirs["id"],
        "their own count only"
    );
    assert!(!report.to_string().contains(&app.org_id), "{report}");

    // Their export holds their events only, and verifies.
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("theirs.jsonl");
    let out = run(
        &app.address,
        &other_token,
        home.path(),
        &[
            "audit-log",
            "export",
            "--since",
            SINCE,
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_ok(&out, "their export");
    let (events, _) = events_of(&file);
    assert!(events.iter().all(|e| e["org_id"] == other_org.as_str()));
    assert_ok(&verify(&file, &[]).await, "their export verifies");
}
