//! Health, version and the OpenAPI document.

use serde_json::json;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn health_reports_the_log_and_the_read_models_without_a_token() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-ratelimit-limit"));
    let body = json(resp).await;
    assert_eq!(body["status"], "ok");
    // Exactly these fields: no log head or position, which would let anyone watch every
    // tenant's write volume.
    assert_eq!(body["log"], json!({ "writable": true, "failure": null }));
    assert_eq!(
        body["projections"],
        json!({ "caught_up": true, "failed": false, "failure": null })
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_at_both_addresses_and_lists_every_route() {
    let app = spawn_app().await;
    let a = json(
        app.client
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let b = json(
        app.client
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a, b);
    assert!(a["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/tokens",
        "/tokens/{id}",
        "/health",
        "/version",
        "/openapi.json",
    ] {
        assert!(a["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(a["components"]["securitySchemes"]["bearer"].is_object());
    assert!(a["components"]["schemas"]["ProblemBody"].is_object());
}
