//! Per-organization rate limits: 600 reads and 60 writes a minute, reported on every response.

use std::sync::LazyLock;

use events::Actor;
use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app_with};

async fn limited_app() -> TestApp {
    LazyLock::force(&STARTED);
    spawn_app_with(AppOptions {
        unlimited: false,
        ..Default::default()
    })
    .await
}

fn number(resp: &Response, name: &str) -> u64 {
    header(resp, name)
        .unwrap_or_else(|| panic!("{name} on {} {:?}", resp.status(), resp.url().path()))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

/// When the first rate-limit check of this test binary ran.
static STARTED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| unix_now() - 1);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asserts the three headers are present and plausible; returns (limit, remaining, reset).
fn rate_headers(resp: &Response) -> (u64, u64, u64) {
    let limit = number(resp, "x-ratelimit-limit");
    let remaining = number(resp, "x-ratelimit-remaining");
    let reset = number(resp, "x-ratelimit-reset");
    assert!(remaining <= limit, "remaining {remaining} of {limit}");
    // A unix time: not before this test binary started (the server decided it after that),
    // and no later than a full refill (a minute, rounded up) after now.
    let now = unix_now();
    assert!(
        reset >= *STARTED,
        "reset {reset} is not before the tests started ({})",
        *STARTED
    );
    assert!(
        reset <= now + 61,
        "reset {reset} is within a refill (now {now})"
    );
    (limit, remaining, reset)
}

fn create_body(i: usize) -> serde_json::Value {
    json!({ "scopes": ["read"], "description": format!("burst {i}"), "expires_in": "2h" })
}

/// POSTs tokens as `token` until one is refused; returns (accepted before it, the refusal).
async fn write_until_refused(app: &TestApp, token: &str) -> (usize, Response) {
    for i in 0..500 {
        let resp = app
            .request_as(token, Method::POST, "/api/v1/tokens")
            .json(&create_body(i))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            return (i, resp);
        }
        assert_eq!(resp.status(), 201, "write {i}");
    }
    panic!("500 writes were never rate limited");
}

#[tokio::test]
async fn reads_report_a_limit_of_600_with_remaining_counting_down() {
    let app = limited_app().await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let resp = app.get("/api/v1/tokens").await;
        assert_eq!(resp.status(), 200);
        let (limit, remaining, _) = rate_headers(&resp);
        assert_eq!(limit, 600);
        seen.push(remaining);
    }
    assert_eq!(seen[0], 599, "a fresh bucket is full, less this request");
    // The bucket refills 10 a second, so 30 reads drain it unless they took 3 seconds.
    assert!(seen[29] < seen[0], "{seen:?}");
}

#[tokio::test]
async fn writes_report_a_limit_of_60_with_remaining_counting_down() {
    let app = limited_app().await;
    let mut seen = Vec::new();
    for i in 0..10 {
        let resp = app
            .request(Method::POST, "/api/v1/tokens")
            .json(&create_body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let (limit, remaining, _) = rate_headers(&resp);
        assert_eq!(limit, 60);
        seen.push(remaining);
    }
    assert_eq!(seen[0], 59, "a fresh bucket is full, less this request");
    // One token a second refills, so 10 writes drain it unless they took 10 seconds.
    assert!(seen[9] < seen[0], "{seen:?}");
}

#[tokio::test]
async fn every_kind_of_response_carries_the_rate_limit_headers() {
    let app = limited_app().await;
    let responses: Vec<(&str, Response)> = vec![
        ("200", app.get("/api/v1/tokens").await),
        (
            "201",
            app.request(Method::POST, "/api/v1/tokens")
                .json(&create_body(0))
                .send()
                .await
                .unwrap(),
        ),
        ("204", app.delete("/api/v1/tokens/tok_missing").await),
        ("400", app.get("/api/v1/tokens?limit=0").await),
        (
            "401",
            app.client
                .get(app.url("/api/v1/tokens"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "401 bad token",
            app.request_as("qz_wrong", Method::GET, "/api/v1/tokens")
                .send()
                .await
                .unwrap(),
        ),
        ("404", app.get("/api/v1/tokens/tok_missing").await),
        ("404 route", app.get("/api/v1/no-such-route").await),
        ("404 outside", app.get("/no-such-route").await),
        (
            "405",
            app.request(Method::PUT, "/api/v1/tokens")
                .send()
                .await
                .unwrap(),
        ),
        (
            "health",
            app.client
                .get(app.url("/api/v1/health"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "openapi",
            app.client
                .get(app.url("/api/openapi.json"))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, resp) in responses {
        assert!(
            resp.headers().contains_key("x-ratelimit-limit")
                && resp.headers().contains_key("x-ratelimit-remaining")
                && resp.headers().contains_key("x-ratelimit-reset"),
            "{what}: {} {:?}",
            resp.status(),
            resp.headers()
        );
        rate_headers(&resp);
    }
}

#[tokio::test]
async fn rapid_writes_beyond_the_limit_get_429_with_retry_after_and_a_problem() {
    let app = limited_app().await;
    let head_before = app.state.log().head();
    let (accepted, refused) = write_until_refused(&app, &app.token).await;
    // A full minute's quota is available at once (the documented burst).
    assert!(
        accepted >= 60,
        "only {accepted} writes before the first 429"
    );
    let retry_after: u64 = header(&refused, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let (limit, remaining, _) = rate_headers(&refused);
    assert_eq!((limit, remaining), (60, 0));
    let body = assert_problem(refused, 429, "rate_limited").await;
    assert!(
        body["detail"].as_str().unwrap().contains("retry after"),
        "{body}"
    );
    // The refused request wrote nothing: one event per accepted write.
    assert_eq!(app.state.log().head(), head_before + accepted as u64);
}

#[tokio::test]
async fn reads_are_unaffected_by_an_exhausted_write_quota() {
    let app = limited_app().await;
    write_until_refused(&app, &app.token).await;
    let resp = app.get("/api/v1/tokens").await;
    assert_eq!(resp.status(), 200);
    let (limit, remaining, _) = rate_headers(&resp);
    assert_eq!(limit, 600);
    assert!(remaining > 500, "{remaining}");
    // ...while the write quota stays drained (a fresh one would take 60 writes again).
    let (accepted, _) = write_until_refused(&app, &app.token).await;
    assert!(accepted < 60, "{accepted}");
}

#[tokio::test]
async fn the_write_quota_is_shared_by_every_token_of_an_organization() {
    let app = limited_app().await;
    let other = app.token_with(&["write"]).await;
    write_until_refused(&app, &app.token).await;
    // A bucket of its own would let the other token write 60 times.
    let (accepted, refused) = write_until_refused(&app, &other).await;
    assert!(accepted < 60, "{accepted}");
    assert_problem(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn limits_are_per_organization() {
    let app = limited_app().await;
    let (_, other_org_token) = app.second_org("globex").await;
    write_until_refused(&app, &app.token).await;
    let resp = app
        .request_as(&other_org_token, Method::POST, "/api/v1/tokens")
        .json(&create_body(0))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let (limit, remaining, _) = rate_headers(&resp);
    assert_eq!(limit, 60);
    assert!(remaining >= 58, "globex's bucket is its own: {remaining}");
}

#[tokio::test]
async fn raising_an_organizations_limits_lets_more_writes_through_at_once() {
    let app = limited_app().await;
    write_until_refused(&app, &app.token).await;

    quickztna::bootstrap::set_limits(
        &app.state,
        &app.org_id,
        1200,
        1000,
        Actor::console("support raised the limits"),
    )
    .await
    .expect("set limits");
    app.wait_caught_up().await;

    for i in 0..100 {
        let resp = app
            .request(Method::POST, "/api/v1/tokens")
            .json(&create_body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "write {i} after raising the limit");
        let (limit, _, _) = rate_headers(&resp);
        assert_eq!(limit, 1000);
    }
    let resp = app.get("/api/v1/tokens").await;
    assert_eq!(rate_headers(&resp).0, 1200);
}

#[tokio::test]
async fn lowering_an_organizations_limits_takes_effect_on_the_next_request() {
    let app = limited_app().await;
    quickztna::bootstrap::set_limits(
        &app.state,
        &app.org_id,
        600,
        2,
        Actor::console("abuse: limits lowered"),
    )
    .await
    .expect("set limits");
    app.wait_caught_up().await;
    let (accepted, refused) = write_until_refused(&app, &app.token).await;
    // Two a minute: the burst is two writes (plus at most what refilled meanwhile), not sixty.
    assert!(
        (2..10).contains(&accepted),
        "{accepted} writes at 2 a minute"
    );
    assert_eq!(rate_headers(&refused).0, 2);
}
