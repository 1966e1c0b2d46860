//! Tenant isolation: one organization's token never reads, changes or learns of another's data.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, json, spawn_app};

#[tokio::test]
async fn another_organizations_tokens_are_invisible_in_lists() {
    let app = spawn_app().await;
    let acme_ids: BTreeSet<String> = {
        let mut ids = BTreeSet::new();
        for i in 0..5 {
            let t = app.create_token(&["read"], &format!("acme {i}")).await;
            ids.insert(t["id"].as_str().unwrap().to_owned());
        }
        ids.insert(app.token_id_of(&app.token));
        ids
    };
    let (_, globex) = app.second_org("globex").await;
    let globex_reader = app
        .create_token_as(
            &globex,
            &json!({ "scopes": ["read"], "description": "globex reader", "expires_in": "2h" }),
        )
        .await;

    let (theirs, _) = app.list_all(&globex, "/api/v1/tokens", "limit=2").await;
    let their_ids: BTreeSet<String> = theirs
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        their_ids,
        BTreeSet::from([
            app.token_id_of(&globex),
            globex_reader["id"].as_str().unwrap().to_owned()
        ])
    );
    assert!(their_ids.is_disjoint(&acme_ids));
    // Filters that would match acme's tokens still show only globex's.
    for filter in ["scope:read", "status:active", "scope:write"] {
        let (items, _) = app
            .list_all(&globex, "/api/v1/tokens", &format!("filter={filter}"))
            .await;
        assert!(
            items
                .iter()
                .all(|t| their_ids.contains(t["id"].as_str().unwrap())),
            "{filter}"
        );
    }
    let (ours, _) = app.list_all(&app.token, "/api/v1/tokens", "").await;
    assert_eq!(ours.len(), acme_ids.len(), "and acme sees none of globex's");
}

#[tokio::test]
async fn another_organizations_token_id_answers_404_never_403_and_nothing_changes() {
    let app = spawn_app().await;
    let victim = app.create_token(&["read"], "acme reader").await;
    let victim_id = victim["id"].as_str().unwrap();
    let victim_secret = victim["token"].as_str().unwrap();
    let (_, globex) = app.second_org("globex").await;
    let head = app.state.log().head();
    let acme_view = json(app.get(&format!("/api/v1/tokens/{victim_id}")).await).await;

    let owner_id = app.token_id_of(&app.token);
    for id in [victim_id, owner_id.as_str()] {
        let path = format!("/api/v1/tokens/{id}");
        let resp = app
            .request_as(&globex, Method::GET, &path)
            .send()
            .await
            .unwrap();
        let found = assert_problem(resp, 404, "not_found").await;
        let resp = app
            .request_as(&globex, Method::DELETE, &path)
            .send()
            .await
            .unwrap();
        let deleted = assert_problem(resp, 404, "not_found").await;
        // Exactly what a token id that exists nowhere gets.
        let resp = app
            .request_as(&globex, Method::GET, "/api/v1/tokens/tok_nowhere")
            .send()
            .await
            .unwrap();
        let nowhere = assert_problem(resp, 404, "not_found").await;
        assert_eq!(
            found["detail"].as_str().unwrap().replace(id, "X"),
            nowhere["detail"]
                .as_str()
                .unwrap()
                .replace("tok_nowhere", "X")
        );
        assert_eq!(found["title"], deleted["title"]);
    }

    assert_eq!(app.state.log().head(), head, "nothing was written");
    let after = json(app.get(&format!("/api/v1/tokens/{victim_id}")).await).await;
    assert_eq!(after, acme_view);
    assert_eq!(after["status"], "active");
    let resp = app
        .request_as(victim_secret, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "acme's token still works");
}

#[tokio::test]
async fn a_token_of_one_organization_creates_tokens_only_in_its_own() {
    let app = spawn_app().await;
    let (globex_org, globex) = app.second_org("globex").await;
    let created = app
        .create_token_as(
            &globex,
            &json!({ "scopes": ["read"], "description": "globex made", "expires_in": "2h" }),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let resp = app.get(&format!("/api/v1/tokens/{id}")).await;
    assert_problem(resp, 404, "not_found").await;
    let models = app.state.models().load();
    assert_eq!(models.state.tokens.get(id).unwrap().org_id, globex_org);
    // The new token authenticates into globex, not acme.
    let secret = created["token"].as_str().unwrap();
    let (items, _) = app.list_all(secret, "/api/v1/tokens", "").await;
    assert!(items.iter().all(|t| {
        models
            .state
            .tokens
            .get(t["id"].as_str().unwrap())
            .unwrap()
            .org_id
            == globex_org
    }));
}
