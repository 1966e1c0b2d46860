//! The audit log's retention by plan: expired events leave the index, the log's shared prefix is
//! dropped once every organization's retention and the snapshots cover it, and nothing the API
//! serves as state depends on what was dropped — across a restart, and offline verification
//! still passes from the signed anchor.

use std::process::Command;

use events::event::Plan;
use projections::{Models, Projection};
use reqwest::Method;
use serde_json::{Value, json};

use quickztna::audit::digests::MARK_EVERY;
use quickztna::workers::retention::chain_aligned;

use crate::helpers::{AppOptions, TestApp, json, spawn_app_with};
use crate::machine::{key_secret, register};

const DAY: i64 = 86_400 * 1_000_000;

async fn rename(app: &TestApp, id: &str, hostname: &str) {
    let resp = app
        .request(Method::PATCH, &format!("/api/v1/devices/{id}"))
        .json(&json!({ "hostname": hostname }))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), 200);
}

/// What the API serves as state: the device list, and each device's detail without its
/// history (which retention shortens).
async fn served_state(app: &TestApp, ids: &[&str]) -> Vec<Value> {
    let mut out = vec![json(app.get("/api/v1/devices?limit=200").await).await["items"].clone()];
    for id in ids {
        let mut detail = json(app.get(&format!("/api/v1/devices/{id}")).await).await;
        detail
            .as_object_mut()
            .expect("an object")
            .remove("recent_events");
        out.push(detail);
    }
    out
}

fn history_types(detail: &Value) -> Vec<String> {
    detail["recent_events"]
        .as_array()
        .expect("recent events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `n` events of `org` (its fleet settings, changed back and forth), as test setup.
async fn churn(app: &TestApp, org: &str, n: u64) {
    for i in 0..n {
        quickztna::bootstrap::set_settings(
            &app.state,
            org,
            Some(90 + (i % 2) as u32),
            600,
            events::Actor::console("test setup"),
        )
        .await
        .expect("settings");
    }
}

/// The lowest position any organization still has indexed, less one: how far the prefix may
/// drop (never the head).
fn droppable(app: &TestApp, orgs: &[&str]) -> u64 {
    let head = app.state.log().head();
    let first = orgs
        .iter()
        .filter_map(|o| positions_of(app, o).first().map(|p| p.1))
        .min()
        .unwrap_or(head);
    (first - 1).min(head - 1)
}

fn positions_of(app: &TestApp, org: &str) -> Vec<(u64, u64, i64)> {
    app.state
        .log()
        .read_org(org, 1, u64::MAX, usize::MAX)
        .expect("reads")
        .iter()
        .map(|r| (r.org_seq(), r.position(), r.envelope.recorded_at))
        .collect()
}

#[tokio::test]
async fn expired_events_leave_the_index_and_the_prefix_drops_once_every_org_and_snapshot_covers_it()
{
    use quickztna::workers::retention::audit_once;

    let app = spawn_app_with(AppOptions {
        plan: Plan::Free,
        ..Default::default()
    })
    .await;
    let org = app.org_id.clone();
    // A workforce organization (365 days by default) whose events interleave with acme's.
    let (globex, _) = app.second_org("globex").await;
    churn(&app, &globex, MARK_EVERY + 4).await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let a = register(&app, &key, "old-a").await["device"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = register(&app, &key, "old-b").await["device"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{b}")).await.status(),
        204
    );
    // Past the audit chain's first mark, so that retention has a whole stretch to drop.
    for n in 0..MARK_EVERY {
        rename(&app, &a, &format!("old-a-{n}")).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let split = events::now_micros();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let c = register(&app, &key, "new-c").await["device"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    rename(&app, &a, "renamed-a").await;
    crate::machine::caught_up(&app).await;
    let old: Vec<_> = positions_of(&app, &org)
        .into_iter()
        .filter(|(_, _, at)| *at < split)
        .collect();
    let first_new = positions_of(&app, &org)
        .into_iter()
        .find(|(_, _, at)| *at >= split)
        .expect("new events");

    // Served floor: what a request at `now` may see. The cache's minute of look-ahead hides
    // events in their last minute, never lets an expired one through.
    let now = split + 90 * DAY;
    assert_eq!(
        app.state
            .first_retained_seq(&org, now - 60_000_000)
            .unwrap(),
        first_new.0
    );
    assert_eq!(app.state.first_retained_seq(&org, split).unwrap(), 1);
    assert_eq!(
        app.state.first_retained_seq(&globex, now).unwrap(),
        1,
        "workforce keeps 365 days"
    );
    let ids = [a.as_str(), c.as_str()];
    let before = served_state(&app, &ids).await;

    // At `now` acme's old events expire, globex's do not: the prefix drops only up to globex's
    // first event.
    let pass = audit_once(&app.state, now).await.unwrap();
    // Whole stretches between the chain's marks leave, so the first retained event's chain
    // link can still be computed.
    let keep_from = chain_aligned(first_new.0);
    assert!(keep_from > 1 && keep_from <= first_new.0);
    assert!(old.len() as u64 >= keep_from - 1);
    assert_eq!(pass.purged, keep_from - 1);
    let globex_first = positions_of(&app, &globex)[0].1;
    assert_eq!(pass.dropped_through, globex_first - 1);
    assert_eq!(
        positions_of(&app, &org)
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        (keep_from..=app.state.log().org_head(&org).unwrap()).collect::<Vec<_>>(),
        "only the retained events are indexed"
    );
    // Retained events are still found by their event id (the search starts at the index's
    // first kept entry, not at 1).
    let last = app.state.log().org_head(&org).unwrap();
    for seq in [keep_from, (keep_from + last) / 2, last] {
        let r = app.state.log().org_record(&org, seq).unwrap().unwrap();
        let resp = app
            .get(&format!(
                "/api/v1/audit-log/{}",
                r.envelope.event_id_string()
            ))
            .await;
        assert_eq!(resp.status(), 200, "event {seq} by its event id");
        assert_eq!(json(resp).await["id"], seq);
    }
    let detail = json(app.get(&format!("/api/v1/devices/{a}")).await).await;
    assert!(!history_types(&detail).contains(&"device.registered".to_owned()));

    // A year on, globex's events expire too: the prefix drops up to acme's first retained
    // event (and never the head).
    let pass = audit_once(&app.state, split + 365 * DAY).await.unwrap();
    assert_eq!(
        positions_of(&app, &globex)[0].0,
        chain_aligned(MARK_EVERY + 6),
        "globex keeps its last stretch of the chain"
    );
    assert_eq!(pass.dropped_through, droppable(&app, &[&org, &globex]));
    assert!(pass.dropped_through > globex_first);
    assert_eq!(app.state.log().first_position(), pass.dropped_through + 1);
    assert_eq!(served_state(&app, &ids).await, before);

    // Replay from the earliest retained event + the snapshot equals the live state.
    let dir = quickztna::state::snapshot_dir(app.data_dir());
    let snap = projections::snapshot::read::<Models>(&dir, Models::NAME, Models::VERSION).unwrap();
    assert!(snap.position >= pass.dropped_through);
    let mut replayed = snap.state;
    for r in app
        .state
        .log()
        .read_forward(snap.position + 1, usize::MAX)
        .unwrap()
    {
        replayed.apply(&r);
    }
    assert_eq!(replayed, app.state.models().load().state);

    // A restart serves the same state; writes go on.
    let mut app = app.restart().await;
    assert_eq!(served_state(&app, &ids).await, before);
    assert_eq!(
        app.state.log().first_position(),
        pass.dropped_through + 1,
        "the drop is durable"
    );
    register(&app, &key, "after-the-drop").await;
    app.stop().await;

    // Offline verification passes from the signed anchor.
    let out = Command::new(env!("CARGO_BIN_EXE_quickztna"))
        .args(["audit-log", "verify", "--data-dir"])
        .arg(app.data_dir())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("json");
    // The worker's own pass at start-up may have dropped the old head record since (expired
    // too, and no longer the head).
    let first = report["first_position"].as_u64().expect("first position");
    assert!(first > pass.dropped_through, "{report}");
    assert_eq!(report["anchor"]["position"], json!(first - 1), "{report}");
    assert_eq!(report["first_bad_position"], Value::Null);
}

/// A read model that needs events the log no longer has (no usable snapshot, e.g. after a
/// version bump) stops with a reason on /health instead of rebuilding from a truncated log,
/// and keeps the snapshot that covers the drop.
#[tokio::test]
async fn a_read_model_without_a_snapshot_past_the_dropped_prefix_fail_stops_and_keeps_the_snapshot()
{
    use quickztna::workers::retention::audit_once;

    let mut app = spawn_app_with(AppOptions {
        plan: Plan::Free,
        ..Default::default()
    })
    .await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    register(&app, &key, "old").await;
    churn(&app, &app.org_id, MARK_EVERY).await;
    let later = events::now_micros() + 91 * DAY;
    let pass = audit_once(&app.state, later).await.unwrap();
    assert!(pass.dropped_through > 0);
    app.stop().await;

    // What a new version of the read models finds: a snapshot of another version.
    let path = projections::snapshot::path_for(
        &quickztna::state::snapshot_dir(app.data_dir()),
        Models::NAME,
    );
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&(Models::VERSION ^ 1).to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let state = quickztna::state::AppState::open(quickztna::state::Settings::new(app.data_dir()))
        .await
        .expect("opens");
    let why = state.models().failure().expect("fail-stopped");
    assert!(why.contains("retention") && why.contains("models"), "{why}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quickztna::server::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("http://{address}/api/v1/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["health_status"], "degraded");
    assert!(
        body["reason"].as_str().unwrap().contains("retention"),
        "{body}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the snapshot is never replaced by an empty one"
    );
}

fn quickztna(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quickztna"))
        .args(args)
        .output()
        .expect("run quickztna")
}

/// `org set-retention` is the workforce plan's; `org list` shows what applies to each plan.
#[tokio::test]
async fn set_retention_is_for_workforce_orgs_and_org_list_shows_the_retention_in_force() {
    let mut app = spawn_app_with(AppOptions {
        plan: Plan::Workforce,
        ..Default::default()
    })
    .await;
    quickztna::bootstrap::create_org(
        &app.state,
        "small",
        Plan::Free,
        events::Actor::console("test setup"),
    )
    .await
    .expect("free org");
    app.stop().await;
    let dir = app.data_dir().to_str().unwrap().to_owned();
    let set = |org: &str, days: &str| {
        quickztna(&[
            "org",
            "set-retention",
            "--org",
            org,
            "--days",
            days,
            "--data-dir",
            &dir,
        ])
    };

    let out = set("small", "400");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("free plan") && err.contains("90 days") && err.contains("workforce"),
        "{err}"
    );
    let out = set("acme", "29");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("30 to 3650"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = set("acme", "730");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["audit_retention_days"], 730);

    let out = quickztna(&["org", "list", "--data-dir", &dir]);
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let days = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["audit_retention_days"].clone())
    };
    assert_eq!(days("acme"), Some(json!(730)));
    assert_eq!(days("small"), Some(json!(90)));

    // The served floor follows the choice once the server runs again.
    let state = quickztna::state::AppState::open(quickztna::state::Settings::new(app.data_dir()))
        .await
        .expect("opens");
    let head = state.log().head();
    assert!(
        state
            .models()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
    );
    let org = state
        .models()
        .load()
        .state
        .orgs
        .by_name("acme")
        .unwrap()
        .id
        .clone();
    assert_eq!(state.audit_retention_days(&org), 730);
    state.shutdown().await;
}
