//! `/webhooks`: configuration, secrets shown once and kept out of the log, plans, scopes,
//! tenancy and the refusal of destinations the server must not reach (SSRF).

use std::time::Duration;

use events::event::Plan;
use quickztna::state::Settings;
use quickztna::webhooks::schedule::Schedule;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, assert_problem, json, spawn_app, spawn_app_with};
use crate::webhook_receiver::Receiver;

/// Receivers on this host are allowed, and retries come quickly.
pub fn local_receivers(s: &mut Settings) {
    s.webhooks.allow = vec!["127.0.0.0/8".parse().unwrap()];
    s.webhooks.schedule = Schedule::parse("0,100ms,200ms,300ms/2s").unwrap();
    s.webhooks.timeout = Duration::from_secs(2);
}

pub async fn spawn_hooks() -> TestApp {
    spawn_app_with(AppOptions {
        settings: Some(local_receivers),
        ..AppOptions::default()
    })
    .await
}

/// Creates a webhook to `url`; answers the created view (with its secret).
pub async fn create(app: &TestApp, url: &str, types: &[&str]) -> Value {
    let resp = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": url, "event_types": types, "description": "test receiver"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    json(resp).await
}

#[tokio::test]
async fn a_webhook_shows_its_secret_once_and_never_again_nor_in_the_log() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let created = create(&app, &rx.url(), &["key.*", "token.created"]).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert!(quickztna::webhooks::sign::Secret::parse(&secret).is_ok());
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("wh_"));
    // Kept in a normal form: exact types, then prefixes.
    assert_eq!(created["event_types"], json!(["token.created", "key.*"]));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["status"], "active");

    let one = json(app.get(&format!("/api/v1/webhooks/{id}")).await).await;
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["url"], rx.url());
    let list = json(app.get("/api/v1/webhooks").await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));

    // Nowhere in the audit log, nor in any file of the data dir, in any form.
    let audit = app
        .get("/api/v1/audit-log?limit=200")
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("webhook.created") && !audit.contains(&secret));
    let b64 = secret.trim_start_matches("whsec_");
    for entry in walk(app.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(b64), "{} holds the secret", entry.display());
    }
    let key = app.data_dir().join("webhooks/secrets.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_webhook_is_changed_disabled_and_removed_and_each_change_is_audited() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let id = create(&app, &rx.url(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/webhooks/{id}");
    let resp = app
        .request(Method::PATCH, &path)
        .json(&json!({"event_types": ["device.*"], "enabled": false, "description": "SIEM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let changed = json(resp).await;
    assert_eq!(changed["event_types"], json!(["device.*"]));
    assert_eq!(
        (changed["enabled"].clone(), changed["status"].clone()),
        (json!(false), json!("disabled"))
    );
    let unknown = app
        .request(Method::PATCH, &path)
        .json(&json!({"colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 400, "invalid_argument").await;
    let bad_type = app
        .request(Method::PATCH, &path)
        .json(&json!({"event_types": ["devise.*"]}))
        .send()
        .await
        .unwrap();
    assert_problem(bad_type, 400, "invalid_argument").await;
    assert_eq!(app.delete(&path).await.status(), 204);
    assert_problem(app.get(&path).await, 404, "not_found").await;
    assert_problem(app.delete(&path).await, 404, "not_found").await;
    let audit = json(
        app.get("/api/v1/audit-log?event_type=webhook.*&limit=50")
            .await,
    )
    .await;
    let types: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| t.starts_with("webhook.")).count(),
        3,
        "{types:?}"
    );
    assert!(types.contains(&"webhook.removed"));
}

#[tokio::test]
async fn destinations_the_server_must_not_reach_are_refused() {
    // No allowed networks: loopback too is refused.
    let app = spawn_app().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "http://user:pass@127.0.0.1/",
        "not a url",
    ] {
        let resp = app.post("/api/v1/webhooks", &json!({"url": url})).await;
        let status = resp.status().as_u16();
        let body = json(resp).await;
        assert!(status == 422 || status == 400, "{url}: {status} {body}");
        assert!(!body.to_string().contains("pass@"), "{body}");
    }
    assert!(
        json(app.get("/api/v1/webhooks").await).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Allowing 127.0.0.0/8 does not open the metadata address.
    let app = spawn_hooks().await;
    let resp = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": "http://169.254.169.254/"}),
        )
        .await;
    let problem = assert_problem(resp, 422, "unprocessable_entity").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("metadata"),
        "{problem}"
    );
}

#[tokio::test]
async fn webhooks_need_a_business_plan_and_the_webhooks_scopes() {
    let app = spawn_app_with(AppOptions {
        plan: Plan::Free,
        settings: Some(local_receivers),
        ..AppOptions::default()
    })
    .await;
    let resp = app
        .post("/api/v1/webhooks", &json!({"url": "http://127.0.0.1:9/"}))
        .await;
    assert_problem(resp, 403, "plan_required").await;
    assert_problem(app.get("/api/v1/webhooks").await, 403, "plan_required").await;

    let app = spawn_hooks().await;
    let reader = app.token_with(&["webhooks:read"]).await;
    let resp = app
        .request_as(&reader, Method::POST, "/api/v1/webhooks")
        .json(&json!({"url": "http://127.0.0.1:9/"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let resp = app
        .request_as(&reader, Method::GET, "/api/v1/webhooks")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let devices = app.token_with(&["devices:write"]).await;
    let resp = app
        .request_as(&devices, Method::GET, "/api/v1/webhooks")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
}

#[tokio::test]
async fn another_organizations_webhooks_are_not_found() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let id = create(&app, &rx.url(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = app.second_org("globex").await;
    for (method, path) in [
        (Method::GET, format!("/api/v1/webhooks/{id}")),
        (Method::DELETE, format!("/api/v1/webhooks/{id}")),
        (Method::GET, format!("/api/v1/webhooks/{id}/deliveries")),
        (Method::POST, format!("/api/v1/webhooks/{id}/test")),
        (Method::POST, format!("/api/v1/webhooks/{id}/rotate-secret")),
        (
            Method::POST,
            format!("/api/v1/webhooks/{id}/replay?since_id=1"),
        ),
    ] {
        let resp = app.request_as(&other, method, &path).send().await.unwrap();
        assert_problem(resp, 404, "not_found").await;
    }
    let list = app
        .request_as(&other, Method::GET, "/api/v1/webhooks")
        .send()
        .await
        .unwrap();
    assert!(json(list).await["items"].as_array().unwrap().is_empty());
}
