//! Peer maps: what agents get from `/machine/netmap` and what `GET /devices/{id}` shows,
//! following the policy, tags and posture, each device with its own version.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, spawn_app};
use crate::machine::{heartbeat, key_secret, netmap, register};
use crate::policy::{WEB_TO_DB, apply};

pub struct Node {
    pub id: String,
    pub credential: String,
}

pub async fn node(app: &TestApp, tags: &[&str], hostname: &str) -> Node {
    let key = key_secret(app, json!({ "tags": tags })).await;
    let r = register(app, &key, hostname).await;
    Node {
        id: r["device"]["id"].as_str().unwrap().to_owned(),
        credential: r["node_credential"].as_str().unwrap().to_owned(),
    }
}

pub async fn map_of(app: &TestApp, n: &Node) -> Value {
    let resp = netmap(app, &n.credential).await;
    assert_eq!(resp.status(), 200);
    json(resp).await
}

/// The peers of `n` as `(id, ports, inbound)`, sorted.
pub async fn peers(app: &TestApp, n: &Node) -> Vec<(String, Vec<String>, bool)> {
    let map = map_of(app, n).await;
    map["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ports = p["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    format!(
                        "{}/{}",
                        x["proto"].as_str().unwrap(),
                        x["ports"].as_str().unwrap()
                    )
                })
                .collect();
            (
                p["id"].as_str().unwrap().to_owned(),
                ports,
                p["inbound"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Polls `f` until it returns true (the posture worker runs in the background).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn agents_get_the_peers_the_policy_allows_and_versions_move_only_for_those_affected() {
    let app = spawn_app().await;
    let web = node(&app, &["tag:web"], "web-1").await;
    let db = node(&app, &["tag:db"], "db-1").await;
    let other = node(&app, &["tag:other"], "other-1").await;
    assert!(peers(&app, &web).await.is_empty(), "default deny");

    apply(&app, WEB_TO_DB).await;
    assert_eq!(
        peers(&app, &web).await,
        vec![(db.id.clone(), vec!["tcp/5432".into()], false)]
    );
    assert_eq!(peers(&app, &db).await, vec![(web.id.clone(), vec![], true)]);
    assert!(peers(&app, &other).await.is_empty());
    let detail = json(app.get(&format!("/api/v1/devices/{}", web.id)).await).await;
    assert_eq!(detail["peers"][0]["id"], db.id.as_str());
    assert_eq!(
        detail["peers"][0]["ports"],
        json!([{"proto": "tcp", "ports": "5432"}])
    );

    let version = |n: &Node| {
        let app = &app;
        let cred = n.credential.clone();
        async move {
            let hb = heartbeat(app, &cred, &json!({})).await;
            json(hb).await["peer_map_version"].as_u64().unwrap()
        }
    };
    let (web_v, db_v, other_v) = (
        version(&web).await,
        version(&db).await,
        version(&other).await,
    );
    assert_eq!(map_of(&app, &web).await["peer_map_version"], web_v);

    // Tagging `other` as web gives it the database, and the database a new inbound peer;
    // `web` itself is not affected, so its version stays.
    let resp = app
        .request(Method::POST, &format!("/api/v1/devices/{}/tags", other.id))
        .json(&json!({ "tags": ["tag:web"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        peers(&app, &other).await,
        vec![(db.id.clone(), vec!["tcp/5432".into()], false)]
    );
    let mut inbound = peers(&app, &db).await;
    inbound.sort();
    let mut expected = vec![
        (web.id.clone(), vec![], true),
        (other.id.clone(), vec![], true),
    ];
    expected.sort();
    assert_eq!(inbound, expected);
    assert_eq!(version(&web).await, web_v, "web's peers did not change");
    assert!(version(&db).await > db_v);
    assert!(version(&other).await > other_v);

    // Removing the database device empties web's map.
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{}", db.id))
            .await
            .status(),
        204
    );
    assert!(peers(&app, &web).await.is_empty());
    assert!(version(&web).await > web_v);
}

#[tokio::test]
async fn peer_maps_are_rebuilt_the_same_after_a_restart() {
    let app = spawn_app().await;
    let web = node(&app, &["tag:web"], "web-1").await;
    let db = node(&app, &["tag:db"], "db-1").await;
    apply(&app, WEB_TO_DB).await;
    let before = (peers(&app, &web).await, peers(&app, &db).await);
    let app = app.restart().await;
    let after = (peers(&app, &web).await, peers(&app, &db).await);
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_device_whose_key_ran_out_leaves_its_peers_maps_when_the_sweeper_records_it() {
    let app = spawn_app().await;
    let server = node(&app, &["tag:server"], "server").await;
    let key = key_secret(&app, json!({ "owner": "alice@example.com" })).await;
    let laptop = register(&app, &key, "laptop").await;
    let laptop_id = laptop["device"]["id"].as_str().unwrap().to_owned();
    assert!(
        laptop["device"]["key_expires_at"].is_string(),
        "a person's device expires"
    );
    apply(
        &app,
        "version: 1\nrules:\n  - { name: all, action: accept, src: ['*'], dst: ['*'], ports: ['*'] }\n",
    )
    .await;
    assert_eq!(peers(&app, &server).await.len(), 1);
    let later = events::now_micros() + 400 * 86_400 * 1_000_000;
    let expired = quickztna::workers::key_expiry::expire_once(&app.state, later)
        .await
        .unwrap();
    assert_eq!(expired, vec![laptop_id.clone()]);
    assert!(peers(&app, &server).await.is_empty());
    let audit = json(
        app.get("/api/v1/audit-log?event_type=device.key_expired")
            .await,
    )
    .await;
    assert_eq!(audit["items"][0]["subject"]["id"], laptop_id.as_str());
    assert_eq!(audit["items"][0]["actor"]["kind"], "system");
    // Once recorded, never again.
    let again = quickztna::workers::key_expiry::expire_once(&app.state, later)
        .await
        .unwrap();
    assert!(again.is_empty());
}
