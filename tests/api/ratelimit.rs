//! Per-organization rate limits: 600 reads and 60 writes a minute, reported on every response.

use events::Actor;
use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app_with};

async fn limited_app() -> TestApp {
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
    // A unix time no earlier than now, and within the minute it takes to refill (plus slack
    // for the seconds this test itself may take).
    let now = unix_now();
    assert!(reset + 1 >= now, "reset {reset} is not in the past (now {now})");
    assert!(reset <= now + 120, "reset {reset} is within a refill (now {now})");
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
    let mut previous = None;
    for _ in 0..5 {
        let resp = app.get("/api/v1/tokens").await;
        assert_eq!(resp.status(), 200);
        let (limit, remaining, _) = rate_headers(&resp);
        assert_eq!(limit, 600);
        if let Some(previous) = previous {
            assert!(remaining < previous, "{remaining} after {previous}");
        } else {
            assert!(remaining >= 595, "a fresh bucket is (nearly) full: {remaining}");
        }
        previous = Some(remaining);
    }
}

#[tokio::test]
async fn writes_report_a_limit_of_60_with_remaining_counting_down() {
    let app = limited_app().await;
    let mut previous = None;
    for i in 0..3 {
        let resp = app
            .request(Method::POST, "/api/v1/tokens")
            .json(&create_body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let (limit, remaining, _) = rate_headers(&resp);
        assert_eq!(limit, 60);
        if let Some(previous) = previous {
            // A token refills every second; a write takes one, so it never goes up by more
            // than what refilled.
            assert!(remaining <= previous, "{remaining} after {previous}");
        }
        previous = Some(remaining);
    }
    assert!(previous.unwrap() < 60);
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
    assert!(accepted >= 60, "only {accepted} writes before the first 429");
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
    // ...while writes stay refused.
    let resp = app.delete("/api/v1/tokens/tok_missing").await;
    assert_problem(resp, 429, "rate_limited").await;
}

#[tokio::test]
async fn the_write_quota_is_shared_by_every_token_of_an_organization() {
    let app = limited_app().await;
    let other = app.token_with(&["write"]).await;
    write_until_refused(&app, &app.token).await;
    let resp = app
        .request_as(&other, Method::POST, "/api/v1/tokens")
        .json(&create_body(0))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 429, "rate_limited").await;
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

    let models = app.state.models().load();
    quickztna::bootstrap::set_limits(
        app.state.log(),
        &models.state,
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
    let models = app.state.models().load();
    quickztna::bootstrap::set_limits(
        app.state.log(),
        &models.state,
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
    assert!((2..10).contains(&accepted), "{accepted} writes at 2 a minute");
    assert_eq!(rate_headers(&refused).0, 2);
}
