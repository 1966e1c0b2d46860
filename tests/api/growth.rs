//! What bounds an organization's growth: a device cap by plan, so a leaked reusable key cannot
//! fill the address space.

use events::event::Plan;
use serde_json::json;

use crate::helpers::{AppOptions, assert_problem, spawn_app_with};
use crate::machine::{device_count, key_secret, register, register_body, register_raw};

#[tokio::test]
async fn a_leaked_reusable_key_fills_an_organization_only_up_to_its_plans_device_cap() {
    let app = spawn_app_with(AppOptions {
        plan: Plan::Free,
        unlimited: true,
        ..Default::default()
    })
    .await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let mut last = None;
    for n in 0..100 {
        last = Some(register(&app, &key, &format!("host-{n}")).await);
    }
    let head = app.state.log().head();
    let problem = assert_problem(
        register_raw(&app, &register_body(&key, "one-too-many")).await,
        403,
        "plan_required",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("100") && detail.contains("free"),
        "{detail}"
    );
    assert_eq!(app.state.log().head(), head, "nothing written");
    assert_eq!(device_count(&app), 100);

    // Removing one makes room for one.
    let id = last.unwrap()["device"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{id}")).await.status(),
        204
    );
    register(&app, &key, "replacement").await;
    assert_eq!(device_count(&app), 100);
}
