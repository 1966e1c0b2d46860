//! `/devices`: listing with filters and cursors, inspecting, renaming, tagging, reassigning,
//! force-expiring, removing; and the sweeper.

use std::collections::HashSet;

use events::Actor;
use futures::StreamExt;
use quickztna::heartbeats::Report;
use quickztna::{bootstrap, sweeper};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::machine::{
    all_pages, caught_up, device_count, heartbeat, key_secret, register, register_raw,
};

const DAY: i64 = 86_400_000_000;

/// Registers a device running `os`; returns its view.
async fn join(app: &TestApp, key: &str, hostname: &str, os: &str) -> Value {
    let resp = register_raw(
        app,
        &json!({ "auth_key": key, "hostname": hostname, "os": os, "os_version": "1", "public_key": crate::helpers::public_key() }),
    )
    .await;
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 201, "{body}");
    body["device"].clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Hostnames of the devices a filter selects, sorted.
async fn hostnames(app: &TestApp, query: &str) -> Vec<String> {
    let resp = app.get(&format!("/api/v1/devices?{query}")).await;
    let status = resp.status();
    let page = json(resp).await;
    assert_eq!(status, 200, "{query}: {page}");
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// web-1 (linux, production, alice), web-2 (windows, production, alice), stage-1 (linux,
/// staging), ci-1 (macos, ephemeral).
async fn fleet(app: &TestApp) -> Vec<Value> {
    let prod = key_secret(
        app,
        json!({ "reusable": true, "tags": ["tag:production"], "owner": "alice@example.com" }),
    )
    .await;
    let staging = key_secret(app, json!({ "tags": ["tag:staging"] })).await;
    let ci = key_secret(app, json!({ "ephemeral": true })).await;
    vec![
        join(app, &prod, "web-1", "linux").await,
        join(app, &prod, "web-2", "windows").await,
        join(app, &staging, "stage-1", "linux").await,
        join(app, &ci, "ci-1", "macos").await,
    ]
}

#[tokio::test]
async fn filters_combine_with_and_and_or_whether_plus_is_literal_or_encoded() {
    let app = spawn_app().await;
    fleet(&app).await;
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("", names(&["ci-1", "stage-1", "web-1", "web-2"])),
        ("filter=tag:production", names(&["web-1", "web-2"])),
        ("filter=tag:tag:production", names(&["web-1", "web-2"])),
        ("filter=tag:production+os:linux", names(&["web-1"])),
        ("filter=tag:production%2Bos:linux", names(&["web-1"])),
        ("filter=tag:production%20os:linux", names(&["web-1"])),
        (
            "filter=tag:production,tag:staging",
            names(&["stage-1", "web-1", "web-2"]),
        ),
        (
            "filter=tag:production,staging",
            names(&["stage-1", "web-1", "web-2"]),
        ),
        (
            "filter=tag:production,tag:staging+os:linux",
            names(&["stage-1", "web-1"]),
        ),
        ("filter=os:macos", names(&["ci-1"])),
        (
            "filter=os:linux,windows",
            names(&["stage-1", "web-1", "web-2"]),
        ),
        ("filter=owner:alice@example.com", names(&["web-1", "web-2"])),
        ("filter=hostname:web-1", names(&["web-1"])),
        ("filter=hostname:web-*", names(&["web-1", "web-2"])),
        ("filter=ephemeral:true", names(&["ci-1"])),
        ("filter=tag:nothing", names(&[])),
    ];
    for (query, expected) in cases {
        assert_eq!(hostnames(&app, query).await, expected, "{query}");
    }
    let sorted = json(app.get("/api/v1/devices?sort=hostname:desc").await).await;
    let order: Vec<&str> = sorted["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["web-2", "web-1", "stage-1", "ci-1"]);
}

#[tokio::test]
async fn last_seen_filters_use_heartbeats_or_the_registration_time() {
    let app = spawn_app().await;
    let devices = fleet(&app).await;
    let now = events::now_micros();
    // web-1 was last seen 100 days ago; web-2 just now; the others never (they count as seen
    // when they registered, i.e. now).
    app.state.heartbeats().record(
        &app.org_id,
        &id(&devices[0]),
        now - 100 * DAY,
        Report::default(),
    );
    app.state
        .heartbeats()
        .record(&app.org_id, &id(&devices[1]), now, Report::default());
    let cutoff = events::format_time(now - 90 * DAY);
    assert_eq!(
        hostnames(&app, &format!("filter=last_seen_before:{cutoff}")).await,
        names(&["web-1"])
    );
    assert_eq!(
        hostnames(&app, &format!("filter=last_seen_after:{cutoff}")).await,
        names(&["ci-1", "stage-1", "web-2"])
    );
    assert_eq!(
        hostnames(
            &app,
            &format!("filter=last_seen_before:{cutoff}+tag:staging")
        )
        .await,
        names(&[])
    );
    let sorted = json(app.get("/api/v1/devices?sort=last_seen").await).await;
    assert_eq!(sorted["items"][0]["hostname"], "web-1");
    let old = json(
        app.get(&format!("/api/v1/devices/{}", id(&devices[0])))
            .await,
    )
    .await;
    assert_eq!(old["online"], false);
    assert!(
        old["last_seen"]
            .as_str()
            .unwrap()
            .starts_with(&events::format_time(now - 100 * DAY)[..10])
    );
}

#[tokio::test]
async fn bad_filters_sorts_and_cursors_are_400() {
    let app = spawn_app().await;
    fleet(&app).await;
    for bad in [
        "filter=last_seen_before:yesterday",
        "filter=last_seen_after:2026-13-01T00:00:00Z",
        "filter=ephemeral:maybe",
        "filter=tag:Bad_Tag",
        "filter=color:blue",
        "filter=os:",
        "sort=uptime",
        "sort=hostname:sideways",
        "limit=201",
        "cursor=garbage",
    ] {
        assert_problem(
            app.get(&format!("/api/v1/devices?{bad}")).await,
            400,
            "invalid_argument",
        )
        .await;
    }
    let page = json(app.get("/api/v1/devices?limit=1").await).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let resp = app
        .get(&format!(
            "/api/v1/devices?limit=1&filter=os:linux&cursor={cursor}"
        ))
        .await;
    assert_problem(resp, 400, "invalid_argument").await;
}

#[tokio::test]
async fn a_thousand_devices_page_by_200_each_exactly_once() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let registered: Vec<String> = futures::stream::iter(0..1000)
        .map(|i| {
            let app = &app;
            let key = key.clone();
            async move { id(&register(app, &key, &format!("node-{i:04}")).await["device"]) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let expected: HashSet<String> = registered.into_iter().collect();
    assert_eq!(expected.len(), 1000);
    for query in [
        "/api/v1/devices?limit=200",
        "/api/v1/devices?limit=200&sort=created_at:desc",
        "/api/v1/devices?limit=200&sort=hostname",
        "/api/v1/devices?limit=200&sort=last_seen:desc&filter=os:linux",
    ] {
        let (items, pages) = all_pages(&app, query).await;
        assert_eq!(pages, 5, "{query}");
        let seen: Vec<String> = items.iter().map(id).collect();
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(seen.len(), 1000, "{query}: each exactly once");
        assert_eq!(unique, expected, "{query}");
    }
    let (items, _) = all_pages(&app, "/api/v1/devices?limit=200&sort=hostname").await;
    let hostnames: Vec<&str> = items
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    let mut sorted = hostnames.clone();
    sorted.sort();
    assert_eq!(hostnames, sorted);
}

#[tokio::test]
async fn a_device_shows_its_peers_posture_and_recent_events_newest_first() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "tags": ["tag:web"] })).await;
    let device = join(&app, &key, "web-1", "linux").await;
    let did = id(&device);
    let resp = app
        .post(
            &format!("/api/v1/devices/{did}/tags"),
            &json!({ "tags": ["tag:production"] }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let detail = json(app.get(&format!("/api/v1/devices/{did}")).await).await;
    assert_eq!(detail["hostname"], "web-1");
    assert_eq!(detail["tags"], json!(["tag:production", "tag:web"]));
    assert_eq!(detail["peers"], json!([]));
    let events = detail["recent_events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["device.tagged", "device.registered"]);
    assert_eq!(events[0]["actor"]["kind"], "token");
    assert_eq!(events[0]["data"]["tags"], json!(["tag:production"]));
    assert_eq!(events[1]["actor"]["kind"], "device");
    assert!(events[0]["id"].as_u64().unwrap() > events[1]["id"].as_u64().unwrap());
    assert!(events[1]["data"].get("credential_hash").is_none());
    assert!(events[0]["event_id"].is_string() && events[0]["time"].is_string());
    // The one event view: subject, request id, the actor's display name, the org's own id.
    assert_eq!(events[0]["subject"], json!({ "kind": "device", "id": did }));
    assert_eq!(events[1]["actor"]["display"], "web-1");
    assert!(events[0]["request_id"].is_string());
    assert!(events[0]["org_id"].is_string());
}

#[tokio::test]
async fn event_ids_are_the_organizations_own_sequence_not_a_shared_position() {
    let app = spawn_app().await;
    // Another organization writes a lot first: our ids must not move because of it.
    let (_, other_token) = app.second_org("noisy").await;
    for i in 0..30 {
        let resp = app
            .request_as(&other_token, Method::POST, "/api/v1/keys")
            .json(&json!({ "description": format!("noise {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let key = key_secret(&app, json!({})).await;
    let did = id(&join(&app, &key, "seq-1", "linux").await);
    let detail = json(app.get(&format!("/api/v1/devices/{did}")).await).await;
    let registered = detail["recent_events"][0]["id"].as_u64().unwrap();
    // Our org's events: org.created, the owner token, the key, key.used + device.registered
    // — a handful, where a shared position would be past the other org's 30 writes.
    assert!(
        (1..=10).contains(&registered),
        "the id counts only this org's events, got {registered}"
    );
}

#[tokio::test]
async fn patch_renames_retags_and_reassigns_with_one_event_per_change() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "tags": ["tag:a", "tag:b"] })).await;
    let did = id(&join(&app, &key, "old-name", "linux").await);
    let path = format!("/api/v1/devices/{did}");
    let patch = |body: Value| app.request(Method::PATCH, &path).json(&body).send();
    let resp = patch(
        json!({ "hostname": "new-name", "tags": ["tag:b", "tag:c"], "owner": "bob@example.com" }),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let view = json(resp).await;
    assert_eq!(view["hostname"], "new-name");
    assert_eq!(view["tags"], json!(["tag:b", "tag:c"]));
    assert_eq!(view["owner"], "bob@example.com");
    let detail = json(app.get(&path).await).await;
    let types: Vec<&str> = detail["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "device.owner_changed",
            "device.untagged",
            "device.tagged",
            "device.updated",
            "device.registered"
        ]
    );
    assert_eq!(detail["recent_events"][0]["data"]["from"], Value::Null);
    assert_eq!(detail["recent_events"][0]["data"]["to"], "bob@example.com");
    // The same PATCH again changes nothing and records nothing.
    let head = app.state.log().head();
    let resp = patch(json!({ "hostname": "new-name", "tags": ["tag:c", "tag:b"] }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.state.log().head(), head);
    // null clears the owner; an empty body is a no-op.
    let view = json(patch(json!({ "owner": null })).await.unwrap()).await;
    assert_eq!(view["owner"], Value::Null);
    assert_eq!(patch(json!({})).await.unwrap().status(), 200);
}

#[tokio::test]
async fn patch_refuses_bad_hostnames_tags_and_owners_naming_the_field() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let did = id(&join(&app, &key, "host", "linux").await);
    let path = format!("/api/v1/devices/{did}");
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "hostname": "Web-01" }), "hostname"),
        (json!({ "hostname": "a".repeat(64) }), "hostname"),
        (json!({ "hostname": "web_01" }), "hostname"),
        (json!({ "hostname": "" }), "hostname"),
        (json!({ "hostname": 5 }), "hostname"),
        (json!({ "tags": ["production"] }), "tags"),
        (json!({ "tags": "tag:a" }), "tags"),
        (json!({ "owner": "" }), "owner"),
        (json!({ "owner": "x".repeat(255) }), "owner"),
        (json!({ "os": "linux" }), "os"),
        (json!([]), "object"),
    ];
    for (body, named) in cases {
        let resp = app
            .request(Method::PATCH, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{body}: {problem}"
        );
    }
    let view = json(app.get(&path).await).await;
    assert_eq!(view["hostname"], "host", "nothing changed");
}

#[tokio::test]
async fn changing_the_owner_needs_users_write_too() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let did = id(&join(&app, &key, "host", "linux").await);
    let path = format!("/api/v1/devices/{did}");
    let devices_only = app.token_with(&["devices:write"]).await;
    let both = app.token_with(&["devices:write", "users:write"]).await;
    let resp = app
        .request_as(&devices_only, Method::PATCH, &path)
        .json(&json!({ "owner": "carol@example.com" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let resp = app
        .request_as(&devices_only, Method::PATCH, &path)
        .json(&json!({ "hostname": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .request_as(&both, Method::PATCH, &path)
        .json(&json!({ "owner": "carol@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reader = app.token_with(&["devices:read"]).await;
    let resp = app
        .request_as(&reader, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["owner"], "carol@example.com");
    for (method, p) in [
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/expire-key")),
    ] {
        let resp = app
            .request_as(&reader, method, &p)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "permission_denied").await;
    }
    let keys_only = app.token_with(&["keys:read"]).await;
    let resp = app
        .request_as(&keys_only, Method::GET, "/api/v1/devices")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
}

#[tokio::test]
async fn deleting_a_device_is_idempotent_and_unknown_ids_are_404() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let keep = id(&join(&app, &key, "keep", "linux").await);
    let gone = id(&join(&app, &key, "gone", "linux").await);
    let path = format!("/api/v1/devices/{gone}");
    assert_eq!(app.delete(&path).await.status(), 204);
    let head = app.state.log().head();
    assert_eq!(app.delete(&path).await.status(), 204, "repeat");
    assert_eq!(
        app.state.log().head(),
        head,
        "nothing recorded by the repeat"
    );
    assert_problem(app.get(&path).await, 404, "not_found").await;
    for (method, p, body) in [
        (Method::PATCH, path.clone(), json!({ "hostname": "x" })),
        (
            Method::POST,
            format!("{path}/tags"),
            json!({ "tags": ["tag:a"] }),
        ),
        (Method::POST, format!("{path}/expire-key"), json!({})),
    ] {
        let resp = app.request(method, &p).json(&body).send().await.unwrap();
        assert_problem(resp, 404, "not_found").await;
    }
    let listed = json(app.get("/api/v1/devices").await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], keep.as_str());
    assert_problem(
        app.delete("/api/v1/devices/dev_never").await,
        404,
        "not_found",
    )
    .await;
    let removed = app
        .state
        .log()
        .read_stream(&format!("device:{gone}"), 0, 10)
        .unwrap();
    let last = removed.last().unwrap();
    assert_eq!(last.envelope.event_type, "device.removed");
    assert_eq!(last.event.data_json()["reason"], "api");
}

#[tokio::test]
async fn tags_are_added_and_removed_idempotently() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "tags": ["tag:web"] })).await;
    let did = id(&join(&app, &key, "host", "linux").await);
    let tags = format!("/api/v1/devices/{did}/tags");
    let resp = app
        .post(
            &tags,
            &json!({ "tags": ["tag:production", "tag:web", "tag:production"] }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["tags"],
        json!(["tag:production", "tag:web"])
    );
    let head = app.state.log().head();
    let resp = app.post(&tags, &json!({ "tags": ["tag:web"] })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.state.log().head(), head, "nothing new, no event");
    // The colon may be sent as is or percent-encoded; the prefix may be left out.
    assert_eq!(
        app.delete(&format!("{tags}/tag%3Aproduction"))
            .await
            .status(),
        204
    );
    assert_eq!(app.delete(&format!("{tags}/tag:web")).await.status(), 204);
    assert_eq!(
        app.delete(&format!("{tags}/tag:web")).await.status(),
        204,
        "repeat"
    );
    let view = json(app.get(&format!("/api/v1/devices/{did}")).await).await;
    assert_eq!(view["tags"], json!([]));
    let resp = app.post(&tags, &json!({ "tags": ["staging"] })).await;
    assert_problem(resp, 400, "invalid_argument").await;
    let resp = app.post(&tags, &json!({ "tag": ["tag:a"] })).await;
    assert_problem(resp, 400, "invalid_argument").await;
    assert_problem(
        app.delete(&format!("{tags}/Not_A_Tag")).await,
        400,
        "invalid_argument",
    )
    .await;
}

#[tokio::test]
async fn expiring_a_key_is_recorded_once() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let did = id(&join(&app, &key, "host", "linux").await);
    let path = format!("/api/v1/devices/{did}/expire-key");
    let view = json(app.post(&path, &json!({})).await).await;
    assert_eq!(view["key_expired"], true);
    let head = app.state.log().head();
    assert_eq!(app.post(&path, &json!({})).await.status(), 200);
    assert_eq!(app.state.log().head(), head);
}

#[tokio::test]
async fn another_organizations_devices_are_invisible() {
    let app = spawn_app().await;
    let (_, other) = app.second_org("globex").await;
    let key = key_secret(&app, json!({})).await;
    let did = id(&join(&app, &key, "mine", "linux").await);
    let base = format!("/api/v1/devices/{did}");
    for (method, path, body) in [
        (Method::GET, base.clone(), None),
        (
            Method::PATCH,
            base.clone(),
            Some(json!({ "hostname": "theirs" })),
        ),
        (Method::DELETE, base.clone(), None),
        (
            Method::POST,
            format!("{base}/tags"),
            Some(json!({ "tags": ["tag:x"] })),
        ),
        (Method::DELETE, format!("{base}/tags/tag:x"), None),
        (Method::POST, format!("{base}/expire-key"), Some(json!({}))),
    ] {
        let mut req = app.request_as(&other, method.clone(), &path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        assert_problem(req.send().await.unwrap(), 404, "not_found").await;
    }
    let listed = app
        .request_as(&other, Method::GET, "/api/v1/devices")
        .send()
        .await
        .unwrap();
    assert_eq!(json(listed).await["items"], json!([]));
    assert_eq!(json(app.get(&base).await).await["hostname"], "mine");
}

#[tokio::test]
async fn the_sweeper_removes_offline_ephemeral_devices_and_idle_ones_when_the_org_says_so() {
    let app = spawn_app().await;
    let ephemeral = key_secret(&app, json!({ "ephemeral": true, "reusable": true })).await;
    let normal = key_secret(&app, json!({ "reusable": true })).await;
    let stale_ci = id(&join(&app, &ephemeral, "ci-old", "linux").await);
    let fresh_ci = id(&join(&app, &ephemeral, "ci-new", "linux").await);
    let server = id(&join(&app, &normal, "server", "linux").await);
    let now = events::now_micros();
    let hb = app.state.heartbeats();
    hb.record(
        &app.org_id,
        &stale_ci,
        now - 2 * 3_600_000_000,
        Report::default(),
    );
    hb.record(&app.org_id, &server, now - 400 * DAY, Report::default());

    let removed = sweeper::sweep_once(&app.state, now).await.unwrap();
    assert_eq!(removed, vec![stale_ci.clone()]);
    assert_problem(
        app.get(&format!("/api/v1/devices/{stale_ci}")).await,
        404,
        "not_found",
    )
    .await;
    let stream = app
        .state
        .log()
        .read_stream(&format!("device:{stale_ci}"), 0, 10)
        .unwrap();
    let last = stream.last().unwrap();
    assert_eq!(last.envelope.event_type, "device.removed");
    assert_eq!(last.envelope.actor.kind, events::ActorKind::System);
    assert_eq!(last.event.data_json()["reason"], "ephemeral_offline");
    assert!(
        hb.get(&stale_ci).is_none(),
        "its heartbeat entry is dropped"
    );

    // Idle removal is off by default; switched on, the year-old server goes.
    bootstrap::set_settings(
        &app.state,
        &app.org_id,
        Some(90),
        1800,
        Actor::console("test"),
    )
    .await
    .unwrap();
    caught_up(&app).await;
    let removed = sweeper::sweep_once(&app.state, now).await.unwrap();
    assert_eq!(removed, vec![server.clone()]);
    let stream = app
        .state
        .log()
        .read_stream(&format!("device:{server}"), 0, 10)
        .unwrap();
    assert_eq!(stream.last().unwrap().event.data_json()["reason"], "idle");
    // An ephemeral device that never sent a heartbeat counts from its registration.
    assert!(
        sweeper::sweep_once(&app.state, now)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + 31 * 60 * 1_000_000;
    assert_eq!(
        sweeper::sweep_once(&app.state, later).await.unwrap(),
        vec![fresh_ci]
    );
    assert_eq!(device_count(&app), 0);
}

#[tokio::test]
async fn the_server_sweeps_on_its_own_timer() {
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        settings: Some(|s| s.sweep_every = std::time::Duration::from_millis(20)),
        ..Default::default()
    })
    .await;
    let ephemeral = key_secret(&app, json!({ "ephemeral": true })).await;
    let gone = id(&join(&app, &ephemeral, "ci", "linux").await);
    let long_ago = events::now_micros() - 2 * 3_600_000_000;
    app.state
        .heartbeats()
        .record(&app.org_id, &gone, long_ago, Report::default());
    for _ in 0..250 {
        if device_count(&app) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the sweeper worker did not remove the offline ephemeral device");
}

#[tokio::test]
async fn devices_and_heartbeats_read_the_same_after_a_restart() {
    let app = spawn_app().await;
    fleet(&app).await;
    let key = key_secret(&app, json!({})).await;
    let reg = register(&app, &key, "beating").await;
    let credential = reg["node_credential"].as_str().unwrap().to_owned();
    assert_eq!(
        heartbeat(
            &app,
            &credential,
            &json!({ "posture": { "firewall": true } })
        )
        .await
        .status(),
        200
    );
    let before = json(app.get("/api/v1/devices?sort=hostname").await).await;
    let app = app.restart().await;
    let mut after = json(app.get("/api/v1/devices?sort=hostname").await).await;
    // `online` may flip only with the passing of time, which the test does not wait for.
    for (a, b) in after["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(before["items"].as_array().unwrap())
    {
        a["online"] = b["online"].clone();
    }
    assert_eq!(after, before);
    assert_eq!(
        heartbeat(&app, &credential, &json!({})).await.status(),
        200,
        "the credential still works"
    );
}
