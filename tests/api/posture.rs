//! Posture: requirements, dry runs, transitions recorded from heartbeats (only on change), and
//! `block` taking a device out of every peer map until it complies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::machine::heartbeat;
use crate::peers::{eventually, node, peers};
use crate::policy::apply;

const EVERYONE: &str =
    "version: 1\nrules:\n  - { name: all, action: accept, src: ['*'], dst: ['*'], ports: ['*'] }\n";

async fn put_config(app: &TestApp, query: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .request(Method::PUT, &format!("/api/v1/posture/config{query}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

async fn audit_types(app: &TestApp, prefix: &str) -> Vec<String> {
    let audit = json(app.get("/api/v1/audit-log?limit=200").await).await;
    let mut types: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| t.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    types.reverse();
    types
}

#[tokio::test]
async fn a_blocked_device_leaves_every_peer_map_until_it_complies() {
    let app = spawn_app().await;
    let laptop = node(&app, &["tag:laptop"], "laptop").await;
    let server = node(&app, &["tag:server"], "server").await;
    for n in [&laptop, &server] {
        let hb = heartbeat(&app, &n.credential, &json!({"client_version": "1.5.0", "posture": {"disk_encrypted": true, "firewall": true}})).await;
        assert_eq!(hb.status(), 200);
    }
    apply(&app, EVERYONE).await;
    assert_eq!(peers(&app, &laptop).await.len(), 1);

    let require = json!({"min_os_version": {"linux": "6.1"}, "disk_encrypted": true, "min_client_version": "1.4.0", "action": "block"});
    // The laptop's encryption goes away.
    heartbeat(
        &app,
        &laptop.credential,
        &json!({"posture": {"disk_encrypted": false}}),
    )
    .await;
    let mut dry = (0, Value::Null);
    for _ in 0..200 {
        dry = put_config(&app, "?dry_run=true", &require).await;
        if dry.1["violating"].as_array().is_some_and(|v| v.len() == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, dry) = dry;
    assert_eq!(status, 200);
    assert_eq!(dry["violating"][0]["device_id"], laptop.id.as_str());
    assert_eq!(dry["violating"][0]["failing"], json!(["disk_encrypted"]));
    assert_eq!(dry["applied"], false);
    let cfg = json(app.get("/api/v1/posture/config").await).await;
    assert_eq!(cfg["updated_at"], Value::Null, "a dry run sets nothing");

    let (status, set) = put_config(&app, "", &require).await;
    assert_eq!(
        (status, set["applied"].clone()),
        (200, json!(true)),
        "{set}"
    );
    assert!(peers(&app, &laptop).await.is_empty(), "blocked: no peers");
    assert!(peers(&app, &server).await.is_empty(), "and nobody sees it");
    let standing = json(
        app.get(&format!("/api/v1/devices/{}/posture", laptop.id))
            .await,
    )
    .await;
    assert_eq!(standing["compliant"], false);
    assert_eq!(standing["blocked"], true);
    let disk = standing["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "disk_encrypted")
        .unwrap()
        .clone();
    assert_eq!(
        (
            disk["required"].clone(),
            disk["reported"].clone(),
            disk["pass"].clone()
        ),
        (json!(true), json!(false), json!(false))
    );
    assert!(disk["since"].is_string());
    let detail = json(app.get(&format!("/api/v1/devices/{}", laptop.id)).await).await;
    assert_eq!(
        detail["compliance"],
        json!({"compliant": false, "blocked": true, "failing": ["disk_encrypted"]})
    );

    // Heartbeats with the same signals record nothing new.
    for _ in 0..3 {
        heartbeat(
            &app,
            &laptop.credential,
            &json!({"posture": {"disk_encrypted": false}}),
        )
        .await;
    }
    heartbeat(
        &app,
        &laptop.credential,
        &json!({"posture": {"disk_encrypted": true}}),
    )
    .await;
    eventually("the laptop is restored", || async {
        peers(&app, &laptop).await.len() == 1
    })
    .await;
    // Transitions only: the same signals again recorded nothing (reports made before the
    // worker's step may be recorded as one).
    let types = audit_types(&app, "posture.").await;
    let configured = types
        .iter()
        .position(|t| t == "posture.configured")
        .unwrap();
    assert!(
        types[..configured].iter().all(|t| t == "posture.reported"),
        "{types:?}"
    );
    assert_eq!(
        types[configured..],
        [
            "posture.configured",
            "posture.violation",
            "posture.reported",
            "posture.restored"
        ]
    );
    let standing = json(
        app.get(&format!("/api/v1/devices/{}/posture", laptop.id))
            .await,
    )
    .await;
    assert_eq!(
        (standing["compliant"].clone(), standing["blocked"].clone()),
        (json!(true), json!(false))
    );
}

#[tokio::test]
async fn bad_posture_requirements_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, needle) in [
        (json!({"action": "shrug"}), "action"),
        (
            json!({"min_os_version": {"linux": "six"}}),
            "min_os_version",
        ),
        (
            json!({"min_os_version": {"Linux!": "6.1"}}),
            "min_os_version",
        ),
        (
            json!({"min_client_version": "latest"}),
            "min_client_version",
        ),
    ] {
        let (status, problem) = put_config(&app, "", &body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem}"
        );
    }
    let resp = app
        .request(Method::PUT, "/api/v1/posture/config")
        .json(&json!({"disk_encryption": true}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "invalid_argument").await;
    assert_eq!(
        json(app.get("/api/v1/posture/config").await).await["updated_at"],
        Value::Null
    );
}
