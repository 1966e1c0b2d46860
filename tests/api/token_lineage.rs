//! A token and the tokens it issues: none outlives its parent, each records its parent, and
//! revoking a token revokes what it issued, and theirs, in one append.

use events::event::{TokenCreated, TokenRevoked};
use events::{Actor, ActorKind, AppendRequest, Event, NewEvent};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};

/// `issuer` mints a token of these scopes and lifetime; returns the created token.
async fn mint(app: &TestApp, issuer: &str, scopes: &[&str], expires_in: &str) -> Value {
    app.create_token_as(
        issuer,
        &json!({ "scopes": scopes, "description": format!("{scopes:?} for {expires_in}"), "expires_in": expires_in }),
    )
    .await
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.request_as(token, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .expect("GET /tokens")
        .status()
        .as_u16()
}

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

#[tokio::test]
async fn a_one_hour_token_cannot_mint_a_token_that_outlives_it() {
    let app = spawn_app().await;
    let parent = mint(&app, &app.token, &["read", "tokens:write"], "1h").await;
    let secret = parent["token"].as_str().unwrap();
    let head = app.state.log().head();
    for expiry in [
        json!({ "expires_in": "365d" }),
        json!({ "expires_in": "2h" }),
        json!({ "expires_at": (time(&parent["expires_at"]) + jiff::SignedDuration::from_secs(1)).to_string() }),
    ] {
        let mut body = json!({ "scopes": ["read"], "description": "outlives" });
        for (k, v) in expiry.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = app
            .request_as(secret, Method::POST, "/api/v1/tokens")
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("cannot outlive the token that issues it"),
            "{expiry}: {detail}"
        );
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");

    // Without an expiry, the default 90 days end when the parent does.
    let child = app
        .create_token_as(
            secret,
            &json!({ "scopes": ["read"], "description": "default" }),
        )
        .await;
    assert_eq!(child["expires_at"], parent["expires_at"], "{child}");
    // Up to the parent's own expiry is fine.
    let child = app
        .create_token_as(
            secret,
            &json!({ "scopes": ["read"], "description": "as long", "expires_at": parent["expires_at"] }),
        )
        .await;
    assert_eq!(child["expires_at"], parent["expires_at"]);
}

#[tokio::test]
async fn a_minted_token_records_its_parent_in_its_event_and_its_view() {
    let app = spawn_app().await;
    let owner_id = app.token_id_of(&app.token);
    let parent = mint(&app, &app.token, &["read", "tokens:write"], "2h").await;
    let child = mint(&app, parent["token"].as_str().unwrap(), &["read"], "1h").await;
    assert_eq!(parent["parent_id"], owner_id.as_str());
    assert_eq!(child["parent_id"], parent["id"]);
    let owner = json(app.get(&format!("/api/v1/tokens/{owner_id}")).await).await;
    assert!(
        owner["parent_id"].is_null(),
        "issued at the console: {owner}"
    );
    let listed = json(
        app.get(&format!("/api/v1/tokens/{}", child["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(listed["parent_id"], parent["id"]);

    let records = app.state.log().read_forward(1, 10_000).unwrap();
    let recorded = records
        .iter()
        .find_map(|r| match &r.event {
            Event::TokenCreated(e) if e.token_id == child["id"].as_str().unwrap() => Some(e),
            _ => None,
        })
        .expect("the child's token.created");
    assert_eq!(
        recorded.parent_token_id.as_deref(),
        parent["id"].as_str(),
        "the event names the parent"
    );
}

#[tokio::test]
async fn revoking_a_token_revokes_what_it_minted_and_theirs_in_one_append() {
    let app = spawn_app().await;
    let a = mint(&app, &app.token, &["read", "tokens:write"], "3h").await;
    let b = mint(
        &app,
        a["token"].as_str().unwrap(),
        &["read", "tokens:write"],
        "2h",
    )
    .await;
    let c = mint(&app, b["token"].as_str().unwrap(), &["read"], "1h").await;
    let sibling = mint(&app, &app.token, &["read"], "3h").await;
    for t in [&a, &b, &c, &sibling] {
        assert_eq!(status_with(&app, t["token"].as_str().unwrap()).await, 200);
    }

    let head = app.state.log().head();
    let resp = app
        .delete(&format!("/api/v1/tokens/{}", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(resp.status(), 204);

    for t in [&a, &b, &c] {
        let secret = t["token"].as_str().unwrap();
        assert_eq!(status_with(&app, secret).await, 401, "{}", t["id"]);
        let view = json(
            app.get(&format!("/api/v1/tokens/{}", t["id"].as_str().unwrap()))
                .await,
        )
        .await;
        assert_eq!(view["status"], "revoked", "{view}");
    }
    assert_eq!(
        status_with(&app, sibling["token"].as_str().unwrap()).await,
        200,
        "a token the revoked one did not mint keeps working"
    );

    // One append: three revocations at consecutive positions, with one request id.
    let appended = app.state.log().read_forward(head + 1, 100).unwrap();
    let revoked: Vec<&str> = appended
        .iter()
        .map(|r| match &r.event {
            Event::TokenRevoked(e) => e.token_id.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let ids: Vec<&str> = [&a, &b, &c]
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ids);
    assert!(
        appended
            .iter()
            .all(|r| r.envelope.request_id == appended[0].envelope.request_id)
    );

    // Revoking again changes nothing.
    let resp = app
        .delete(&format!("/api/v1/tokens/{}", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.state.log().head(), head + 3);
}

/// Appends straight to the log what an older server recorded: a token issued by `parent`
/// with no parent named (a v1 record names none; its actor is the parent), or a revocation
/// without the tokens it issued.
async fn append_as_before(app: &TestApp, parent: &Value, event: Event) {
    app.state
        .log()
        .append(AppendRequest {
            org_id: app.org_id.clone(),
            actor: Actor {
                kind: ActorKind::Token,
                id: parent["id"].as_str().unwrap().to_owned(),
                description: "an older server".into(),
            },
            request_id: "req-before-parents".into(),
            expectations: vec![],
            events: vec![NewEvent::new(event.subject(), event)],
            idempotency: None,
        })
        .await
        .expect("append");
    app.wait_caught_up().await;
}

#[tokio::test]
async fn tokens_issued_before_parents_were_recorded_fall_with_their_issuer() {
    let app = spawn_app().await;
    let parent = mint(&app, &app.token, &["read", "tokens:write"], "3h").await;
    let secret = "qz_issued-before-parents-were-recorded-000000";
    let child_id = "tok_01jbeforeparents0000000000";
    append_as_before(
        &app,
        &parent,
        TokenCreated {
            token_id: child_id.into(),
            prefix: secret[..9].to_owned(),
            secret_hash: quickztna::domain::secret::hash(secret),
            scopes: vec!["read".into()],
            description: "old child".into(),
            expires_at: events::now_micros() + 3_600_000_000,
            parent_token_id: None,
            user_id: None,
        }
        .into(),
    )
    .await;
    let view = json(app.get(&format!("/api/v1/tokens/{child_id}")).await).await;
    assert_eq!(view["parent_id"], parent["id"], "the actor was its parent");
    assert_eq!(status_with(&app, secret).await, 200);

    // The parent's revocation as an older server recorded it: the child's was not.
    append_as_before(
        &app,
        &parent,
        TokenRevoked {
            token_id: parent["id"].as_str().unwrap().into(),
        }
        .into(),
    )
    .await;
    assert_eq!(status_with(&app, secret).await, 401, "refused all the same");
    let view = json(app.get(&format!("/api/v1/tokens/{child_id}")).await).await;
    assert_eq!(view["status"], "revoked", "and shown so: {view}");

    // Revoking the parent again records the child's revocation.
    let head = app.state.log().head();
    let resp = app
        .delete(&format!(
            "/api/v1/tokens/{}",
            parent["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(resp.status(), 204);
    let appended = app.state.log().read_forward(head + 1, 10).unwrap();
    assert!(
        matches!(&appended[..], [r] if matches!(&r.event, Event::TokenRevoked(e) if e.token_id == child_id)),
        "{appended:?}"
    );
}
