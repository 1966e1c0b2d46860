//! Buckets of unauthenticated clients: per purpose (health, public routes, failed logins), per
//! address with IPv6 by /64, and behind a trusted proxy per forwarded address.

use quickztna::http::ratelimit::{TrustedProxies, parse_trusted_proxy};
use quickztna::state::Settings;
use reqwest::{Method, Response};

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app, spawn_app_with};

/// A server that believes `X-Forwarded-For` from loopback, where the tests connect from.
async fn behind_a_proxy() -> TestApp {
    spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.trusted_proxies =
                TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.0/8").unwrap()]);
        }),
        ..Default::default()
    })
    .await
}

/// A request with a wrong bearer token, as forwarded for `client` when given.
async fn bad_login(app: &TestApp, method: Method, client: Option<&str>) -> Response {
    let mut req = app.request_as("qz_wrong", method, "/api/v1/tokens");
    if let Some(client) = client {
        req = req.header("x-forwarded-for", client);
    }
    req.send().await.expect("request")
}

/// Sends bad logins until one is refused; returns how many got their 401 first.
async fn bad_logins_until_refused(app: &TestApp, method: Method, client: Option<&str>) -> usize {
    for i in 0..2000 {
        let resp = bad_login(app, method.clone(), client).await;
        if resp.status() == 429 {
            assert!(header(&resp, "retry-after").is_some());
            return i;
        }
        assert_eq!(resp.status(), 401, "bad login {i}");
    }
    panic!("2000 bad logins were never rate limited");
}

#[tokio::test]
async fn a_burst_of_bad_tokens_does_not_make_health_answer_429() {
    let app = spawn_app().await;
    // GETs: the class /health is in.
    let refused_after = bad_logins_until_refused(&app, Method::GET, None).await;
    assert!(refused_after >= 600, "{refused_after}");
    for path in ["/api/v1/health", "/api/v1/version", "/api/openapi.json"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} after a burst of bad tokens");
        let remaining: u32 = header(&resp, "x-ratelimit-remaining")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining >= 590,
            "{path} draws on a bucket the logins did not drain"
        );
    }
}

#[tokio::test]
async fn health_checks_have_a_bucket_apart_from_the_other_public_routes() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let resp = app.client.get(app.url("/api/v1/version")).send().await;
        assert_eq!(resp.unwrap().status(), 200);
    }
    let resp = app.client.get(app.url("/api/v1/health")).send().await;
    assert_eq!(
        header(&resp.unwrap(), "x-ratelimit-remaining").as_deref(),
        Some("599")
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app().await;
    bad_logins_until_refused(&app, Method::POST, Some("198.51.100.1")).await;
    // Without --trusted-proxy anyone could name a fresh address in the header per request.
    let resp = bad_login(&app, Method::POST, Some("198.51.100.2")).await;
    assert_problem(resp, 429, "rate_limited").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let app = behind_a_proxy().await;
    let refused_after = bad_logins_until_refused(&app, Method::POST, Some("198.51.100.1")).await;
    assert!(refused_after >= 60, "{refused_after}");
    let resp = bad_login(&app, Method::POST, Some("198.51.100.2")).await;
    assert_eq!(resp.status(), 401, "another client behind the same proxy");
    // The client cannot escape its bucket by writing addresses into the header itself: the
    // proxy appends the one it saw, and that right-most untrusted one counts.
    let resp = bad_login(&app, Method::POST, Some("203.0.113.77, 198.51.100.1")).await;
    assert_problem(resp, 429, "rate_limited").await;
    // The proxy's own requests (no header) are its own client.
    let resp = bad_login(&app, Method::POST, None).await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_bucket() {
    let app = behind_a_proxy().await;
    bad_logins_until_refused(&app, Method::POST, Some("2001:db8:1:2::1")).await;
    // Another address of the same /64: the same host, for all we can tell.
    let resp = bad_login(&app, Method::POST, Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).await;
    assert_problem(resp, 429, "rate_limited").await;
    let resp = bad_login(&app, Method::POST, Some("2001:db8:1:3::1")).await;
    assert_eq!(resp.status(), 401, "the next /64 is someone else");
}
