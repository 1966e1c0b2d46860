//! The device agent's API: registration with pre-auth keys, node credentials, heartbeats and
//! the netmap. Also the helpers the key and device tests share.

use events::event::{DeviceRegistered, KeyCreated};
use events::{Actor, AppendRequest, Expected, NewEvent};
use quickztna::mint;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};

/// Creates a pre-auth key with `body` as the owner; returns the created key (with `key`).
pub async fn create_key(app: &TestApp, body: Value) -> Value {
    let resp = app.post("/api/v1/keys", &body).await;
    let status = resp.status();
    let created = json(resp).await;
    assert_eq!(status, 201, "creating a key: {created}");
    created
}

/// The secret of a new key with these settings.
pub async fn key_secret(app: &TestApp, body: Value) -> String {
    create_key(app, body)
        .await
        .get("key")
        .and_then(Value::as_str)
        .expect("key")
        .to_owned()
}

pub fn register_body(key: &str, hostname: &str) -> Value {
    json!({
        "auth_key": key,
        "hostname": hostname,
        "os": "linux",
        "os_version": "6.1.0",
        "public_key": crate::helpers::public_key(),
    })
}

/// `POST /machine/register` without a bearer token.
pub async fn register_raw(app: &TestApp, body: &Value) -> Response {
    app.client
        .post(app.url("/api/v1/machine/register"))
        .json(body)
        .send()
        .await
        .expect("POST /machine/register")
}

/// Registers a device; returns `{device, node_credential}`.
pub async fn register(app: &TestApp, key: &str, hostname: &str) -> Value {
    let resp = register_raw(app, &register_body(key, hostname)).await;
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 201, "registering {hostname}: {body}");
    body
}

pub async fn heartbeat(app: &TestApp, credential: &str, body: &Value) -> Response {
    app.request_as(credential, Method::POST, "/api/v1/machine/heartbeat")
        .json(body)
        .send()
        .await
        .expect("POST /machine/heartbeat")
}

pub async fn netmap(app: &TestApp, credential: &str) -> Response {
    app.request_as(credential, Method::GET, "/api/v1/machine/netmap")
        .send()
        .await
        .expect("GET /machine/netmap")
}

/// Every item of a list, following `next_cursor` (`path_query` like `/api/v1/devices?limit=5`);
/// returns the items and the number of pages.
pub async fn all_pages(app: &TestApp, path_query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = path_query.to_owned();
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = app.get(&url).await;
        let status = resp.status();
        let page = json(resp).await;
        assert_eq!(status, 200, "{url}: {page}");
        pages += 1;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 10_000, "pagination makes progress");
    }
}

/// Waits until the read models include everything in the log (after a direct append).
pub async fn caught_up(app: &TestApp) {
    let head = app.state.log().head();
    assert!(
        app.state
            .models()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
    );
}

/// Live devices of the test organization, from the read model.
pub fn device_count(app: &TestApp) -> usize {
    app.state.models().load().state.devices.count(&app.org_id)
}

/// Appends a `key.created` straight to the log (e.g. one that expired already); returns the
/// key's secret.
pub async fn append_key(app: &TestApp, expires_at: i64, reusable: bool) -> String {
    let s = mint::secret("qzk_");
    let key_id = mint::id("key");
    app.state
        .log()
        .append(AppendRequest {
            org_id: app.org_id.clone(),
            actor: Actor::console("test"),
            request_id: mint::id("req"),
            expectations: vec![(format!("key:{key_id}"), Expected::NoStream)],
            events: vec![NewEvent::new(
                format!("key:{key_id}"),
                KeyCreated {
                    key_id: key_id.clone(),
                    prefix: s.display_prefix.clone(),
                    secret_hash: s.hash,
                    reusable,
                    ephemeral: false,
                    tags: vec![],
                    owner: None,
                    expires_at,
                    description: "appended by a test".into(),
                    max_uses: None,
                },
            )],
            idempotency: None,
        })
        .await
        .expect("append key");
    caught_up(app).await;
    s.value
}

const HOUR: i64 = 3_600_000_000;

#[tokio::test]
async fn a_device_joins_with_a_key_and_inherits_its_tags_owner_and_ephemeral_flag() {
    let app = spawn_app().await;
    let key = key_secret(
        &app,
        json!({ "tags": ["tag:web", "tag:production"], "owner": "alice@example.com", "ephemeral": true }),
    )
    .await;
    let resp = register_raw(&app, &register_body(&key, "Web-01")).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "no-store",
        "the credential must not be cached"
    );
    let body = json(resp).await;
    let device = &body["device"];
    assert!(device["id"].as_str().unwrap().starts_with("dev_"));
    assert_eq!(device["hostname"], "web-01", "hostnames are lower-cased");
    assert_eq!(device["os"], "linux");
    assert_eq!(device["os_version"], "6.1.0");
    assert_eq!(device["tags"], json!(["tag:production", "tag:web"]));
    assert_eq!(device["owner"], "alice@example.com");
    assert_eq!(device["ephemeral"], true);
    assert_eq!(device["addresses"]["ipv4"], "100.64.0.1");
    assert!(
        device["addresses"]["ipv6"]
            .as_str()
            .unwrap()
            .starts_with("fd")
    );
    assert_eq!(
        device["key_expires_at"],
        Value::Null,
        "tagged devices do not expire"
    );
    assert_eq!(device["key_expired"], false);
    assert_eq!(device["last_seen"], Value::Null);
    assert_eq!(device["online"], false);
    assert_eq!(
        device["posture"],
        json!({ "disk_encrypted": null, "firewall": null, "client_version": null })
    );
    let credential = body["node_credential"].as_str().unwrap();
    assert!(credential.starts_with("qzn_"));

    let listed = json(app.get("/api/v1/devices").await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0], *device);
    let key_after = json(app.get("/api/v1/keys?filter=status:used").await).await;
    assert_eq!(key_after["items"][0]["uses"], 1);
}

#[tokio::test]
async fn an_untagged_device_must_reauthenticate_after_180_days() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let device = register(&app, &key, "laptop").await["device"].clone();
    let expires: jiff::Timestamp = device["key_expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires.as_second() - jiff::Timestamp::now().as_second()) / 86_400;
    assert!((179..=180).contains(&days), "{days}");
}

#[tokio::test]
async fn a_single_use_key_admits_one_device_and_then_answers_403() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    register(&app, &key, "first").await;
    let resp = register_raw(&app, &register_body(&key, "second")).await;
    let problem = assert_problem(resp, 403, "permission_denied").await;
    assert_eq!(problem["detail"], "pre-auth key was already used");
    assert_eq!(device_count(&app), 1, "no second device");
}

#[tokio::test]
async fn a_reusable_key_with_max_uses_is_exhausted_after_that_many_devices() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true, "max_uses": 2 })).await;
    register(&app, &key, "a").await;
    register(&app, &key, "b").await;
    let resp = register_raw(&app, &register_body(&key, "c")).await;
    let problem = assert_problem(resp, 403, "permission_denied").await;
    assert_eq!(problem["detail"], "pre-auth key is exhausted");
    assert_eq!(device_count(&app), 2);
    let keys = json(app.get("/api/v1/keys?filter=status:exhausted").await).await;
    assert_eq!(keys["items"][0]["uses"], 2);
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys_answer_401_and_create_nothing() {
    let app = spawn_app().await;
    let resp = register_raw(&app, &register_body("qzk_not-a-key", "a")).await;
    let problem = assert_problem(resp, 401, "unauthenticated").await;
    assert_eq!(problem["detail"], "pre-auth key is invalid");

    let created = create_key(&app, json!({ "reusable": true })).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/keys/{id}")).await.status(),
        204
    );
    let resp = register_raw(&app, &register_body(created["key"].as_str().unwrap(), "b")).await;
    let problem = assert_problem(resp, 401, "unauthenticated").await;
    assert_eq!(problem["detail"], "pre-auth key was revoked");

    let expired = append_key(&app, events::now_micros() - HOUR, true).await;
    let resp = register_raw(&app, &register_body(&expired, "c")).await;
    let problem = assert_problem(resp, 401, "unauthenticated").await;
    assert_eq!(problem["detail"], "pre-auth key has expired");

    assert_eq!(device_count(&app), 0);
}

#[tokio::test]
async fn fifty_concurrent_registrations_get_fifty_distinct_addresses() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let registrations = (0..50).map(|i| {
        let app = &app;
        let key = key.clone();
        async move { register(app, &key, &format!("node-{i}")).await }
    });
    let results = futures::future::join_all(registrations).await;
    let mut v4: Vec<String> = results
        .iter()
        .map(|r| {
            r["device"]["addresses"]["ipv4"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut v6: Vec<String> = results
        .iter()
        .map(|r| {
            r["device"]["addresses"]["ipv6"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    v4.sort();
    v4.dedup();
    v6.sort();
    v6.dedup();
    assert_eq!(v4.len(), 50);
    assert_eq!(v6.len(), 50);
    for a in &v4 {
        let ip: std::net::Ipv4Addr = a.parse().unwrap();
        assert_eq!(ip.octets()[0], 100);
        assert!((64..128).contains(&ip.octets()[1]), "{a} in 100.64.0.0/10");
    }
    assert_eq!(device_count(&app), 50);
    let keys = json(app.get("/api/v1/keys?filter=reusable:true").await).await;
    assert_eq!(keys["items"][0]["uses"], 50);
}

#[tokio::test]
async fn a_heartbeat_updates_last_seen_and_posture_without_writing_events() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "host").await;
    let credential = reg["node_credential"].as_str().unwrap();
    let id = reg["device"]["id"].as_str().unwrap();
    let head = app.state.log().head();
    let resp = heartbeat(
        &app,
        credential,
        &json!({ "os_version": "6.2.0", "client_version": "0.1.0", "posture": { "disk_encrypted": true, "firewall": false } }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["device_id"], id);
    assert_eq!(body["heartbeat_interval_secs"], 30);
    assert!(body["peer_map_version"].as_u64().unwrap() > 0);
    assert!(body["key_expires_at"].is_string());
    assert_eq!(app.state.log().head(), head, "heartbeats are not events");

    let device = json(app.get(&format!("/api/v1/devices/{id}")).await).await;
    assert_eq!(device["online"], true);
    assert!(device["last_seen"].is_string());
    assert_eq!(device["os_version"], "6.2.0");
    assert_eq!(
        device["posture"],
        json!({ "disk_encrypted": true, "firewall": false, "client_version": "0.1.0" })
    );

    // A heartbeat that omits fields keeps what was reported before.
    let resp = heartbeat(&app, credential, &json!({})).await;
    assert_eq!(resp.status(), 200);
    let seen = app.state.heartbeats().get(id).unwrap();
    assert_eq!(seen.disk_encrypted, Some(true));
    assert_eq!(seen.client_version.as_deref(), Some("0.1.0"));
}

#[tokio::test]
async fn heartbeats_survive_a_restart() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "host").await;
    let credential = reg["node_credential"].as_str().unwrap().to_owned();
    let id = reg["device"]["id"].as_str().unwrap().to_owned();
    let resp = heartbeat(&app, &credential, &json!({ "client_version": "9.9.9" })).await;
    assert_eq!(resp.status(), 200);
    let before = app.state.heartbeats().get(&id).unwrap();
    let app = app.restart().await;
    assert_eq!(app.state.heartbeats().get(&id), Some(before));
    let device = json(app.get(&format!("/api/v1/devices/{id}")).await).await;
    assert_eq!(device["posture"]["client_version"], "9.9.9");
}

#[tokio::test]
async fn the_netmap_shows_the_device_and_no_peers_by_default() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let a = register(&app, &key, "a").await;
    register(&app, &key, "b").await;
    let resp = netmap(&app, a["node_credential"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let map = json(resp).await;
    assert_eq!(map["device"]["id"], a["device"]["id"]);
    assert_eq!(map["peers"], json!([]), "default deny");
    assert!(map["peer_map_version"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_removed_devices_credential_must_reauthenticate() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "gone").await;
    let credential = reg["node_credential"].as_str().unwrap();
    let id = reg["device"]["id"].as_str().unwrap();
    assert_eq!(heartbeat(&app, credential, &json!({})).await.status(), 200);
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{id}")).await.status(),
        204
    );
    let problem = assert_problem(
        heartbeat(&app, credential, &json!({})).await,
        401,
        "reauthentication_required",
    )
    .await;
    assert_eq!(
        problem["detail"], "the device was removed",
        "says why, once"
    );
    assert_problem(
        netmap(&app, credential).await,
        401,
        "reauthentication_required",
    )
    .await;
}

#[tokio::test]
async fn an_expired_key_makes_the_credential_ask_for_reauthentication() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "laptop").await;
    let credential = reg["node_credential"].as_str().unwrap();
    let id = reg["device"]["id"].as_str().unwrap();
    let resp = app
        .post(&format!("/api/v1/devices/{id}/expire-key"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["key_expired"], true);
    assert_problem(
        heartbeat(&app, credential, &json!({})).await,
        401,
        "reauthentication_required",
    )
    .await;
}

#[tokio::test]
async fn a_credential_past_its_key_expiry_must_reauthenticate() {
    let app = spawn_app().await;
    let credential = mint::secret("qzn_");
    let device_id = mint::id("dev");
    app.state
        .log()
        .append(AppendRequest {
            org_id: app.org_id.clone(),
            actor: Actor::console("test"),
            request_id: mint::id("req"),
            expectations: vec![],
            events: vec![NewEvent::new(
                format!("device:{device_id}"),
                DeviceRegistered {
                    device_id: device_id.clone(),
                    key_id: "key_none".into(),
                    hostname: "old".into(),
                    os: "linux".into(),
                    os_version: "5.0".into(),
                    public_key: "pk".into(),
                    ipv4: "100.127.0.1".into(),
                    ipv6: "fd00::ffff".into(),
                    tags: vec![],
                    owner: None,
                    ephemeral: false,
                    credential_hash: credential.hash,
                    key_expires_at: Some(events::now_micros() - HOUR),
                },
            )],
            idempotency: None,
        })
        .await
        .unwrap();
    caught_up(&app).await;
    assert_problem(
        heartbeat(&app, &credential.value, &json!({})).await,
        401,
        "reauthentication_required",
    )
    .await;
    let device = json(app.get(&format!("/api/v1/devices/{device_id}")).await).await;
    assert_eq!(device["key_expired"], true);
}

#[tokio::test]
async fn node_credentials_and_api_tokens_each_work_only_where_they_belong() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "host").await;
    let credential = reg["node_credential"].as_str().unwrap();
    // An API token on the machine endpoints.
    assert_problem(
        heartbeat(&app, &app.token, &json!({})).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_problem(netmap(&app, &app.token).await, 401, "unauthenticated").await;
    // No credential at all.
    let resp = app
        .client
        .get(app.url("/api/v1/machine/netmap"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "unauthenticated").await;
    // A node credential on the admin API.
    for path in ["/api/v1/devices", "/api/v1/keys", "/api/v1/tokens"] {
        let resp = app
            .request_as(credential, Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 401, "unauthenticated").await;
    }
    let id = reg["device"]["id"].as_str().unwrap();
    let resp = app
        .request_as(credential, Method::DELETE, &format!("/api/v1/devices/{id}"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "unauthenticated").await;
}

#[tokio::test]
async fn registration_refuses_bad_input_on_every_field_and_creates_nothing() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let good = register_body(&key, "ok");
    let long = |n: usize| "a".repeat(n);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("hostname", json!("web_01"), "hostname"),
        ("hostname", json!("web.example.com"), "hostname"),
        ("hostname", json!(long(64)), "hostname"),
        ("hostname", json!(""), "hostname"),
        ("hostname", json!(7), "hostname"),
        ("os", json!(""), "os"),
        ("os", json!(long(33)), "os"),
        ("os", json!("li\nnux"), "os"),
        ("os_version", json!(long(65)), "os_version"),
        ("public_key", json!(""), "public_key"),
        ("public_key", json!(long(257)), "public_key"),
        ("public_key", json!("pk"), "public_key"),
        ("public_key", json!(long(44)), "public_key"),
        ("auth_key", json!(null), "auth_key"),
        ("extra", json!(1), "extra"),
    ];
    for (field, value, named) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let problem =
            assert_problem(register_raw(&app, &body).await, 400, "invalid_argument").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{field}={value}: {problem}"
        );
    }
    let as_array = json!([key, "host", "linux", "1", "pk"]);
    let problem =
        assert_problem(register_raw(&app, &as_array).await, 400, "invalid_argument").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("object"),
        "{problem}"
    );
    for missing in ["auth_key", "hostname", "os", "os_version", "public_key"] {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(missing);
        let problem =
            assert_problem(register_raw(&app, &body).await, 400, "invalid_argument").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(missing),
            "{problem}"
        );
    }
    assert_eq!(device_count(&app), 0);
    // The same body with a good hostname works.
    assert_eq!(register_raw(&app, &good).await.status(), 201);
}

#[tokio::test]
async fn a_heartbeat_refuses_bad_input() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "host").await;
    let credential = reg["node_credential"].as_str().unwrap();
    for body in [
        json!({ "client_version": "x".repeat(65) }),
        json!({ "os_version": "a\u{7}b" }),
        json!({ "posture": { "disk_encrypted": "yes" } }),
        json!({ "posture": { "antivirus": true } }),
        json!({ "uptime": 5 }),
        json!([]),
        json!([null, null, null]),
    ] {
        assert_problem(
            heartbeat(&app, credential, &body).await,
            400,
            "invalid_argument",
        )
        .await;
    }
}

#[tokio::test]
async fn registrations_count_against_the_keys_organization() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let resp = register_raw(&app, &register_body(&key, "host")).await;
    assert!(resp.headers().contains_key("x-ratelimit-limit"));
    assert_eq!(
        resp.headers()["x-ratelimit-limit"],
        "1200",
        "the organization's registrations budget (workforce), not the anonymous one"
    );
    let resp = register_raw(&app, &register_body("qzk_guess", "host")).await;
    assert_eq!(resp.headers()["x-ratelimit-limit"], "60");
}

#[tokio::test]
async fn a_heartbeat_posture_must_be_an_object_not_an_array() {
    let app = crate::helpers::spawn_app().await;
    let key: serde_json::Value = app
        .post("/api/v1/keys", &serde_json::json!({"reusable": true}))
        .await
        .json()
        .await
        .unwrap();
    let reg: serde_json::Value = app
        .client
        .post(app.url("/api/v1/machine/register"))
        .json(&serde_json::json!({
            "auth_key": key["key"], "hostname": "arr", "os": "linux",
            "os_version": "6.1", "public_key": crate::helpers::public_key()
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = reg["node_credential"].as_str().unwrap();
    let resp = app
        .client
        .post(app.url("/api/v1/machine/heartbeat"))
        .bearer_auth(node)
        .json(&serde_json::json!({"posture": [null, null]}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(resp, 400, "invalid_argument").await;
    let resp = app
        .client
        .post(app.url("/api/v1/machine/heartbeat"))
        .bearer_auth(node)
        .json(&serde_json::json!({"posture": {"firewall": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
