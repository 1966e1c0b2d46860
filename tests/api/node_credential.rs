//! `POST /machine/rotate`: a device exchanges its node credential; the old one stops working
//! at once, and the secret is never recorded or documented.

use events::Event;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::machine::{heartbeat, key_secret, netmap, register};

async fn rotate(app: &TestApp, credential: &str) -> Response {
    app.request_as(credential, Method::POST, "/api/v1/machine/rotate")
        .send()
        .await
        .expect("POST /machine/rotate")
}

/// A registered device: (its id, its node credential).
async fn device(app: &TestApp) -> (String, String) {
    let key = key_secret(app, json!({ "reusable": true })).await;
    let joined = register(app, &key, "web-1").await;
    (
        joined["device"]["id"].as_str().unwrap().to_owned(),
        joined["node_credential"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_rotated_credential_replaces_the_old_one_at_once() {
    let app = spawn_app().await;
    let (id, old) = device(&app).await;
    let resp = rotate(&app, &old).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "no-store",
        "a secret is never cached"
    );
    let body = json(resp).await;
    assert_eq!(body["device_id"], id.as_str());
    let new = body["node_credential"].as_str().unwrap().to_owned();
    assert!(new.starts_with("qzn_") && new != old, "{new}");

    let resp = heartbeat(&app, &old, &json!({})).await;
    assert_problem(resp, 401, "unauthenticated").await;
    let resp = rotate(&app, &old).await;
    assert_problem(resp, 401, "unauthenticated").await;
    assert_eq!(heartbeat(&app, &new, &json!({})).await.status(), 200);
    let map = json(netmap(&app, &new).await).await;
    assert_eq!(map["device"]["id"], id.as_str(), "the same device");

    // And again, from the new one.
    let newer = json(rotate(&app, &new).await).await["node_credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(heartbeat(&app, &new, &json!({})).await.status(), 401);
    assert_eq!(heartbeat(&app, &newer, &json!({})).await.status(), 200);
}

#[tokio::test]
async fn neither_the_event_nor_the_openapi_document_holds_the_secret() {
    let app = spawn_app().await;
    let (id, old) = device(&app).await;
    let new = json(rotate(&app, &old).await).await["node_credential"]
        .as_str()
        .unwrap()
        .to_owned();

    let log = app.state.log();
    let last = log.read_backward(log.head(), 1).unwrap().remove(0);
    match &last.event {
        Event::DeviceCredentialRotated(e) => assert_eq!(e.device_id, id),
        other => panic!("the last event is {other:?}"),
    }
    assert_eq!(last.envelope.actor.id, id, "the device did it");
    assert_eq!(last.event.data_json(), json!({ "device_id": id }));

    let records = log.read_raw(1, 100_000).unwrap();
    let doc = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec: Value = serde_json::from_str(&doc).unwrap();
    assert!(spec["paths"]["/machine/rotate"]["post"].is_object());
    for secret in [&old, &new] {
        let random = &secret["qzn_".len()..];
        for needle in [secret.as_str(), random] {
            assert!(!doc.contains(needle), "the OpenAPI document");
            for (position, bytes) in &records {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "a credential in the record at position {position}"
                );
            }
        }
    }
    assert!(
        !doc.contains("credential_hash"),
        "not even hashes are shown"
    );
}

#[tokio::test]
async fn a_removed_device_cannot_rotate_its_way_back() {
    let app = spawn_app().await;
    let (id, credential) = device(&app).await;
    let resp = app.delete(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(resp.status(), 204);
    let head = app.state.log().head();
    let resp = rotate(&app, &credential).await;
    assert_problem(resp, 401, "reauthentication_required").await;
    assert_eq!(app.state.log().head(), head, "nothing was written");
    // API tokens do not work there either.
    let resp = rotate(&app, &app.token).await;
    assert_problem(resp, 401, "unauthenticated").await;
}

/// Sends SIGTERM, as an init system stops the agent.
fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn rotations(app: &TestApp, device_id: &str) -> usize {
    let log = app.state.log();
    log.read_forward(1, 100_000)
        .unwrap()
        .iter()
        .filter(
            |r| matches!(&r.event, Event::DeviceCredentialRotated(e) if e.device_id == device_id),
        )
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rotates_its_credential_and_keeps_the_new_one() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let home = tempfile::tempdir().unwrap();
    let state_file = home.path().join("agent.json");
    let agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_quickztna"))
        .args(["up", "--interval", "1s", "--rotate-credential-every", "1s"])
        .env("QUICKZTNA_SERVER", &app.address)
        .env("QUICKZTNA_AUTH_KEY", &key)
        .env("QUICKZTNA_STATE_FILE", &state_file)
        .env("HOME", home.path())
        .env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_ROTATE_CREDENTIAL_EVERY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn quickztna up");

    let saved = || -> Value {
        std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (device_id, first) = loop {
        let s = saved();
        if let (Some(d), Some(c)) = (s["device_id"].as_str(), s["node_credential"].as_str()) {
            break (d.to_owned(), c.to_owned());
        }
        assert!(std::time::Instant::now() < deadline, "the agent registers");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    while rotations(&app, &device_id) < 2 {
        assert!(std::time::Instant::now() < deadline, "the agent rotates");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sigterm(&agent);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), agent.wait_with_output())
        .await
        .expect("the agent stops")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Rotated the node credential"), "{stderr}");

    // What the agent saved is the credential the server knows now; the first one is dead.
    let last = saved()["node_credential"].as_str().unwrap().to_owned();
    assert_ne!(last, first);
    assert_eq!(heartbeat(&app, &last, &json!({})).await.status(), 200);
    assert_eq!(heartbeat(&app, &first, &json!({})).await.status(), 401);
    assert_eq!(
        app.state.models().load().state.devices.count(&app.org_id),
        1,
        "rotating is not registering again"
    );
}
