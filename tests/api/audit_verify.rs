//! `GET /audit-log/verify` and `GET /audit-log/checkpoint` through the real server: an honest
//! log verifies, a record changed on disk is named by its organization id, checkpoints sign the
//! served chain hashes, and another organization sees none of ours.

use std::path::Path;

use events::OrgCheckpoint;
use reqwest::Method;
use serde_json::Value;

use crate::audit_export::{append_limit_changes, assert_ok, events_of, export, verify};
use crate::helpers::{assert_problem, json, spawn_app};

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

    for bad in ["id=0", "id=x", "id=-1", "id=", "other=1"] {
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("theirs.jsonl");
    let out = export(&app.address, &other_token, &file, &[]).await;
    assert_ok(&out, "their export");
    let (events, _) = events_of(&file);
    assert!(events.iter().all(|e| e["org_id"] == other_org.as_str()));
    assert_ok(&verify(&file, &[]).await, "their export verifies");
}

#[tokio::test]
async fn after_retention_drops_old_events_the_log_and_an_export_still_verify() {
    use quickztna::audit::digests::MARK_EVERY;
    use quickztna::workers::retention::audit_once;
    const DAY: i64 = 86_400 * 1_000_000;

    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        plan: events::event::Plan::Free,
        ..Default::default()
    })
    .await;
    append_limit_changes(&app, 2 * MARK_EVERY + 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let split = events::now_micros();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    append_limit_changes(&app, 30).await;
    let last = json(app.get("/api/v1/audit-log/checkpoint").await).await["id"]
        .as_u64()
        .unwrap();

    // 90 days on, the free plan's old events expire and leave the index.
    let pass = audit_once(&app.state, split + 90 * DAY).await.unwrap();
    assert!(pass.purged > 0, "{pass:?}");

    let report = json(app.get("/api/v1/audit-log/verify").await).await;
    assert_eq!(report["ok"], true, "{report}");
    let checked = report["events_checked"].as_u64().unwrap();
    assert!(checked > 0 && checked < last, "{report}");
    assert_eq!(report["checkpoint"]["id"], last);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retained.jsonl.gz");
    let out = export(&app.address, &app.token, &file, &[]).await;
    assert_ok(&out, "export");
    let (events, _) = events_of(&file);
    assert!(
        events[0]["id"].as_u64().unwrap() > 1,
        "the expired events are not exported"
    );
    assert_eq!(events.last().unwrap()["id"], last);
    assert_ok(&verify(&file, &[]).await, "the retained window verifies");
}
