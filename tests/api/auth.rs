//! Authentication and scopes: who may call what, and how a refusal looks.

use events::event::TokenCreated;
use events::{Actor, AppendRequest, NewEvent};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, header, spawn_app};

const CHALLENGE: &str = r#"Bearer realm="quickztna", error="invalid_token""#;

/// Asserts a 401 problem with the bearer challenge; returns its detail.
async fn assert_unauthenticated(resp: reqwest::Response) -> String {
    assert_eq!(
        header(&resp, "www-authenticate").as_deref(),
        Some(CHALLENGE),
        "WWW-Authenticate"
    );
    let body = assert_problem(resp, 401, "unauthenticated").await;
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap();
    let detail = assert_unauthenticated(resp).await;
    assert!(detail.contains("missing bearer token"), "{detail}");
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let cases = [
        "Bearer".to_owned(),
        format!("Bearer{}", app.token),
        "Bearer ".to_owned(),
        format!("Bearer {}", "x".repeat(300)),
    ];
    for value in cases {
        let resp = app
            .client
            .get(app.url("/api/v1/tokens"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{value:?}");
        assert_unauthenticated(resp).await;
    }
}

#[tokio::test]
async fn a_scheme_other_than_bearer_is_refused_even_with_a_valid_token() {
    let app = spawn_app().await;
    for scheme in ["Basic", "Token", "Digest"] {
        let resp = app
            .client
            .get(app.url("/api/v1/tokens"))
            .header("authorization", format!("{scheme} {}", app.token))
            .send()
            .await
            .unwrap();
        let detail = assert_unauthenticated(resp).await;
        assert!(detail.contains("Bearer"), "{detail}");
    }
}

#[tokio::test]
async fn an_unknown_token_is_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let forged = format!("qz_{}", "A".repeat(43));
    let resp = app
        .request_as(&forged, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    let detail = assert_unauthenticated(resp).await;
    assert_eq!(detail, "the bearer token is invalid");
    // The scheme is case-insensitive, so a lower-case `bearer` with the real token works.
    let resp = app
        .client
        .get(app.url("/api/v1/tokens"))
        .header("authorization", format!("bearer {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_token_scoped_to_devices_cannot_list_or_create_tokens() {
    let app = spawn_app().await;
    let devices = app.token_with(&["devices:read"]).await;
    let resp = app
        .request_as(&devices, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let head = app.state.log().head();
    let resp = app
        .request_as(&devices, Method::POST, "/api/v1/tokens")
        .json(&json!({ "scopes": ["devices:read"], "description": "x", "expires_in": "2h" }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403, "permission_denied").await;
    assert!(
        body["detail"].as_str().unwrap().contains("tokens:write"),
        "{body}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_read_token_can_list_tokens_but_not_create_or_revoke_them() {
    let app = spawn_app().await;
    let read = app.token_with(&["read"]).await;
    let resp = app
        .request_as(&read, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let read_id = app.token_id_of(&read);
    let resp = app
        .request_as(&read, Method::GET, &format!("/api/v1/tokens/{read_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .request_as(&read, Method::POST, "/api/v1/tokens")
        .json(&json!({ "scopes": ["read"], "description": "x", "expires_in": "2h" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let resp = app
        .request_as(&read, Method::DELETE, &format!("/api/v1/tokens/{read_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
}

#[tokio::test]
async fn a_tokens_write_token_can_manage_tokens_within_its_own_scopes() {
    let app = spawn_app().await;
    let manager = app.token_with(&["tokens:write", "devices:read"]).await;
    let resp = app
        .request_as(&manager, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let created = app
        .create_token_as(
            &manager,
            &json!({ "scopes": ["devices:read"], "description": "narrow", "expires_in": "1h" }),
        )
        .await;
    assert_eq!(created["scopes"], json!(["devices:read"]));
}

#[tokio::test]
async fn a_token_cannot_mint_a_broader_token() {
    let app = spawn_app().await;
    let manager = app.token_with(&["tokens:write", "devices:read"]).await;
    let head = app.state.log().head();
    for scopes in [
        json!(["write"]),
        json!(["read"]),
        json!(["devices:write"]),
        json!(["devices:read", "users:read"]),
    ] {
        let resp = app
            .request_as(&manager, Method::POST, "/api/v1/tokens")
            .json(&json!({ "scopes": scopes, "description": "broader", "expires_in": "2h" }))
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 403, "permission_denied").await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("cannot grant scopes it does not hold"),
            "{scopes}: {body}"
        );
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn an_expired_token_is_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    // The API cannot issue a token living less than an hour, so record one that expired a
    // minute ago straight into the log.
    let secret = format!("qz_expired-{}", "e".repeat(32));
    let token_id = "tok_01jexpired0000000000000000".to_owned();
    app.state
        .log()
        .append(AppendRequest {
            org_id: app.org_id.clone(),
            actor: Actor::console("test setup"),
            request_id: "req-expired-token".into(),
            expectations: vec![],
            events: vec![NewEvent::new(
                format!("token:{token_id}"),
                TokenCreated {
                    token_id: token_id.clone(),
                    prefix: secret[..9].to_owned(),
                    secret_hash: quickztna::domain::secret::hash(&secret),
                    scopes: vec!["write".into()],
                    description: "expired a minute ago".into(),
                    expires_at: events::now_micros() - 60 * 1_000_000,
                    parent_token_id: None,
                    user_id: None,
                },
            )],
            idempotency: None,
        })
        .await
        .expect("append");
    app.wait_caught_up().await;

    let resp = app
        .request_as(&secret, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    let detail = assert_unauthenticated(resp).await;
    assert!(detail.contains("expired"), "{detail}");
    // The owner still sees it, as expired.
    let view = crate::helpers::json(app.get(&format!("/api/v1/tokens/{token_id}")).await).await;
    assert_eq!(view["status"], "expired", "{view}");
}

#[tokio::test]
async fn revocation_takes_effect_on_the_very_next_request() {
    let app = spawn_app().await;
    let victim = app.token_with(&["read"]).await;
    let id = app.token_id_of(&victim);
    let resp = app
        .request_as(&victim, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = app.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(resp.status(), 204);
    let resp = app
        .request_as(&victim, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    let detail = assert_unauthenticated(resp).await;
    assert!(detail.contains("revoked"), "{detail}");
}

#[tokio::test]
async fn a_token_can_revoke_itself_and_is_refused_afterwards() {
    let app = spawn_app().await;
    let own = app.token_with(&["write"]).await;
    let id = app.token_id_of(&own);
    let resp = app
        .request_as(&own, Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = app
        .request_as(&own, Method::GET, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_unauthenticated(resp).await;
}

#[tokio::test]
async fn an_expiry_outside_one_hour_to_twelve_months_is_invalid() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let too_soon = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    let cases = [
        json!({ "expires_in": "30m" }),
        json!({ "expires_in": "59m" }),
        json!({ "expires_in": "400d" }),
        json!({ "expires_in": "53w" }),
        json!({ "expires_in": "0s" }),
        json!({ "expires_in": "-1h" }),
        json!({ "expires_in": "1y" }),
        json!({ "expires_at": past.to_string() }),
        json!({ "expires_at": too_soon.to_string() }),
        json!({ "expires_at": "2099-01-01T00:00:00Z" }),
        json!({ "expires_at": "tomorrow" }),
        json!({ "expires_in": "2h", "expires_at": "2099-01-01T00:00:00Z" }),
    ];
    for expiry in cases {
        let mut body = json!({ "scopes": ["read"], "description": "expiry" });
        for (k, v) in expiry.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = app.post("/api/v1/tokens", &body).await;
        assert_eq!(resp.status(), 400, "{expiry}");
        assert_problem(resp, 400, "invalid_argument").await;
    }
    let resp = app
        .post(
            "/api/v1/tokens",
            &json!({ "scopes": ["read"], "description": "both", "expires_in": "2h", "expires_at": "2099-01-01T00:00:00Z" }),
        )
        .await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(
        body["detail"].as_str().unwrap().contains("not both"),
        "{body}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn an_expiry_of_one_hour_up_to_the_issuers_own_is_accepted() {
    let app = spawn_app().await;
    let in_a_day = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    // The owner token lives twelve months (less a minute), the longest a token may: what it
    // issues may live as long as it does, not longer.
    let owner = app.token_id_of(&app.token);
    let owner = crate::helpers::json(app.get(&format!("/api/v1/tokens/{owner}")).await).await;
    for expiry in [
        json!({ "expires_in": "1h" }),
        json!({ "expires_in": "3600s" }),
        json!({ "expires_in": "364d" }),
        json!({ "expires_at": owner["expires_at"] }),
        json!({ "expires_at": in_a_day.to_string() }),
        json!({}),
    ] {
        let mut body = json!({ "scopes": ["read"], "description": "expiry" });
        for (k, v) in expiry.as_object().unwrap() {
            body[k] = v.clone();
        }
        let created = app.create_token_as(&app.token, &body).await;
        assert_eq!(created["status"], "active", "{expiry}");
    }
}
