//! People's sign-in sessions: roles mean something (admin everything, auditor read only,
//! member only their own devices), and a session ends with its person's deactivation.

use events::Actor;
use quickztna::domain::directory::{self, Role};
use quickztna::execute::Command;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::users::{devices_of, invite, user_id};

/// Invites a person with `role`; returns their id.
async fn person(app: &TestApp, email: &str, role: Role) -> String {
    invite(app, email, role.as_str()).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn session(app: &TestApp, user: &str, role: Role) -> String {
    quickztna::sessions::issue(
        &app.state,
        &app.org_id,
        user,
        "person@example.com",
        role,
        "req_t",
    )
    .await
    .expect("issue a session")
    .token
}

async fn set_active(app: &TestApp, user: &str, active: bool) {
    let command = Command::new(app.org_id.clone(), Actor::console("test"), "req_t");
    quickztna::directory::execute(&app.state, command, |org| {
        directory::set_active(org, user, active)
    })
    .await
    .expect("set active");
}

async fn status(app: &TestApp, token: &str, method: Method, path: &str) -> u16 {
    let mut req = app.request_as(token, method.clone(), path);
    if method == Method::POST {
        req = req.json(&json!({ "email": "x@example.com" }));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_member_sees_and_manages_only_their_own_devices() {
    let app = spawn_app().await;
    let alice = user_id(&app, "alice@example.com").await;
    let bob = user_id(&app, "bob@example.com").await;
    devices_of(&app, &alice, 2).await;
    // Owned by her email, from before she was in the directory: hers too, listed as well.
    devices_of(&app, "alice@example.com", 1).await;
    devices_of(&app, &bob, 3).await;
    let token = session(&app, &alice, Role::Member).await;

    let (mine, _) = app.list_all(&token, "/api/v1/devices", "limit=200").await;
    assert_eq!(mine.len(), 3);
    assert!(
        mine.iter()
            .all(|d| d["owner"] == alice.as_str() || d["owner"] == "alice@example.com")
    );
    // The owner token's identical query is not served the member's cached page, nor the reverse.
    let (all, _) = app
        .list_all(&app.token, "/api/v1/devices", "limit=200")
        .await;
    assert_eq!(all.len(), 6);
    let bobs: Vec<&str> = all
        .iter()
        .filter(|d| d["owner"] == bob.as_str())
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let own = mine[0]["id"].as_str().unwrap();
    let theirs = bobs[0];
    assert_eq!(
        status(
            &app,
            &token,
            Method::GET,
            &format!("/api/v1/devices/{theirs}")
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &app,
            &token,
            Method::DELETE,
            &format!("/api/v1/devices/{theirs}")
        )
        .await,
        404
    );
    let resp = app
        .request_as(&token, Method::PATCH, &format!("/api/v1/devices/{theirs}"))
        .json(&json!({ "hostname": "mine-now" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    assert_eq!(
        status(&app, &token, Method::GET, &format!("/api/v1/devices/{own}")).await,
        200
    );
    assert_eq!(
        status(
            &app,
            &token,
            Method::DELETE,
            &format!("/api/v1/devices/{own}")
        )
        .await,
        204
    );
    // Nothing beyond devices.
    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::POST, "/api/v1/users"),
        (Method::GET, "/api/v1/keys"),
        (Method::GET, "/api/v1/audit-log"),
    ] {
        assert_eq!(
            status(&app, &token, method.clone(), path).await,
            403,
            "{method} {path}"
        );
    }
    let (all, _) = app
        .list_all(&app.token, "/api/v1/devices", "limit=200")
        .await;
    assert_eq!(all.len(), 5, "only the member's own device went");
}

#[tokio::test]
async fn an_auditor_reads_everything_and_changes_nothing() {
    let app = spawn_app().await;
    let carol = person(&app, "carol@example.com", Role::Auditor).await;
    devices_of(&app, &carol, 1).await;
    let token = session(&app, &carol, Role::Auditor).await;
    for path in [
        "/api/v1/devices",
        "/api/v1/users",
        "/api/v1/keys",
        "/api/v1/audit-log",
    ] {
        assert_eq!(status(&app, &token, Method::GET, path).await, 200, "{path}");
    }
    assert_eq!(
        status(&app, &token, Method::POST, "/api/v1/users").await,
        403
    );
    let resp = app
        .request_as(&token, Method::POST, "/api/v1/tokens")
        .json(&json!({ "scopes": ["read"], "description": "escape hatch" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
}

#[tokio::test]
async fn a_session_and_the_tokens_minted_from_it_end_with_their_persons_deactivation() {
    let app = spawn_app().await;
    let dave = person(&app, "dave@example.com", Role::Admin).await;
    let token = session(&app, &dave, Role::Admin).await;
    assert_eq!(status(&app, &token, Method::GET, "/api/v1/keys").await, 200);
    let minted = app
        .create_token_as(
            &token,
            &json!({ "scopes": ["read"], "description": "dave's script" }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        status(&app, &minted, Method::GET, "/api/v1/keys").await,
        200
    );

    set_active(&app, &dave, false).await;
    for t in [&token, &minted] {
        let resp = app
            .request_as(t, Method::GET, "/api/v1/keys")
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 401, "unauthenticated").await;
        assert!(problem["detail"].as_str().unwrap().contains("deactivated"));
    }
    set_active(&app, &dave, true).await;
    assert_eq!(status(&app, &token, Method::GET, "/api/v1/keys").await, 200);

    let resp = app.delete(&format!("/api/v1/users/{dave}")).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        status(&app, &minted, Method::GET, "/api/v1/keys").await,
        401
    );
    let token_list = json(app.get("/api/v1/tokens?limit=200").await).await;
    assert!(token_list.to_string().contains("sign-in session of"));
}

#[tokio::test]
async fn nobody_grants_a_role_more_powerful_than_their_own_token() {
    let app = spawn_app().await;
    let people = app.token_with(&["users:read", "users:write"]).await;
    for role in ["admin", "auditor", "member"] {
        let resp = app
            .request_as(&people, Method::POST, "/api/v1/users")
            .json(&json!({ "email": format!("{role}@example.com"), "role": role }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 403, "permission_denied").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("nobody grants")
        );
    }
    let resp = app
        .request_as(&people, Method::POST, "/api/v1/users")
        .json(&json!({ "domain": "gmail.com", "role": "admin" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let devices = app
        .token_with(&["users:write", "devices:read", "devices:write"])
        .await;
    let resp = app
        .request_as(&devices, Method::POST, "/api/v1/users")
        .json(&json!({ "email": "member@example.com", "role": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}
