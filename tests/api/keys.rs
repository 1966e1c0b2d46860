//! `/keys`: pre-auth keys are shown once, listed by status, revoked idempotently.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, json, spawn_app};
use crate::machine::{all_pages, append_key, create_key, register, register_body, register_raw};

const HOUR: i64 = 3_600_000_000;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_key_is_shown_once_and_listed_by_its_prefix_only() {
    let app = spawn_app().await;
    let resp = app
        .post(
            "/api/v1/keys",
            &json!({ "tags": ["tag:web", "tag:web", "tag:ci"], "description": "fleet rollout" }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created = json(resp).await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(key.starts_with("qzk_"), "{key}");
    assert!(id.starts_with("key_"));
    assert_eq!(location, format!("/api/v1/keys/{id}"));
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(
        created["tags"],
        json!(["tag:ci", "tag:web"]),
        "sorted, deduplicated"
    );
    assert_eq!(created["reusable"], false);
    assert_eq!(created["ephemeral"], false);
    assert_eq!(created["owner"], Value::Null);
    assert_eq!(created["max_uses"], Value::Null);
    assert_eq!(created["uses"], 0);
    assert_eq!(created["status"], "active");
    assert_eq!(created["note"], Value::Null);
    let expires: jiff::Timestamp = created["expires_at"].as_str().unwrap().parse().unwrap();
    let secs = expires.as_second() - jiff::Timestamp::now().as_second();
    assert!(
        (3500..=3600).contains(&secs),
        "default lifetime 1h, got {secs}s"
    );

    let listed = json(app.get("/api/v1/keys").await).await;
    assert_eq!(ids(&listed), vec![id.to_owned()]);
    let item = &listed["items"][0];
    assert!(item.get("key").is_none(), "{item}");
    assert!(item.get("note").is_none());
    let one = json(app.get(&format!("/api/v1/keys/{id}")).await).await;
    assert_eq!(one, *item);
    let text = serde_json::to_string(&listed).unwrap() + &serde_json::to_string(&one).unwrap();
    assert!(!text.contains(key), "the key is never shown again");
    assert!(!text.contains("hash"));
}

#[tokio::test]
async fn a_repeated_create_with_the_same_idempotency_key_does_not_show_the_key_again() {
    let app = spawn_app().await;
    let body = json!({ "reusable": true, "expires_in": "2h" });
    let send = |body: Value| {
        app.request(Method::POST, "/api/v1/keys")
            .header("idempotency-key", "rollout-1")
            .json(&body)
            .send()
    };
    let first = json(send(body.clone()).await.unwrap()).await;
    assert!(first["key"].is_string());
    let resp = send(body.clone()).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let again = json(resp).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["key"], Value::Null);
    assert!(again["note"].as_str().unwrap().contains("not shown again"));
    let resp = send(json!({ "reusable": false })).await.unwrap();
    assert_problem(resp, 409, "conflict").await;
    assert_eq!(ids(&json(app.get("/api/v1/keys").await).await).len(), 1);
    // Once the key is revoked, a replay cannot point at it any more.
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/keys/{id}")).await.status(),
        204
    );
    let problem = assert_problem(send(body).await.unwrap(), 409, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
}

#[tokio::test]
async fn key_settings_are_kept_and_expiry_can_be_absolute() {
    let app = spawn_app().await;
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48);
    let created = create_key(
        &app,
        json!({
            "reusable": true, "ephemeral": true, "tags": ["tag:ci"], "owner": "bob@example.com",
            "expires_at": at.to_string(), "description": "CI runners", "max_uses": 10
        }),
    )
    .await;
    assert_eq!(created["reusable"], true);
    assert_eq!(created["ephemeral"], true);
    assert_eq!(created["owner"], "bob@example.com");
    assert_eq!(created["description"], "CI runners");
    assert_eq!(created["max_uses"], 10);
    let expires: jiff::Timestamp = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.as_second(), at.as_second());
    let long = create_key(&app, json!({ "expires_in": "90d" })).await;
    assert_eq!(long["status"], "active");
}

#[tokio::test]
async fn key_creation_refuses_bad_input_on_every_field() {
    let app = spawn_app().await;
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let far = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 91)).to_string();
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "reusable": "yes" }), "reusable"),
        (json!({ "ephemeral": 1 }), "ephemeral"),
        (json!({ "tags": ["production"] }), "tags"),
        (json!({ "tags": ["tag:Prod"] }), "tags"),
        (json!({ "tags": ["tag:a_b"] }), "tags"),
        (
            json!({ "tags": [format!("tag:{}", "a".repeat(64))] }),
            "tags",
        ),
        (json!({ "tags": "tag:a" }), "tags"),
        (json!({ "owner": "" }), "owner"),
        (json!({ "owner": "a".repeat(255) }), "owner"),
        (json!({ "owner": "a\nb" }), "owner"),
        (json!({ "expires_in": "0s" }), "expires_in"),
        (json!({ "expires_in": "91d" }), "expires_in"),
        (json!({ "expires_in": "soon" }), "expires_in"),
        (json!({ "expires_at": "tomorrow" }), "expires_at"),
        (json!({ "expires_at": past }), "expir"),
        (json!({ "expires_at": far }), "expir"),
        (
            json!({ "expires_in": "1h", "expires_at": far }),
            "expires_at",
        ),
        (json!({ "description": "d".repeat(201) }), "description"),
        (json!({ "description": "tab\there" }), "description"),
        (json!({ "max_uses": 0, "reusable": true }), "max_uses"),
        (json!({ "max_uses": -1, "reusable": true }), "max_uses"),
        (json!({ "max_uses": 5 }), "max_uses"),
        (json!({ "scopes": ["read"] }), "scopes"),
        (json!([]), "object"),
        (json!([true, false]), "object"),
    ];
    for (body, named) in cases {
        let problem = assert_problem(
            app.post("/api/v1/keys", &body).await,
            400,
            "invalid_argument",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{body}: {problem}"
        );
    }
    let all = json(
        app.get("/api/v1/keys?filter=status:active,used,exhausted,expired,revoked")
            .await,
    )
    .await;
    assert_eq!(ids(&all).len(), 0, "nothing was created");
}

#[tokio::test]
async fn revoking_is_idempotent_and_revoked_keys_leave_the_default_list() {
    let app = spawn_app().await;
    let created = create_key(&app, json!({})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/keys/{id}")).await.status(),
        204
    );
    assert_eq!(
        app.delete(&format!("/api/v1/keys/{id}")).await.status(),
        204
    );
    assert_problem(app.delete("/api/v1/keys/key_nope").await, 404, "not_found").await;
    assert_eq!(ids(&json(app.get("/api/v1/keys").await).await).len(), 0);
    let revoked = json(app.get("/api/v1/keys?filter=status:revoked").await).await;
    assert_eq!(ids(&revoked), vec![id.to_owned()]);
    assert_eq!(revoked["items"][0]["status"], "revoked");
    // Like anything deleted, it is gone by id.
    assert_problem(
        app.get(&format!("/api/v1/keys/{id}")).await,
        404,
        "not_found",
    )
    .await;
    // Exactly one key.revoked event.
    let models = app.state.models().load();
    assert!(models.state.keys.get(id).unwrap().revoked_at.is_some());
}

#[tokio::test]
async fn keys_filter_by_status_tag_and_flags_and_sort_by_expiry() {
    let app = spawn_app().await;
    let single = create_key(&app, json!({ "tags": ["tag:web"], "expires_in": "3h" })).await;
    let reusable = create_key(
        &app,
        json!({ "reusable": true, "ephemeral": true, "expires_in": "1h" }),
    )
    .await;
    let used = create_key(&app, json!({ "expires_in": "2h" })).await;
    register(&app, used["key"].as_str().unwrap(), "h").await;
    let expired = append_key(&app, events::now_micros() - HOUR, false).await;
    let _ = expired;

    let get = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let resp = app.get(&format!("/api/v1/keys?{q}")).await;
            assert_eq!(resp.status(), 200, "{q}");
            json(resp).await
        }
    };
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let active = get("").await;
    assert_eq!(ids(&active), vec![id(&single), id(&reusable)]);
    assert_eq!(ids(&get("filter=status:used").await), vec![id(&used)]);
    assert_eq!(
        get("filter=status:expired").await["items"][0]["status"],
        "expired"
    );
    assert_eq!(ids(&get("filter=tag:web").await), vec![id(&single)]);
    assert_eq!(ids(&get("filter=tag:tag:web").await), vec![id(&single)]);
    assert_eq!(ids(&get("filter=reusable:true").await), vec![id(&reusable)]);
    assert_eq!(ids(&get("filter=ephemeral:false").await), vec![id(&single)]);
    assert_eq!(
        ids(&get("filter=status:active,used&sort=expires_at:desc").await),
        vec![id(&single), id(&used), id(&reusable)]
    );
    for bad in [
        "filter=status:spent",
        "filter=reusable:maybe",
        "filter=tag:Bad_Tag",
        "filter=color:red",
        "sort=uses",
        "limit=0",
    ] {
        assert_problem(
            app.get(&format!("/api/v1/keys?{bad}")).await,
            400,
            "invalid_argument",
        )
        .await;
    }
    // Pages follow their cursor.
    let (items, pages) = all_pages(
        &app,
        "/api/v1/keys?limit=1&filter=status:active,used,expired",
    )
    .await;
    assert_eq!(items.len(), 4);
    assert_eq!(pages, 4);
}

#[tokio::test]
async fn key_scopes_are_enforced() {
    let app = spawn_app().await;
    let reader = app.token_with(&["keys:read"]).await;
    let devices = app.token_with(&["devices:write"]).await;
    let created = create_key(&app, json!({})).await;
    let id = created["id"].as_str().unwrap();
    let get = app
        .request_as(&reader, Method::GET, "/api/v1/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let post = app
        .request_as(&reader, Method::POST, "/api/v1/keys")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(post, 403, "permission_denied").await;
    let del = app
        .request_as(&reader, Method::DELETE, &format!("/api/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_problem(del, 403, "permission_denied").await;
    let get = app
        .request_as(&devices, Method::GET, "/api/v1/keys")
        .send()
        .await
        .unwrap();
    assert_problem(get, 403, "permission_denied").await;
    let read_all = app.token_with(&["read"]).await;
    let get = app
        .request_as(&read_all, Method::GET, &format!("/api/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
}

#[tokio::test]
async fn setting_a_keys_owner_needs_users_write_as_on_a_device() {
    let app = spawn_app().await;
    let keys_only = app.token_with(&["keys:write"]).await;
    let keys_and_users = app.token_with(&["keys:write", "users:write"]).await;
    let head = app.state.log().head();
    let resp = app
        .request_as(&keys_only, Method::POST, "/api/v1/keys")
        .json(&json!({ "owner": "ceo@example.com", "tags": ["tag:prod"] }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403, "permission_denied").await;
    assert!(
        body["detail"].as_str().unwrap().contains("users:write"),
        "{body}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");

    // Without an owner the same token issues keys; with users:write, keys with an owner.
    let resp = app
        .request_as(&keys_only, Method::POST, "/api/v1/keys")
        .json(&json!({ "tags": ["tag:prod"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = app
        .request_as(&keys_and_users, Method::POST, "/api/v1/keys")
        .json(&json!({ "owner": "ceo@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(json(resp).await["owner"], "ceo@example.com");
}

#[tokio::test]
async fn another_organizations_keys_are_invisible() {
    let app = spawn_app().await;
    let (_, other) = app.second_org("globex").await;
    let created = create_key(&app, json!({})).await;
    let id = created["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/api/v1/keys/{id}")),
        (Method::DELETE, format!("/api/v1/keys/{id}")),
    ] {
        let resp = app.request_as(&other, method, &path).send().await.unwrap();
        assert_problem(resp, 404, "not_found").await;
    }
    let listed = app
        .request_as(&other, Method::GET, "/api/v1/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&json(listed).await).len(), 0);
    // Still usable by its own organization.
    let resp = register_raw(&app, &register_body(created["key"].as_str().unwrap(), "x")).await;
    assert_eq!(resp.status(), 201);
}
