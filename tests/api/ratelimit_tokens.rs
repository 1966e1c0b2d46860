//! Tokens' shares of their organization's quota: a request is charged after its scope check
//! and never for a 403, and one token cannot lock the others out.

use events::Actor;
use reqwest::{Method, Response};

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app_with};

async fn limited_app() -> TestApp {
    spawn_app_with(AppOptions {
        unlimited: false,
        ..Default::default()
    })
    .await
}

fn remaining(resp: &Response) -> u32 {
    header(resp, "x-ratelimit-remaining")
        .expect("X-RateLimit-Remaining")
        .parse()
        .expect("a number")
}

async fn create_token(app: &TestApp, token: &str, i: usize) -> Response {
    app.request_as(token, Method::POST, "/api/v1/tokens")
        .json(&serde_json::json!({ "scopes": ["read"], "description": format!("t{i}"), "expires_in": "1h" }))
        .send()
        .await
        .expect("POST /tokens")
}

/// Writes as `token` until one is refused; returns the answers that were accepted and the 429.
async fn write_until_refused(app: &TestApp, token: &str) -> (Vec<Response>, Response) {
    let mut accepted = Vec::new();
    for i in 0..200 {
        let resp = create_token(app, token, i).await;
        if resp.status() == 429 {
            return (accepted, resp);
        }
        assert_eq!(resp.status(), 201, "write {i}");
        accepted.push(resp);
    }
    panic!("200 writes were never rate limited");
}

/// A second owner token, issued at the console: its creation is no request of the first one.
async fn console_token(app: &TestApp) -> String {
    let created = quickztna::bootstrap::issue_owner_token(
        &app.state,
        &app.org_id,
        Actor::console("test setup"),
    )
    .await
    .expect("issue a token");
    app.wait_caught_up().await;
    created.token
}

#[tokio::test]
async fn a_read_only_tokens_403s_do_not_consume_the_write_quota() {
    let app = limited_app().await;
    let read_only = app.token_with(&["read"]).await;
    for i in 0..100 {
        let resp = create_token(&app, &read_only, i).await;
        assert!(
            header(&resp, "x-ratelimit-limit").is_some(),
            "a 403 reports the quota too"
        );
        assert_problem(resp, 403, "permission_denied").await;
    }
    // The owner's quota is whole: 59 after the read-only token's creation.
    let (accepted, _) = write_until_refused(&app, &app.token).await;
    assert!(accepted.len() >= 59, "{}", accepted.len());
}

#[tokio::test]
async fn a_noisy_token_cannot_exhaust_the_owners_writes() {
    let app = limited_app().await;
    // Creating it is a write of the owner's: the owner has been active in the last minute.
    let noisy = app.token_with(&["write"]).await;
    let (accepted, refused) = write_until_refused(&app, &noisy).await;
    assert!(
        (29..40).contains(&accepted.len()),
        "about half of 60 (and what refilled meanwhile): {}",
        accepted.len()
    );
    assert!(remaining(&accepted[0]) <= 30, "the headers show the share");
    assert_eq!(remaining(accepted.last().unwrap()), 0);
    assert_eq!(remaining(&refused), 0);
    assert_problem(refused, 429, "rate_limited").await;
    // The owner still has the rest of the organization's quota.
    let (owner, _) = write_until_refused(&app, &app.token).await;
    assert!(owner.len() >= 25, "the owner got {} writes", owner.len());
}

#[tokio::test]
async fn after_a_noisy_token_drained_the_quota_the_owner_is_served_first() {
    let app = limited_app().await;
    let noisy = console_token(&app).await;
    // Alone, a token may use the organization's whole quota.
    let (accepted, _) = write_until_refused(&app, &noisy).await;
    assert!(accepted.len() >= 59, "{}", accepted.len());
    let refused = create_token(&app, &app.token, 0).await;
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert_problem(refused, 429, "rate_limited").await;
    // The owner has asked; the noisy token, far past its half, waits while the owner is served.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let resp = create_token(&app, &noisy, 1).await;
    assert_problem(resp, 429, "rate_limited").await;
    let resp = create_token(&app, &app.token, 1).await;
    assert_eq!(resp.status(), 201, "the owner honoured Retry-After");
    let resp = create_token(&app, &noisy, 2).await;
    assert_problem(resp, 429, "rate_limited").await;
}

#[tokio::test]
async fn reads_of_one_token_do_not_use_up_anothers_reads() {
    let app = limited_app().await;
    let reader = app.token_with(&["read"]).await;
    assert_eq!(app.get("/api/v1/tokens").await.status(), 200);
    let mut served = 0;
    loop {
        let resp = app
            .request_as(&reader, Method::GET, "/api/v1/tokens")
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            break;
        }
        served += 1;
        assert!(served <= 600, "more than the organization's reads");
    }
    assert!((299..400).contains(&served), "about half of 600: {served}");
    let resp = app.get("/api/v1/tokens").await;
    assert_eq!(resp.status(), 200);
    assert!(remaining(&resp) >= 250, "{}", remaining(&resp));
}
