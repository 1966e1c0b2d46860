//! `/users` and `/groups`: invitations, SSO-domain rules, lists and filters, a user's devices,
//! and deleting a user with every device they own in one append.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::machine::{heartbeat, key_secret, register};

/// Invites `email` with `role`; returns the response body.
pub async fn invite(app: &TestApp, email: &str, role: &str) -> Value {
    let resp = app
        .post("/api/v1/users", &json!({ "email": email, "role": role }))
        .await;
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 201, "inviting {email}: {body}");
    body
}

/// Invites `email` and returns the new user's id.
pub async fn user_id(app: &TestApp, email: &str) -> String {
    invite(app, email, "member").await["user"]["id"]
        .as_str()
        .expect("user id")
        .to_owned()
}

/// Registers `n` devices owned by `owner` (a user id or email); returns their node credentials.
pub async fn devices_of(app: &TestApp, owner: &str, n: usize) -> Vec<String> {
    let key = key_secret(app, json!({ "reusable": true, "owner": owner })).await;
    let mut credentials = Vec::new();
    for i in 0..n {
        let name = format!("{}-{i}", owner.replace(['@', '.', '_'], "-"));
        let d = register(app, &key, &name).await;
        credentials.push(d["node_credential"].as_str().unwrap().to_owned());
    }
    credentials
}

#[tokio::test]
async fn an_invitation_without_a_mail_relay_returns_its_link_once() {
    let app = spawn_app().await;
    let body = invite(&app, "alice@example.com", "admin").await;
    let user = &body["user"];
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["role"], "admin");
    assert_eq!(user["status"], "pending");
    assert_eq!(user["source"], "invite");
    let inv = &body["invitation"];
    assert_eq!(inv["emailed"], false);
    let url = inv["url"].as_str().expect("the link is returned");
    assert!(
        url.starts_with(&format!(
            "{}/sso/login?org={}&invitation=qzi_",
            app.address, app.org_id
        )),
        "{url}"
    );
    assert!(inv["note"].as_str().unwrap().contains("--smtp-url"));
    // The code is a secret: it is nowhere in the audit log.
    let code = url.split("invitation=").nth(1).unwrap();
    let audit = app
        .get("/api/v1/audit-log?limit=200")
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("user.invited") && !audit.contains(code));
    // Inviting the same person again is a conflict, whatever the case of the address.
    let again = app
        .post("/api/v1/users", &json!({ "email": "ALICE@example.com" }))
        .await;
    assert_problem(again, 409, "conflict").await;
}

#[tokio::test]
async fn bad_invitations_name_the_problem_and_change_nothing() {
    let app = spawn_app().await;
    let before = app
        .get("/api/v1/audit-log?limit=200")
        .await
        .text()
        .await
        .unwrap();
    for (body, needle) in [
        (json!({}), "exactly one of 'email'"),
        (
            json!({ "email": "a@example.com", "domain": "example.com" }),
            "exactly one",
        ),
        (json!({ "email": "not-an-address" }), "email address"),
        (
            json!({ "email": "a@example.com", "role": "owner" }),
            "role must be one of",
        ),
        (
            json!({ "email": "a@example.com", "expires_in": "90d" }),
            "1 hour to 30 days",
        ),
        (json!({ "domain": "not a domain" }), "domain name"),
        (json!({ "email": "a\u{202e}b@example.com" }), "invisible"),
        (json!({ "email": "a@example.com", "admin": true }), "admin"),
        (json!({ "email": 7 }), "email"),
    ] {
        let resp = app.post("/api/v1/users", &body).await;
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    let after = app
        .get("/api/v1/audit-log?limit=200")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        before.matches("\"type\"").count(),
        after.matches("\"type\"").count()
    );
    let (users, _) = app.list_all(&app.token, "/api/v1/users", "limit=200").await;
    assert!(users.is_empty());
}

#[tokio::test]
async fn an_sso_domain_rule_is_created_by_post_users_with_a_domain() {
    let app = spawn_app().await;
    let resp = app
        .post(
            "/api/v1/users",
            &json!({ "domain": "@Example.COM", "role": "auditor" }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body = json(resp).await;
    assert_eq!(
        body["sso_domain"],
        json!({ "domain": "example.com", "role": "auditor" })
    );
    assert_eq!(body["user"], Value::Null);
    let audit = json(
        app.get("/api/v1/audit-log?event_type=sso.domain_added")
            .await,
    )
    .await;
    assert_eq!(audit["items"][0]["data"]["domain"], "example.com");
}

#[tokio::test]
async fn users_filter_by_email_role_status_and_group_and_page_with_cursors() {
    let app = spawn_app().await;
    for i in 0..7 {
        let role = ["admin", "member", "auditor"][i % 3];
        invite(&app, &format!("user{i}@example.com"), role).await;
    }
    let (all, pages) = app.list_all(&app.token, "/api/v1/users", "limit=3").await;
    assert_eq!((all.len(), pages), (7, 3));
    let count = |q: &'static str| {
        let app = &app;
        async move { app.list_all(&app.token, "/api/v1/users", q).await.0.len() }
    };
    assert_eq!(count("filter=role:admin").await, 3);
    assert_eq!(count("filter=role:admin,role:auditor").await, 5);
    assert_eq!(count("filter=email:USER3@example.com").await, 1);
    assert_eq!(count("filter=status:pending+role:member").await, 2);
    assert_eq!(count("filter=status:active").await, 0);
    assert_eq!(count("filter=group:engineering").await, 0);
    let sorted = app
        .list_all(&app.token, "/api/v1/users", "sort=email:desc")
        .await
        .0;
    assert_eq!(sorted[0]["email"], "user6@example.com");
    for bad in [
        "filter=role:owner",
        "filter=status:gone",
        "filter=colour:red",
        "sort=age",
    ] {
        let resp = app.get(&format!("/api/v1/users?{bad}")).await;
        assert_problem(resp, 400, "invalid_argument").await;
    }
}

#[tokio::test]
async fn a_user_shows_their_devices_and_deleting_them_removes_every_device_at_once() {
    let app = spawn_app().await;
    let alice = user_id(&app, "alice@example.com").await;
    let bob = user_id(&app, "bob@example.com").await;
    let alices = devices_of(&app, &alice, 3).await;
    // An owner set by email before the person was in the directory counts as theirs too.
    let by_email = devices_of(&app, "Alice@Example.com", 1).await;
    let bobs = devices_of(&app, &bob, 2).await;

    let detail = json(app.get(&format!("/api/v1/users/{alice}")).await).await;
    assert_eq!(detail["device_count"], 4, "{detail}");
    assert_eq!(detail["devices"].as_array().unwrap().len(), 4);
    let (devices, pages) = app
        .list_all(
            &app.token,
            &format!("/api/v1/users/{alice}/devices"),
            "limit=3",
        )
        .await;
    assert_eq!((devices.len(), pages), (4, 2));

    let resp = app.delete(&format!("/api/v1/users/{alice}")).await;
    assert_eq!(resp.status(), 204);
    assert_problem(
        app.get(&format!("/api/v1/users/{alice}")).await,
        404,
        "not_found",
    )
    .await;
    // Every one of her node credentials stopped working at once; Bob's still work.
    for credential in alices.iter().chain(&by_email) {
        let resp = heartbeat(&app, credential, &json!({})).await;
        assert_eq!(
            resp.status(),
            401,
            "a removed user's device still authenticates"
        );
    }
    for credential in &bobs {
        assert_eq!(heartbeat(&app, credential, &json!({})).await.status(), 200);
    }
    let (left, _) = app
        .list_all(&app.token, "/api/v1/devices", "limit=200")
        .await;
    assert_eq!(left.len(), 2);
    // One append: the four removals and the user's, under one request id, in a row.
    let audit = json(app.get("/api/v1/audit-log?sort=time:asc&limit=200").await).await;
    let items = audit["items"].as_array().unwrap();
    let tail: Vec<&Value> = items.iter().rev().take(5).collect();
    assert_eq!(tail[0]["type"], "user.removed");
    assert!(
        tail[1..]
            .iter()
            .all(|e| e["type"] == "device.removed" && e["data"]["reason"] == "user_removed")
    );
    let request = &tail[0]["request_id"];
    assert!(tail.iter().all(|e| &e["request_id"] == request));
    // Deleting again: the user is gone.
    assert_problem(
        app.delete(&format!("/api/v1/users/{alice}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn groups_are_read_only_and_say_the_identity_provider_is_the_source_of_truth() {
    let app = spawn_app().await;
    let page = json(app.get("/api/v1/groups").await).await;
    assert_eq!(page["items"], json!([]));
    for (method, path) in [
        (Method::POST, "/api/v1/groups"),
        (Method::PUT, "/api/v1/groups/grp_x"),
        (Method::PATCH, "/api/v1/groups/grp_x"),
        (Method::DELETE, "/api/v1/groups/grp_x"),
        (Method::POST, "/api/v1/groups/grp_x/members"),
    ] {
        let resp = app
            .request(method.clone(), path)
            .json(&json!({ "display_name": "x" }))
            .send()
            .await
            .unwrap();
        let allow = resp
            .headers()
            .get("allow")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            allow.contains("GET") && !allow.contains(method.as_str()),
            "{allow}"
        );
        let problem = assert_problem(resp, 405, "method_not_allowed").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("identity provider"),
            "{method} {path}: {detail}"
        );
    }
    assert_problem(app.get("/api/v1/groups/grp_x").await, 404, "not_found").await;
    assert_problem(
        app.get("/api/v1/groups/grp_x/members").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn users_need_the_users_scopes() {
    let app = spawn_app().await;
    let devices_only = app.token_with(&["devices:read", "devices:write"]).await;
    let reader = app.token_with(&["users:read"]).await;
    let resp = app
        .request_as(&devices_only, Method::GET, "/api/v1/users")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let resp = app
        .request_as(&reader, Method::POST, "/api/v1/users")
        .json(&json!({ "email": "a@example.com" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let resp = app
        .request_as(&reader, Method::GET, "/api/v1/groups")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_removed_or_deactivated_owners_keys_admit_nobody() {
    let app = spawn_app().await;
    let erin = user_id(&app, "erin@example.com").await;
    let by_id = key_secret(&app, json!({ "reusable": true, "owner": erin })).await;
    let by_email = key_secret(
        &app,
        json!({ "reusable": true, "owner": "ERIN@example.com" }),
    )
    .await;
    register(&app, &by_id, "erin-1").await;

    let command = quickztna::execute::Command::new(
        app.org_id.clone(),
        events::Actor::console("test"),
        "req_test",
    );
    quickztna::directory::execute(&app.state, command.clone(), |org| {
        quickztna::domain::directory::set_active(org, &erin, false)
    })
    .await
    .unwrap();
    for key in [&by_id, &by_email] {
        let resp =
            crate::machine::register_raw(&app, &crate::machine::register_body(key, "erin-2")).await;
        let problem = assert_problem(resp, 403, "permission_denied").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("deactivated"),
            "{problem}"
        );
    }
    quickztna::directory::execute(&app.state, command, |org| {
        quickztna::domain::directory::set_active(org, &erin, true)
    })
    .await
    .unwrap();
    register(&app, &by_email, "erin-3").await;

    assert_eq!(
        app.delete(&format!("/api/v1/users/{erin}")).await.status(),
        204
    );
    let resp =
        crate::machine::register_raw(&app, &crate::machine::register_body(&by_id, "erin-4")).await;
    let problem = assert_problem(resp, 403, "permission_denied").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("removed"),
        "{problem}"
    );
    let (left, _) = app
        .list_all(&app.token, "/api/v1/devices", "limit=200")
        .await;
    assert!(left.is_empty(), "{left:?}");
}
