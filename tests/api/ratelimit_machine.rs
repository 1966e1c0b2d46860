//! The device API's budgets: registrations per organization apart from the API's writes,
//! failed registrations per client address, heartbeats per device.

use events::Actor;
use events::event::Plan;
use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app_with};
use crate::machine::{create_key, heartbeat, register, register_body, register_raw};

async fn limited_app(plan: Plan) -> TestApp {
    spawn_app_with(AppOptions {
        plan,
        unlimited: false,
        ..Default::default()
    })
    .await
}

fn limit(resp: &Response) -> String {
    header(resp, "x-ratelimit-limit").expect("X-RateLimit-Limit")
}

async fn owner_write(app: &TestApp) -> Response {
    app.request(Method::POST, "/api/v1/tokens")
        .json(&json!({ "scopes": ["read"], "description": "admin", "expires_in": "2h" }))
        .send()
        .await
        .expect("POST /tokens")
}

#[tokio::test]
async fn registrations_with_a_revoked_key_do_not_stop_the_owner_from_writing() {
    let app = limited_app(Plan::Workforce).await;
    let key = create_key(&app, json!({ "reusable": true })).await;
    let secret = key["key"].as_str().unwrap();
    let resp = app
        .delete(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()))
        .await;
    assert_eq!(resp.status(), 204);
    // The key sat in every server's user-data: anyone may hold it.
    let mut refused = None;
    for i in 0..100 {
        let resp = register_raw(&app, &register_body(secret, &format!("h{i}"))).await;
        if resp.status() == 429 {
            refused = Some(i);
            break;
        }
        assert_problem(resp, 401, "unauthenticated").await;
    }
    let refused = refused.expect("failed registrations are throttled per address");
    assert!(refused >= 60, "{refused}");
    let resp = owner_write(&app).await;
    assert_eq!(resp.status(), 201, "the admins' writes are untouched");
    let remaining: u32 = header(&resp, "x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining >= 55, "{remaining}");
}

#[tokio::test]
async fn a_fleet_rollout_does_not_use_the_admins_write_quota() {
    let app = limited_app(Plan::Workforce).await;
    let secret = crate::machine::key_secret(&app, json!({ "reusable": true })).await;
    for i in 0..70 {
        let resp = register_raw(&app, &register_body(&secret, &format!("web-{i}"))).await;
        assert_eq!(resp.status(), 201, "registration {i}");
        assert_eq!(
            limit(&resp),
            "1200",
            "the workforce plan's registrations budget"
        );
    }
    let mut accepted = 0;
    while owner_write(&app).await.status() == 201 {
        accepted += 1;
        assert!(accepted <= 60);
    }
    assert!(accepted >= 58, "the owner had {accepted} writes left");
}

#[tokio::test]
async fn the_registrations_budget_follows_the_plan_and_set_limits() {
    let app = limited_app(Plan::Free).await;
    let secret = crate::machine::key_secret(&app, json!({ "reusable": true })).await;
    let resp = register_raw(&app, &register_body(&secret, "first")).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(limit(&resp), "120");

    let limits = quickztna::bootstrap::Limits {
        register_per_min: Some(3),
        ..Default::default()
    };
    let set = quickztna::bootstrap::change_limits(
        &app.state,
        &app.org_id,
        limits,
        Actor::console("a small fleet"),
    )
    .await
    .expect("set the budget");
    assert_eq!(
        (set.read_per_min, set.write_per_min),
        (600, 60),
        "unchanged"
    );
    app.wait_caught_up().await;
    for i in 0..3 {
        let resp = register_raw(&app, &register_body(&secret, &format!("h{i}"))).await;
        assert_eq!(resp.status(), 201, "registration {i}");
        assert_eq!(limit(&resp), "3");
    }
    let resp = register_raw(&app, &register_body(&secret, "one-too-many")).await;
    assert!(header(&resp, "retry-after").is_some());
    assert_problem(resp, 429, "rate_limited").await;
    assert_eq!(owner_write(&app).await.status(), 201);
}

#[tokio::test]
async fn heartbeats_are_limited_per_device_and_spare_everyone_else() {
    let app = limited_app(Plan::Workforce).await;
    let secret = crate::machine::key_secret(&app, json!({ "reusable": true })).await;
    let noisy = register(&app, &secret, "noisy").await;
    let quiet = register(&app, &secret, "quiet").await;
    let noisy = noisy["node_credential"].as_str().unwrap();
    let mut sent = 0;
    loop {
        let resp = heartbeat(&app, noisy, &json!({})).await;
        if resp.status() == 429 {
            break;
        }
        assert_eq!(resp.status(), 200);
        assert_eq!(limit(&resp), "120");
        sent += 1;
        assert!(sent <= 130, "a device's heartbeats are limited");
    }
    let quiet = quiet["node_credential"].as_str().unwrap();
    assert_eq!(heartbeat(&app, quiet, &json!({})).await.status(), 200);
    assert_eq!(owner_write(&app).await.status(), 201);
}
