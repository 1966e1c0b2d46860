//! Every class of bad input gets a complete RFC 7807 problem, and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, header, spawn_app};

/// POSTs raw bytes to /tokens with this content type as the owner.
async fn post_raw(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = app.request(Method::POST, "/api/v1/tokens");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(body).send().await.unwrap()
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap()
}

#[tokio::test]
async fn malformed_json_is_an_invalid_argument_problem() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let resp = post_raw(
        &app,
        Some("application/json"),
        br#"{"scopes": ["read"], "description": }"#.to_vec(),
    )
    .await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(
        detail(&body).starts_with("request body is not valid JSON"),
        "{body}"
    );
    assert!(detail(&body).contains("line 1 column"), "{body}");
    assert_eq!(body["instance"], "/api/v1/tokens");

    let resp = post_raw(&app, Some("application/json"), Vec::new()).await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(detail(&body).contains("empty"), "{body}");
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named_in_the_problem() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    for (body, field) in [
        (json!({ "scopes": "read", "description": "x" }), "scopes"),
        (json!({ "scopes": [1], "description": "x" }), "scopes[0]"),
        (
            json!({ "scopes": ["read"], "description": 5 }),
            "description",
        ),
        (json!(["read"]), "invalid type"),
    ] {
        let resp = app.post("/api/v1/tokens", &body).await;
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        assert!(
            detail(&problem).starts_with("invalid request body"),
            "{problem}"
        );
        assert!(detail(&problem).contains(field), "{field}: {problem}");
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn an_unknown_field_is_refused_and_named() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let resp = app
        .post(
            "/api/v1/tokens",
            &json!({ "scopes": ["read"], "description": "x", "admin": true }),
        )
        .await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(detail(&body).contains("unknown field `admin`"), "{body}");
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_missing_field_is_refused_and_named() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let resp = app
        .post("/api/v1/tokens", &json!({ "scopes": ["read"] }))
        .await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(
        detail(&body).contains("missing field `description`"),
        "{body}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn invalid_field_values_are_refused_and_named() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    for (body, needle) in [
        (json!({ "scopes": [], "description": "x" }), "scopes"),
        (json!({ "scopes": ["root"], "description": "x" }), "root"),
        (
            json!({ "scopes": ["read"], "description": "" }),
            "description",
        ),
        (
            json!({ "scopes": ["read"], "description": "a".repeat(201) }),
            "description",
        ),
        (
            json!({ "scopes": ["read"], "description": "line\nbreak" }),
            "control characters",
        ),
    ] {
        let resp = app.post("/api/v1/tokens", &body).await;
        let problem = assert_problem(resp, 400, "invalid_argument").await;
        assert!(detail(&problem).contains(needle), "{needle}: {problem}");
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_an_invalid_argument_problem() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let resp = post_raw(
        &app,
        Some("application/json"),
        b"{\"scopes\":[\"read\"],\"description\":\"\xff\xfe\"}".to_vec(),
    )
    .await;
    assert_problem(resp, 400, "invalid_argument").await;
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_unsupported_media_type() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let valid = br#"{"scopes":["read"],"description":"x","expires_in":"2h"}"#.to_vec();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
    ] {
        let resp = post_raw(&app, content_type, valid.clone()).await;
        let body = assert_problem(resp, 415, "unsupported_media_type").await;
        assert!(detail(&body).contains("application/json"), "{body}");
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_payload_too_large() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    let padding = "a".repeat(1024 * 1024);
    let body = format!(r#"{{"scopes":["read"],"description":"{padding}"}}"#);
    let resp = post_raw(&app, Some("application/json"), body.into_bytes()).await;
    assert_problem(resp, 413, "payload_too_large").await;
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_read_and_judged_on_its_content() {
    let app = spawn_app().await;
    // Just under 1 MiB: read in full, then refused for its (too long) description, not its size.
    let padding = "a".repeat(1024 * 1024 - 100);
    let body = format!(r#"{{"scopes":["read"],"description":"{padding}"}}"#);
    let resp = post_raw(&app, Some("application/json"), body.into_bytes()).await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(detail(&body).contains("description"), "{body}");
}

#[tokio::test]
async fn an_unknown_route_is_a_not_found_problem() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/nope",
        "/nope",
        "/api/v2/tokens",
        "/api/v1/tokens/a/b",
    ] {
        let resp = app.get(path).await;
        let body = assert_problem(resp, 404, "not_found").await;
        assert_eq!(body["instance"], path);
    }
    // Without a token too: an unknown path is not an authentication question.
    let resp = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_is_a_method_not_allowed_problem_listing_the_allowed_ones() {
    let app = spawn_app().await;
    let head = app.state.log().head();
    for (method, path, expected) in [
        (Method::PUT, "/api/v1/tokens", &["GET", "POST"][..]),
        (Method::PATCH, "/api/v1/tokens", &["GET", "POST"][..]),
        (Method::POST, "/api/v1/tokens/tok_x", &["GET", "DELETE"][..]),
        (Method::DELETE, "/api/v1/health", &["GET"][..]),
    ] {
        let resp = app.request(method.clone(), path).send().await.unwrap();
        let allow = header(&resp, "allow").unwrap_or_else(|| panic!("{method} {path}: Allow"));
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for m in expected {
            assert!(allowed.contains(m), "{method} {path}: Allow {allow}");
        }
        assert!(!allowed.contains(&method.as_str()), "{allow}");
        let body = assert_problem(resp, 405, "method_not_allowed").await;
        assert!(detail(&body).contains(method.as_str()), "{body}");
        assert_eq!(body["instance"], path);
    }
    assert_eq!(app.state.log().head(), head, "nothing was written");
}

#[tokio::test]
async fn bad_query_parameters_are_invalid_argument_problems() {
    let app = spawn_app().await;
    for (query, needle) in [
        ("foo=1", "unknown field `foo`"),
        ("limit=abc", "limit must be an integer from 1 to 200"),
        ("limit=0", "limit must be an integer from 1 to 200"),
        ("limit=201", "limit must be an integer from 1 to 200"),
        ("limit=-1", "limit must be an integer from 1 to 200"),
        ("limit=1.5", "limit must be an integer from 1 to 200"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let resp = app.get(&format!("/api/v1/tokens?{query}")).await;
        let body = assert_problem(resp, 400, "invalid_argument").await;
        assert!(detail(&body).contains(needle), "{query}: {body}");
        assert_eq!(body["instance"], "/api/v1/tokens");
    }
}

#[tokio::test]
async fn a_bad_filter_is_refused_naming_the_offending_key_or_term() {
    let app = spawn_app().await;
    for (filter, needle) in [
        ("colour:blue", "unknown filter key 'colour'"),
        ("status:active+colour:blue", "unknown filter key 'colour'"),
        ("status:active,colour:blue", "unknown filter key 'colour'"),
        (
            "status:sleeping",
            "status must be active, expired or revoked",
        ),
        ("active", "has no ':'"),
        ("status:", "empty value"),
        (":active", "empty key"),
        ("status:active,,status:revoked", "empty filter term"),
    ] {
        let resp = app
            .request(Method::GET, "/api/v1/tokens")
            .query(&[("filter", filter)])
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 400, "invalid_argument").await;
        assert!(detail(&body).contains(needle), "{filter}: {body}");
    }
}

#[tokio::test]
async fn a_bad_sort_is_refused_naming_the_field_or_direction() {
    let app = spawn_app().await;
    for (sort, needle) in [
        ("secret_hash", "unknown sort field 'secret_hash'"),
        ("created_at:sideways", "unknown sort direction 'sideways'"),
        ("description:DESC", "unknown sort direction 'DESC'"),
        (" ", "sort is empty"),
    ] {
        let resp = app
            .request(Method::GET, "/api/v1/tokens")
            .query(&[("sort", sort)])
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 400, "invalid_argument").await;
        assert!(detail(&body).contains(needle), "{sort:?}: {body}");
    }
}

#[tokio::test]
async fn a_problem_for_an_unknown_token_id_names_the_id() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/tokens/tok_nonexistent").await;
    let body = assert_problem(resp, 404, "not_found").await;
    assert!(detail(&body).contains("tok_nonexistent"), "{body}");
    assert_eq!(body["instance"], "/api/v1/tokens/tok_nonexistent");
    assert_eq!(body["title"], "Not found");
}

#[tokio::test]
async fn failed_mutations_leave_the_log_and_every_answer_unchanged() {
    let app = spawn_app().await;
    let before_list = crate::helpers::json(app.get("/api/v1/tokens").await).await;
    let head = app.state.log().head();
    let read = app.token_with(&["read"]).await;
    let head_after_setup = app.state.log().head();
    assert!(head_after_setup > head);
    let read_id = app.token_id_of(&read);

    let failures: Vec<reqwest::Response> = vec![
        app.post(
            "/api/v1/tokens",
            &json!({ "scopes": ["nope"], "description": "x" }),
        )
        .await,
        app.post(
            "/api/v1/tokens",
            &json!({ "scopes": ["read"], "description": "x", "expires_in": "5m" }),
        )
        .await,
        app.request_as(&read, Method::POST, "/api/v1/tokens")
            .json(&json!({ "scopes": ["read"], "description": "x" }))
            .send()
            .await
            .unwrap(),
        app.request_as(&read, Method::DELETE, &format!("/api/v1/tokens/{read_id}"))
            .send()
            .await
            .unwrap(),
        app.delete("/api/v1/tokens/tok_does_not_exist").await,
        app.request(Method::POST, "/api/v1/tokens")
            .header("idempotency-key", "has space")
            .json(&json!({ "scopes": ["read"], "description": "x" }))
            .send()
            .await
            .unwrap(),
    ];
    for resp in failures {
        assert!(resp.status().is_client_error(), "{}", resp.status());
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    assert_eq!(
        app.state.log().head(),
        head_after_setup,
        "nothing was written"
    );
    let resp = app
        .request_as(&read, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the read token still works");
    let after_list = crate::helpers::json(app.get("/api/v1/tokens").await).await;
    assert_eq!(
        after_list["items"].as_array().unwrap().len(),
        before_list["items"].as_array().unwrap().len() + 1,
        "only the setup token was added"
    );
}
