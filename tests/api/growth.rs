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

/// Removed devices, revoked and expired keys and tokens leave the read models after the
/// retention window, through events (so a replay agrees); live things stay.
#[tokio::test]
async fn what_is_gone_longer_than_the_retention_window_leaves_the_read_models() {
    use quickztna::domain::retention::RETENTION_MICROS;
    use quickztna::workers::retention::purge_once;

    let app = spawn_app_with(AppOptions::default()).await;
    let revoked_key = crate::machine::create_key(&app, json!({ "reusable": true })).await;
    let revoked_key_id = revoked_key["id"].as_str().unwrap().to_owned();
    let secret = revoked_key["key"].as_str().unwrap().to_owned();
    let gone = register(&app, &secret, "gone").await["device"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = register(&app, &secret, "kept").await["device"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{gone}"))
            .await
            .status(),
        204
    );
    assert!(
        app.delete(&format!("/api/v1/keys/{revoked_key_id}"))
            .await
            .status()
            .is_success()
    );
    let token = crate::helpers::json(
        app.post(
            "/api/v1/tokens",
            &json!({ "scopes": ["read"], "description": "ci", "expires_in": "2h" }),
        )
        .await,
    )
    .await;
    let token_id = token["id"].as_str().unwrap().to_owned();
    assert!(
        app.delete(&format!("/api/v1/tokens/{token_id}"))
            .await
            .status()
            .is_success()
    );
    let kept_key = crate::machine::create_key(&app, json!({ "expires_in": "90d" })).await;
    let kept_key_id = kept_key["id"].as_str().unwrap().to_owned();
    let now = events::now_micros();

    assert_eq!(
        purge_once(&app.state, now).await.unwrap(),
        0,
        "nothing is due yet"
    );
    let later = now + RETENTION_MICROS + 3_600_000_000;
    let purged = purge_once(&app.state, later).await.unwrap();
    assert_eq!(
        purged, 3,
        "the removed device, the revoked key and the revoked token"
    );
    assert_eq!(purge_once(&app.state, later).await.unwrap(), 0, "done once");

    let models = app.state.models().load();
    assert!(models.state.devices.get(&gone).is_none());
    assert!(models.state.devices.get(&kept).is_some());
    assert!(models.state.keys.by_id.get(&revoked_key_id).is_none());
    assert!(models.state.keys.by_id.get(&kept_key_id).is_some());
    assert!(models.state.tokens.by_id.get(&token_id).is_none());
    assert_eq!(models.state.tokens.by_id.len(), 1, "the owner token stays");
    drop(models);
    let keys = crate::helpers::json(app.get("/api/v1/keys").await).await;
    let ids: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![kept_key_id.as_str()]);
    assert_eq!(
        app.get(&format!("/api/v1/devices/{kept}")).await.status(),
        200
    );
    // Within the window a repeated DELETE answered 204; a purged id is unknown.
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{gone}"))
            .await
            .status(),
        404
    );

    // The purges are events: a replay of the log agrees with the running read models.
    let replayed: projections::Models = projections::replay(app.state.log()).unwrap().0;
    assert!(
        replayed == app.state.models().load().state,
        "replay equals the read models"
    );
}
