//! Fail-stop through the real server: after a panic in the read models, `/health` says why and
//! every write answers 503 at once, instead of after its read-your-writes timeout.

use std::time::Duration;

use quickztna::state::Settings;
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, json, spawn_app_with};

/// A read-your-writes wait far longer than [`PROMPTLY`]: only an answer that does not wait it
/// out arrives in time.
fn patient(settings: &mut Settings) {
    settings.read_your_writes_timeout = Duration::from_secs(60);
}

const PROMPTLY: Duration = Duration::from_secs(30);

async fn create_token(app: &TestApp, description: &str) -> reqwest::Response {
    let body = json!({ "scopes": ["read"], "description": description, "expires_in": "2h" });
    tokio::time::timeout(PROMPTLY, app.post("/api/v1/tokens", &body))
        .await
        .expect("answered without waiting out the read-your-writes timeout")
}

#[tokio::test]
async fn after_a_projection_panics_health_says_why_and_writes_answer_503_at_once() {
    let app = spawn_app_with(AppOptions {
        settings: Some(patient),
        ..AppOptions::default()
    })
    .await;
    app.state
        .models()
        .inject_panic_at(app.state.log().head() + 1);

    // The write whose event cannot be folded is durable, but cannot be read back.
    let resp = create_token(&app, "the one that breaks it").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem = json(resp).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("recorded"),
        "{problem}"
    );

    let resp = app
        .client
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let health = json(resp).await;
    assert_eq!(health["health_status"], "degraded", "{health}");
    let reason = health["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("panicked applying an event of type"),
        "{reason}"
    );
    assert!(
        !reason.contains("position"),
        "no global position on /health: {reason}"
    );
    assert!(reason.contains("injected by a test"), "{reason}");
    assert_eq!(health["detail"], health["reason"]);
    assert_eq!(health["projections"]["failed"], true);
    assert!(
        health["projections"]["failure"]
            .as_str()
            .unwrap()
            .contains("injected by a test")
    );
    assert_eq!(health["log"], json!({ "writable": true, "failure": null }));

    // Later writes are refused before anything reaches the log.
    let head = app.state.log().head();
    let resp = create_token(&app, "after the failure").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
    let problem = json(resp).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains("recorded"),
        "{problem}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was appended");

    // Reads still answer, from the last state that was fully applied.
    assert_eq!(app.get("/api/v1/tokens").await.status(), 200);
}

#[tokio::test]
async fn after_the_peer_maps_panic_health_says_so_and_writes_stop() {
    let app = spawn_app_with(AppOptions::default()).await;
    app.state
        .peers()
        .inject_panic_at(app.state.log().head() + 1);
    let resp = create_token(&app, "the one the peer maps choke on").await;
    assert_eq!(resp.status(), 201, "the write itself is durable and folded");
    let mut health = json!(null);
    for _ in 0..200 {
        let resp = app
            .client
            .get(app.url("/api/v1/health"))
            .send()
            .await
            .unwrap();
        health = json(resp).await;
        if health["health_status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health["health_status"], "degraded", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("peer maps"),
        "{health}"
    );
    let resp = create_token(&app, "after the failure").await;
    assert_eq!(resp.status(), 503);
}
