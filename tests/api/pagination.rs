//! Cursor pagination, filters and sorts, through `GET /tokens`.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};

/// What the test knows about each token it created.
#[derive(Debug, Clone)]
struct Seeded {
    scopes: Vec<String>,
    revoked: bool,
}

const NAMES: [&str; 4] = ["alpha", "Bravo", "charlie", "Delta"];

/// Creates `n` tokens (scopes cycling through `read`, `devices:read`, `audit:read devices:read`;
/// every fifth revoked) and returns them by id, plus the owner token.
async fn seed(app: &TestApp, n: usize) -> HashMap<String, Seeded> {
    let scope_sets: [&[&str]; 3] = [
        &["read"],
        &["devices:read"],
        &["audit:read", "devices:read"],
    ];
    let created: Vec<(usize, Value)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let body = json!({
                "scopes": scope_sets[i % 3],
                "description": format!("{} {i:03}", NAMES[i % 4]),
                "expires_in": format!("{}h", 2 + i),
            });
            (i, app.create_token_as(&app.token, &body).await)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut seeded = HashMap::new();
    for (i, token) in created {
        let id = token["id"].as_str().unwrap().to_owned();
        let revoked = i % 5 == 0;
        if revoked {
            let resp = app.delete(&format!("/api/v1/tokens/{id}")).await;
            assert_eq!(resp.status(), 204);
        }
        seeded.insert(
            id,
            Seeded {
                scopes: scope_sets[i % 3].iter().map(|s| (*s).to_owned()).collect(),
                revoked,
            },
        );
    }
    seeded.insert(
        app.token_id_of(&app.token),
        Seeded {
            scopes: vec!["write".into()],
            revoked: false,
        },
    );
    seeded
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn expected(seeded: &HashMap<String, Seeded>, keep: impl Fn(&Seeded) -> bool) -> BTreeSet<String> {
    seeded
        .iter()
        .filter(|(_, s)| keep(s))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Asserts every id appears once and returns them as a set.
fn exactly_once(items: &[Value]) -> BTreeSet<String> {
    let list = ids(items);
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(set.len(), list.len(), "no token is served twice");
    set
}

async fn page(app: &TestApp, query: &str) -> Value {
    let resp = app.get(&format!("/api/v1/tokens?{query}")).await;
    assert_eq!(resp.status(), 200, "{query}");
    json(resp).await
}

#[tokio::test]
async fn paging_by_seven_serves_every_token_exactly_once_and_ends_with_a_null_cursor() {
    let app = spawn_app().await;
    let seeded = seed(&app, 120).await;
    let (items, pages) = app.list_all(&app.token, "/api/v1/tokens", "limit=7").await;
    assert_eq!(items.len(), 121);
    assert_eq!(pages, 121_usize.div_ceil(7));
    let served = exactly_once(&items);
    assert_eq!(served, seeded.keys().cloned().collect::<BTreeSet<_>>());
    // The default order is creation time, oldest first.
    let created: Vec<&str> = items
        .iter()
        .map(|t| t["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
}

#[tokio::test]
async fn the_default_page_has_50_items_and_a_page_holds_at_most_200() {
    let app = spawn_app().await;
    seed(&app, 210).await;
    let first = page(&app, "").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    assert!(first["next_cursor"].is_string());

    let big = page(&app, "limit=200").await;
    assert_eq!(big["items"].as_array().unwrap().len(), 200);
    let cursor = big["next_cursor"].as_str().expect("more than 200 tokens");
    let rest = page(&app, &format!("limit=200&cursor={cursor}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 11);
    assert!(rest["next_cursor"].is_null());

    let resp = app.get("/api/v1/tokens?limit=201").await;
    assert_problem(resp, 400, "invalid_argument").await;
}

#[tokio::test]
async fn a_full_last_page_has_a_null_cursor() {
    let app = spawn_app().await;
    seed(&app, 13).await;
    // 14 tokens in pages of 7: the second page is full and the last.
    let first = page(&app, "limit=7").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(&app, &format!("limit=7&cursor={cursor}")).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 7);
    assert!(second["next_cursor"].is_null(), "{second}");
}

#[tokio::test]
async fn sorting_by_description_descending_orders_every_page() {
    let app = spawn_app().await;
    let seeded = seed(&app, 60).await;
    let (items, _) = app
        .list_all(
            &app.token,
            "/api/v1/tokens",
            "limit=7&sort=description:desc",
        )
        .await;
    assert_eq!(exactly_once(&items).len(), seeded.len());
    let descriptions: Vec<String> = items
        .iter()
        .map(|t| t["description"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(
        descriptions.windows(2).all(|w| w[0] >= w[1]),
        "{descriptions:?}"
    );
    assert_eq!(descriptions[0], "owner token of acme");

    let (items, _) = app
        .list_all(&app.token, "/api/v1/tokens", "limit=9&sort=expires_at:asc")
        .await;
    assert_eq!(exactly_once(&items).len(), seeded.len());
    let expiries: Vec<&str> = items
        .iter()
        .map(|t| t["expires_at"].as_str().unwrap())
        .collect();
    assert!(expiries.windows(2).all(|w| w[0] <= w[1]), "{expiries:?}");
}

#[tokio::test]
async fn filters_select_by_status_and_scope_with_or_and_and() {
    let app = spawn_app().await;
    let seeded = seed(&app, 45).await;
    let has = |s: &Seeded, scope: &str| s.scopes.iter().any(|x| x == scope);
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("filter=status:active", expected(&seeded, |s| !s.revoked)),
        ("filter=status:revoked", expected(&seeded, |s| s.revoked)),
        ("filter=status:expired", BTreeSet::new()),
        ("filter=scope:read", expected(&seeded, |s| has(s, "read"))),
        (
            "filter=scope:read,scope:audit:read",
            expected(&seeded, |s| has(s, "read") || has(s, "audit:read")),
        ),
        (
            // A bare value after a comma reuses the key.
            "filter=status:active,revoked",
            expected(&seeded, |_| true),
        ),
        (
            // A literal `+` in the query string (which URL-decodes to a space) means AND.
            "filter=status:revoked+scope:read",
            expected(&seeded, |s| s.revoked && has(s, "read")),
        ),
        (
            // ...and so does an encoded `%2B`.
            "filter=status:revoked%2Bscope:read",
            expected(&seeded, |s| s.revoked && has(s, "read")),
        ),
        (
            "filter=status:active%20scope:devices:read",
            expected(&seeded, |s| !s.revoked && has(s, "devices:read")),
        ),
        (
            "filter=scope:read,scope:audit:read+status:active",
            expected(&seeded, |s| {
                !s.revoked && (has(s, "read") || has(s, "audit:read"))
            }),
        ),
    ];
    for (query, want) in cases {
        let (items, _) = app
            .list_all(&app.token, "/api/v1/tokens", &format!("limit=4&{query}"))
            .await;
        assert_eq!(exactly_once(&items), want, "{query}");
        // The served status matches the filter too.
        if query == "filter=status:revoked" {
            assert!(items.iter().all(|t| t["status"] == "revoked"));
            assert!(items.iter().all(|t| t["revoked_at"].is_string()));
        }
    }
}

#[tokio::test]
async fn a_tampered_cursor_is_refused() {
    let app = spawn_app().await;
    seed(&app, 10).await;
    let first = page(&app, "limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut bytes = cursor.clone().into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    for bad in [
        tampered,
        format!("{cursor}A"),
        cursor[..cursor.len() - 1].to_owned(),
        "eyJ0c".to_owned(),
    ] {
        let resp = app
            .get(&format!("/api/v1/tokens?limit=3&cursor={bad}"))
            .await;
        let body = assert_problem(resp, 400, "invalid_argument").await;
        assert!(
            body["detail"].as_str().unwrap().starts_with("cursor"),
            "{body}"
        );
    }
    // The untouched cursor still works.
    let resp = app
        .get(&format!("/api/v1/tokens?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_cursor_from_another_organization_is_refused() {
    let app = spawn_app().await;
    seed(&app, 5).await;
    let (_, globex) = app.second_org("globex").await;
    app.create_token_as(
        &globex,
        &json!({ "scopes": ["read"], "description": "globex reader", "expires_in": "2h" }),
    )
    .await;
    let resp = app
        .request_as(&globex, Method::GET, "/api/v1/tokens?limit=1")
        .send()
        .await
        .unwrap();
    let theirs = json(resp).await;
    let cursor = theirs["next_cursor"]
        .as_str()
        .expect("globex has two tokens");
    let resp = app
        .get(&format!("/api/v1/tokens?limit=1&cursor={cursor}"))
        .await;
    let body = assert_problem(resp, 400, "invalid_argument").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("different organization"),
        "{body}"
    );
}

#[tokio::test]
async fn a_cursor_reused_with_another_filter_or_sort_is_refused() {
    let app = spawn_app().await;
    seed(&app, 20).await;
    let first = page(&app, "limit=3&filter=status:active").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    for query in [
        format!("limit=3&cursor={cursor}"),
        format!("limit=3&filter=status:revoked&cursor={cursor}"),
        format!("limit=3&filter=status:active&sort=description&cursor={cursor}"),
        format!("limit=3&filter=status:active&sort=created_at:desc&cursor={cursor}"),
    ] {
        let resp = app.get(&format!("/api/v1/tokens?{query}")).await;
        assert_problem(resp, 400, "invalid_argument").await;
    }
    // The same filter, written differently, and another page size are the same query.
    for query in [
        format!("limit=5&filter=status:active&cursor={cursor}"),
        format!("limit=3&filter=status:active,active&sort=created_at:asc&cursor={cursor}"),
    ] {
        let resp = app.get(&format!("/api/v1/tokens?{query}")).await;
        assert_eq!(resp.status(), 200, "{query}");
    }
}

#[tokio::test]
async fn a_token_created_between_pages_neither_repeats_nor_hides_others() {
    let app = spawn_app().await;
    let seeded = seed(&app, 20).await;
    let first = page(&app, "limit=6").await;
    let mut items: Vec<Value> = first["items"].as_array().unwrap().clone();
    let late = app.create_token(&["read"], "created mid-listing").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (rest, _) = app
        .list_from(&app.token, "/api/v1/tokens", "limit=6", Some(cursor))
        .await;
    items.extend(rest);
    let served = exactly_once(&items);
    let mut want: BTreeSet<String> = seeded.keys().cloned().collect();
    want.insert(late["id"].as_str().unwrap().to_owned());
    assert_eq!(served, want);
}

#[tokio::test]
async fn cursors_still_work_after_a_restart() {
    let app = spawn_app().await;
    seed(&app, 30).await;
    let query = "limit=7&sort=description:desc&filter=status:active";
    let first = page(&app, query).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second_before = page(&app, &format!("{query}&cursor={cursor}")).await;

    let app = app.restart().await;
    let second_after = page(&app, &format!("{query}&cursor={cursor}")).await;
    assert_eq!(second_after, second_before);
    assert_eq!(second_after["items"].as_array().unwrap().len(), 7);
}
