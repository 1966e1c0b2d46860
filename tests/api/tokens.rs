//! `/tokens`: issuing, listing, reading and revoking API tokens; secrets are shown once.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, header, json, spawn_app};

const TOKEN_FIELDS: [&str; 10] = [
    "id",
    "prefix",
    "scopes",
    "description",
    "expires_at",
    "created_at",
    "created_by",
    "parent_id",
    "revoked_at",
    "status",
];

fn assert_rfc3339(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is a time"));
    assert!(
        text.parse::<jiff::Timestamp>().is_ok(),
        "{text} is RFC 3339"
    );
    assert!(text.ends_with('Z'), "{text} is UTC");
}

#[tokio::test]
async fn creating_a_token_answers_201_with_its_location_and_the_secret_once() {
    let app = spawn_app().await;
    let resp = app
        .post(
            "/api/v1/tokens",
            &json!({ "scopes": ["devices:read", "audit:read"], "description": "SIEM export job", "expires_in": "12h" }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let location = header(&resp, "location").expect("Location");
    let body = json(resp).await;
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("tok_"), "{id}");
    assert_eq!(location, format!("/api/v1/tokens/{id}"));
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("qz_"), "{token}");
    assert!(token.len() >= 40, "256 random bits: {token}");
    let prefix = body["prefix"].as_str().unwrap();
    assert!(
        token.starts_with(prefix) && prefix.len() < token.len() / 2,
        "{prefix}"
    );
    assert_eq!(body["scopes"], json!(["audit:read", "devices:read"]));
    assert_eq!(body["description"], "SIEM export job");
    assert_eq!(body["created_by"], "owner token of acme");
    assert_eq!(body["status"], "active");
    assert!(body["revoked_at"].is_null());
    assert!(body["note"].is_null());
    assert_rfc3339(&body["created_at"]);
    assert_rfc3339(&body["expires_at"]);
    let created: jiff::Timestamp = body["created_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = body["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires.duration_since(created).as_secs();
    assert!(
        (12 * 3600 - 60..=12 * 3600 + 60).contains(&lifetime),
        "{lifetime}"
    );

    // The Location resolves, and the new token works.
    let resp = app.get(&location).await;
    assert_eq!(resp.status(), 200);
    let resp = app
        .request_as(token, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "authenticated, but devices/audit scopes only"
    );
}

#[tokio::test]
async fn a_token_is_never_shown_again_in_get_or_list() {
    let app = spawn_app().await;
    let created = app.create_token(&["read"], "shown once").await;
    let secret = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let resp = app.get(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(secret));
    let view: Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = TOKEN_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "exactly the documented fields, no secret");
    for field in [
        "prefix",
        "scopes",
        "description",
        "expires_at",
        "created_at",
        "created_by",
    ] {
        assert_eq!(view[field], created[field], "{field}");
    }

    let resp = app.get("/api/v1/tokens").await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains(secret));
    assert!(!text.contains(&app.token), "nor the owner's");
    let page: Value = serde_json::from_str(&text).unwrap();
    assert!(page["next_cursor"].is_null());
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert!(item.get("token").is_none(), "{item}");
        assert_eq!(item.as_object().unwrap().len(), TOKEN_FIELDS.len());
    }
}

#[tokio::test]
async fn created_by_is_the_description_of_the_creating_token() {
    let app = spawn_app().await;
    let manager = app
        .create_token(&["tokens:write", "devices:read"], "okta provisioning bot")
        .await;
    let created = app
        .create_token_as(
            manager["token"].as_str().unwrap(),
            &json!({ "scopes": ["devices:read"], "description": "made by the bot", "expires_in": "1h" }),
        )
        .await;
    assert_eq!(created["created_by"], "okta provisioning bot");
    let view = json(
        app.get(&format!(
            "/api/v1/tokens/{}",
            created["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(view["created_by"], "okta provisioning bot");
    assert_eq!(manager["created_by"], "owner token of acme");
}

#[tokio::test]
async fn scopes_are_normalized_sorted_and_deduplicated() {
    let app = spawn_app().await;
    let created = app
        .create_token(&["users:read", "devices:read", "users:read"], "dedup")
        .await;
    assert_eq!(created["scopes"], json!(["devices:read", "users:read"]));
}

#[tokio::test]
async fn revoking_a_token_answers_204_twice_and_shows_it_revoked() {
    let app = spawn_app().await;
    let created = app.create_token(&["read"], "to revoke").await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/tokens/{id}");

    let resp = app.delete(&path).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.text().await.unwrap().is_empty());
    let head = app.state.log().head();
    let view = json(app.get(&path).await).await;
    assert_eq!(view["status"], "revoked");
    assert_rfc3339(&view["revoked_at"]);

    let resp = app.delete(&path).await;
    assert_eq!(resp.status(), 204, "revoking again is not an error");
    assert_eq!(app.state.log().head(), head, "and writes nothing");
    let again = json(app.get(&path).await).await;
    assert_eq!(
        again["revoked_at"], view["revoked_at"],
        "the first revocation time stays"
    );
}

#[tokio::test]
async fn an_unknown_token_id_is_not_found() {
    let app = spawn_app().await;
    for id in ["tok_01j00000000000000000000000", "nonsense", "tok_"] {
        let resp = app.get(&format!("/api/v1/tokens/{id}")).await;
        assert_problem(resp, 404, "not_found").await;
        let resp = app.delete(&format!("/api/v1/tokens/{id}")).await;
        assert_problem(resp, 404, "not_found").await;
    }
}

#[tokio::test]
async fn secrets_never_appear_in_the_event_log() {
    let app = spawn_app().await;
    let mut secrets = vec![app.token.clone()];
    for i in 0..5 {
        let t = app.create_token(&["read"], &format!("secret {i}")).await;
        secrets.push(t["token"].as_str().unwrap().to_owned());
    }
    let replayed = app
        .request(Method::POST, "/api/v1/tokens")
        .header("idempotency-key", "secret-scan")
        .json(&json!({ "scopes": ["read"], "description": "idem", "expires_in": "2h" }))
        .send()
        .await
        .unwrap();
    secrets.push(json(replayed).await["token"].as_str().unwrap().to_owned());

    let records = app.state.log().read_raw(1, 100_000).unwrap();
    assert_eq!(records.len() as u64, app.state.log().head());
    for secret in &secrets {
        // The whole token, and its random part without the `qz_` prefix.
        let random = &secret[3..];
        for (position, bytes) in &records {
            for needle in [secret.as_bytes(), random.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a secret appears in the record at position {position}"
                );
            }
        }
    }
    // What is kept is the hash, so the read model can still authenticate.
    let hash = quickztna::domain::secret::hash(&secrets[1]);
    assert!(
        records
            .iter()
            .any(|(_, bytes)| bytes.windows(32).any(|w| w == hash)),
        "the SHA-256 of the secret is what the log keeps"
    );
}
