//! `X-Request-ID`: echoed or generated on every response, validated, and recorded on events.

use events::ActorKind;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, header, json, spawn_app};

#[tokio::test]
async fn a_valid_request_id_is_echoed_on_success_and_in_problem_bodies() {
    let app = spawn_app().await;
    for id in [
        "3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f",
        "01HXY7W3ZQ5N8V0K2C4M6P8R9T",
        "client.trace:42_a-b",
    ] {
        let resp = app
            .request(Method::GET, "/api/v1/tokens")
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-request-id").as_deref(), Some(id));

        let resp = app
            .request(Method::GET, "/api/v1/tokens/tok_missing")
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-request-id").as_deref(), Some(id));
        let body = assert_problem(resp, 404, "not_found").await;
        assert_eq!(body["request_id"], id);
    }
    // Also on a 401 (before authentication) and an unknown route.
    let id = "support-ticket-4711";
    let resp = app
        .client
        .get(app.url("/api/v1/tokens"))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 401, "unauthenticated").await;
    assert_eq!(body["request_id"], id);
    let resp = app
        .client
        .get(app.url("/no/such/route"))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 404, "not_found").await;
    assert_eq!(body["request_id"], id);
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_fresh_ulid() {
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for path in [
        "/api/v1/tokens",
        "/api/v1/health",
        "/api/v1/tokens/tok_missing",
    ] {
        let resp = app.get(path).await;
        let id = header(&resp, "x-request-id").expect("X-Request-ID");
        assert_eq!(id.len(), 26, "{id}");
        assert!(id.parse::<ulid::Ulid>().is_ok(), "{id} is a ULID");
        assert!(seen.insert(id), "ids are unique");
    }
}

#[tokio::test]
async fn an_invalid_request_id_is_refused_with_a_problem_carrying_a_fresh_id() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    for bad in [
        "x".repeat(129),
        "has space".to_owned(),
        "semi;colon".to_owned(),
        "slash/es".to_owned(),
        "quote\"d".to_owned(),
    ] {
        // A mutation, so the test also shows nothing is written.
        let resp = app
            .request(Method::POST, "/api/v1/tokens")
            .header("x-request-id", &bad)
            .json(&json!({ "scopes": ["read"], "description": "x", "expires_in": "2h" }))
            .send()
            .await
            .unwrap();
        let fresh = header(&resp, "x-request-id").expect("X-Request-ID");
        assert_ne!(fresh, bad);
        assert!(fresh.parse::<ulid::Ulid>().is_ok(), "{fresh}");
        let body = assert_problem(resp, 400, "invalid_argument").await;
        assert!(
            body["detail"].as_str().unwrap().contains("X-Request-ID"),
            "{body}"
        );
        assert_eq!(body["instance"], "/api/v1/tokens");
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_request_id_of_128_characters_is_accepted() {
    let app = spawn_app().await;
    let id = "a".repeat(128);
    let resp = app
        .request(Method::GET, "/api/v1/tokens")
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-request-id"), Some(id));
}

#[tokio::test]
async fn the_events_a_request_causes_record_its_id_and_the_token_as_actor() {
    let app = spawn_app().await;
    let creator = app.create_token(&["write"], "terraform runner").await;
    let creator_secret = creator["token"].as_str().unwrap();
    let creator_id = creator["id"].as_str().unwrap();

    let resp = app
        .request_as(creator_secret, Method::POST, "/api/v1/tokens")
        .header("x-request-id", "req-create-0001")
        .json(
            &json!({ "scopes": ["read"], "description": "made by terraform", "expires_in": "1h" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created = json(resp).await;
    let log = app.state.log();
    let last = log.read_backward(log.head(), 1).unwrap();
    let envelope = &last[0].envelope;
    assert_eq!(envelope.event_type, "token.created");
    assert_eq!(
        envelope.stream,
        format!("token:{}", created["id"].as_str().unwrap())
    );
    assert_eq!(envelope.request_id, "req-create-0001");
    assert_eq!(envelope.actor.kind, ActorKind::Token);
    assert_eq!(envelope.actor.id, creator_id);
    assert_eq!(envelope.actor.description, "terraform runner");
    assert_eq!(envelope.org_id, app.org_id);

    // A generated id is recorded too: the one the response carries.
    let resp = app
        .request_as(
            creator_secret,
            Method::DELETE,
            &format!("/api/v1/tokens/{}", created["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let generated = header(&resp, "x-request-id").unwrap();
    let last = log.read_backward(log.head(), 1).unwrap();
    let envelope = &last[0].envelope;
    assert_eq!(envelope.event_type, "token.revoked");
    assert_eq!(envelope.request_id, generated);
    assert_eq!(envelope.actor.id, creator_id);
    assert_eq!(envelope.actor.description, "terraform runner");
}
