//! Who may revoke a token: itself, the token that issued it, or a token holding all its
//! scopes; and never the organization's last owner token, which would lock it out.

use events::Actor;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn revoke_as(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.request_as(token, Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .expect("DELETE /tokens/{id}")
}

/// Whether the token still authenticates (a 403 for lacking a scope still means it does).
async fn works(app: &TestApp, token: &str) -> bool {
    app.request_as(token, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .expect("GET /tokens")
        .status()
        != 401
}

fn id(token: &Value) -> &str {
    token["id"].as_str().expect("id")
}

fn secret(token: &Value) -> &str {
    token["token"].as_str().expect("token")
}

/// A second owner token, issued at the console (not by the first one).
async fn console_owner_token(app: &TestApp) -> String {
    let issued =
        quickztna::bootstrap::issue_owner_token(&app.state, &app.org_id, Actor::console("test"))
            .await
            .expect("issue an owner token");
    app.wait_caught_up().await;
    issued.token
}

#[tokio::test]
async fn a_tokens_write_token_cannot_revoke_the_owner_token() {
    let app = spawn_app().await;
    let manager = app.create_token(&["read", "tokens:write"], "manager").await;
    let owner_id = app.token_id_of(&app.token);
    let head = app.state.log().head();

    let resp = revoke_as(&app, secret(&manager), &owner_id).await;
    let body = assert_problem(resp, 403, "permission_denied").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&owner_id) && detail.contains("write"),
        "names the token and the scope the caller lacks: {detail}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");
    assert!(works(&app, &app.token).await, "the owner is not locked out");
}

#[tokio::test]
async fn a_token_may_revoke_tokens_it_covers_tokens_it_issued_and_itself() {
    let app = spawn_app().await;
    let manager = app
        .create_token(&["devices:read", "tokens:write"], "manager")
        .await;
    let covered = app.create_token(&["devices:read"], "covered").await;
    let broader = app.create_token(&["devices:write"], "broader").await;
    let issued = app
        .create_token_as(
            secret(&manager),
            &json!({ "scopes": ["tokens:write"], "description": "issued", "expires_in": "1h" }),
        )
        .await;

    assert_eq!(
        revoke_as(&app, secret(&manager), id(&covered))
            .await
            .status(),
        204
    );
    let resp = revoke_as(&app, secret(&manager), id(&broader)).await;
    assert_problem(resp, 403, "permission_denied").await;
    assert!(works(&app, secret(&broader)).await);
    assert_eq!(
        revoke_as(&app, secret(&manager), id(&issued))
            .await
            .status(),
        204
    );
    assert!(!works(&app, secret(&issued)).await);
    assert_eq!(
        revoke_as(&app, secret(&manager), id(&manager))
            .await
            .status(),
        204
    );
    assert!(!works(&app, secret(&manager)).await);
}

#[tokio::test]
async fn the_last_owner_token_cannot_be_revoked_over_the_api() {
    let app = spawn_app().await;
    let owner_id = app.token_id_of(&app.token);
    // Another token with scope write, issued by the owner, falls with it: it does not count.
    let deputy = app.create_token(&["write"], "deputy").await;
    let head = app.state.log().head();

    for caller in [app.token.as_str(), secret(&deputy)] {
        let resp = revoke_as(&app, caller, &owner_id).await;
        let body = assert_problem(resp, 409, "conflict").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("owner token"), "{detail}");
        assert!(detail.contains("quickztna org issue-token"), "{detail}");
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
    assert!(works(&app, &app.token).await);

    // With another owner token from the console, the first one may go (with its deputy).
    let console = console_owner_token(&app).await;
    assert_eq!(revoke_as(&app, &app.token, &owner_id).await.status(), 204);
    assert!(!works(&app, &app.token).await);
    assert!(!works(&app, secret(&deputy)).await);
    assert!(works(&app, &console).await);
    let console_id = app.token_id_of(&console);
    let resp = revoke_as(&app, &console, &console_id).await;
    assert_problem(resp, 409, "conflict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_owner_tokens_revoking_each_other_at_once_leave_one() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let first = console_owner_token(&app).await;
        let second = console_owner_token(&app).await;
        let (first_id, second_id) = (app.token_id_of(&first), app.token_id_of(&second));
        // Only these two may remain: revoke every other owner token first.
        let others: Vec<String> = {
            let models = app.state.models().load();
            models
                .state
                .org(&app.org_id)
                .tokens()
                .filter(|t| t.revoked_at.is_none() && t.id != first_id && t.id != second_id)
                .map(|t| t.id.clone())
                .collect()
        };
        for t in others {
            assert_eq!(revoke_as(&app, &first, &t).await.status(), 204);
        }
        let (a, b) = tokio::join!(
            revoke_as(&app, &first, &second_id),
            revoke_as(&app, &second, &first_id),
        );
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 204).count(),
            1,
            "exactly one revocation succeeds: {statuses:?}"
        );
        assert!(
            works(&app, &first).await || works(&app, &second).await,
            "an owner token remains"
        );
    }
}
