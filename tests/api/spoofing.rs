//! Text that spoofs (bidirectional controls, zero-width characters) is refused in every
//! free-text field; problems repeat at most a bounded, escaped piece of the input; a device's
//! public key is checked and unique among the organization's devices that can authenticate.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, json, public_key, spawn_app};
use crate::machine::{device_count, heartbeat, key_secret, register, register_raw};

const SPOOFS: [&str; 4] = [
    "adm\u{200B}in",
    "invoice\u{202E}fdp.exe",
    "\u{2066}rtl\u{2069}",
    "zero\u{FEFF}width",
];

#[tokio::test]
async fn every_free_text_field_refuses_invisible_and_bidirectional_characters() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    let device = register(&app, &key, "web-1").await;
    let id = device["device"]["id"].as_str().unwrap().to_owned();
    let credential = device["node_credential"].as_str().unwrap().to_owned();
    let head = app.state.log().head();
    for spoof in SPOOFS {
        let mut refused = vec![
            (
                "key description",
                app.post("/api/v1/keys", &json!({ "description": spoof }))
                    .await,
            ),
            (
                "key owner",
                app.post(
                    "/api/v1/keys",
                    &json!({ "owner": format!("{spoof}@example.com") }),
                )
                .await,
            ),
            (
                "token description",
                app.post(
                    "/api/v1/tokens",
                    &json!({ "scopes": ["read"], "description": spoof, "expires_in": "2h" }),
                )
                .await,
            ),
            (
                "device owner",
                app.request(Method::PATCH, &format!("/api/v1/devices/{id}"))
                    .json(&json!({ "owner": format!("{spoof}@example.com") }))
                    .send()
                    .await
                    .unwrap(),
            ),
            (
                "heartbeat os_version",
                heartbeat(&app, &credential, &json!({ "os_version": spoof })).await,
            ),
        ];
        let mut body = crate::machine::register_body(&key, "web-2");
        body["os"] = json!(spoof);
        refused.push(("registration os", register_raw(&app, &body).await));
        for (field, resp) in refused {
            let problem = assert_problem(resp, 400, "invalid_argument").await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("invisible"), "{field}: {detail}");
            assert!(
                !detail.chars().any(quickztna::domain::text::is_invisible),
                "{field}: the problem does not repeat the character: {detail:?}"
            );
        }
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
    // Ordinary non-ASCII text is fine.
    let resp = app
        .post("/api/v1/keys", &json!({ "description": "Café ❤️ 日本" }))
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn problems_repeat_a_bounded_piece_of_the_input() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({})).await;
    let huge = "a".repeat(200_000);
    let mut body = crate::machine::register_body(&key, &huge);
    let mut attempts = vec![register_raw(&app, &body).await];
    body["hostname"] = json!("web-1");
    body[huge.as_str()] = json!(1);
    attempts.push(register_raw(&app, &body).await);
    attempts.push(
        app.get(&format!("/api/v1/devices?filter=tag:{}", &huge[..4000]))
            .await,
    );
    attempts.push(
        app.post(
            "/api/v1/tokens",
            &json!({ "scopes": [huge.as_str()], "description": "x", "expires_in": "2h" }),
        )
        .await,
    );
    attempts.push(
        app.post(
            "/api/v1/keys",
            &json!({ "expires_in": format!("{}\u{202E}", &huge[..5000]) }),
        )
        .await,
    );
    for resp in attempts {
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.chars().count() <= 513, "{} chars", detail.len());
        assert!(!detail.contains('\u{202E}'), "{detail}");
    }
    assert_eq!(device_count(&app), 0);
}

#[tokio::test]
async fn a_public_key_is_checked_and_held_by_one_device_that_can_authenticate() {
    let app = spawn_app().await;
    let key = key_secret(&app, json!({ "reusable": true })).await;
    for bad in ["pk", "not base64 at all, but 44 characters long!!", "AAAA"] {
        let mut body = crate::machine::register_body(&key, "web-1");
        body["public_key"] = json!(bad);
        let problem =
            assert_problem(register_raw(&app, &body).await, 400, "invalid_argument").await;
        assert!(problem["detail"].as_str().unwrap().contains("public_key"));
    }
    assert_eq!(device_count(&app), 0);

    let shared = public_key();
    let mut body = crate::machine::register_body(&key, "web-1");
    body["public_key"] = json!(shared);
    let first = register_raw(&app, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = json(first).await;
    let first_id = first["device"]["id"].as_str().unwrap().to_owned();
    body["hostname"] = json!("web-2");
    let problem = assert_problem(register_raw(&app, &body).await, 409, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains(&first_id),
        "{problem}"
    );
    assert_eq!(device_count(&app), 1);

    // Once the holder's key is expired it cannot authenticate: registering again with the
    // same public key replaces it, in one append.
    let resp = app
        .post(
            &format!("/api/v1/devices/{first_id}/expire-key"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let again = register_raw(&app, &body).await;
    assert_eq!(again.status(), 201);
    let old = app.get(&format!("/api/v1/devices/{first_id}")).await;
    assert_eq!(old.status(), 404, "the expired device was removed");
    assert_eq!(device_count(&app), 1);

    // Another organization may hold the same key.
    let (_, other_token) = app.second_org("other").await;
    let other_key = app
        .request_as(&other_token, Method::POST, "/api/v1/keys")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let other_key: Value = json(other_key).await;
    let mut body = crate::machine::register_body(other_key["key"].as_str().unwrap(), "web-1");
    body["public_key"] = json!(shared);
    assert_eq!(register_raw(&app, &body).await.status(), 201);
}
