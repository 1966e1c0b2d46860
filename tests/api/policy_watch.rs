//! The policy's tests run again when the fleet changes: a tag that breaks a promise the policy
//! makes shows up as `policy.test_failed` in the audit log, and `policy.test_restored` once the
//! fleet keeps it again.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, spawn_app};
use crate::peers::{eventually, node};
use crate::policy::apply;

const GUARDED: &str = "\
version: 1
tag_owners: { tag:web: [], tag:db: [], tag:quarantine: [] }
rules:
  - { name: web-to-db, action: accept, src: [tag:web], dst: [tag:db], proto: tcp, ports: [5432] }
  - { name: quarantine, action: deny, src: ['*'], dst: [tag:quarantine], ports: ['*'] }
tests:
  - { name: web-reaches-db, src: 'tag:web', accept: ['tag:db:5432'] }
";

async fn test_events(app: &TestApp) -> Vec<Value> {
    let audit = json(
        app.get("/api/v1/audit-log?event_type=policy.*&limit=200")
            .await,
    )
    .await;
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] != "policy.applied")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_tag_that_breaks_a_policy_test_is_reported_and_its_removal_restores_it() {
    let app = spawn_app().await;
    let _web = node(&app, &["tag:web"], "web-1").await;
    let db = node(&app, &["tag:db"], "db-1").await;
    apply(&app, GUARDED).await;
    let tags = format!("/api/v1/devices/{}/tags", db.id);
    let resp = app
        .request(Method::POST, &tags)
        .json(&json!({ "tags": ["tag:quarantine"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually("policy.test_failed", || async {
        !test_events(&app).await.is_empty()
    })
    .await;
    let events = test_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "policy.test_failed");
    assert_eq!(events[0]["data"]["test"], "web-reaches-db");
    assert_eq!(events[0]["data"]["policy_version"], 1);
    assert!(
        events[0]["data"]["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
    assert_eq!(events[0]["actor"]["kind"], "system");

    let resp = app
        .request(Method::DELETE, &format!("{tags}/tag:quarantine"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    eventually("policy.test_restored", || async {
        test_events(&app).await.len() == 2
    })
    .await;
    let events = test_events(&app).await;
    assert_eq!(events[0]["type"], "policy.test_restored", "newest first");

    // The verdicts are remembered across a restart: no duplicate event when it re-checks.
    let app = app.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(test_events(&app).await.len(), 2);
}
