//! `GET /devices` served from the organization's indexes and from cached bytes: every
//! combination of filter, sort, direction and page size pages through exactly what a filter
//! over the whole list would give, in order; cached answers follow writes and heartbeats.

use quickztna::heartbeats::Report;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, spawn_app};
use crate::machine::{create_key, register_body, register_raw};

/// Registers 24 devices: three keys (tags, owner, ephemeral) × four OSes × two hostnames.
async fn fleet(app: &TestApp) {
    let keys = [
        json!({ "reusable": true, "tags": ["tag:prod"], "owner": "alice@example.com" }),
        json!({ "reusable": true, "tags": ["tag:prod", "tag:db"] }),
        json!({ "reusable": true, "ephemeral": true, "owner": "Bob@example.com" }),
    ];
    for (k, body) in keys.into_iter().enumerate() {
        let key = create_key(app, body).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        for (o, os) in ["linux", "macos", "windows", "Linux"].iter().enumerate() {
            for name in ["web", "db"] {
                let mut body = register_body(&key, &format!("{name}-{k}{o}"));
                body["os"] = json!(os);
                let resp = register_raw(app, &body).await;
                assert_eq!(resp.status(), 201);
            }
        }
    }
}

/// Whether `d` passes one `key:value` term, as the API documents it.
fn term(d: &Value, key: &str, value: &str) -> bool {
    let s = |f: &str| d[f].as_str().unwrap_or("").to_owned();
    match key {
        "tag" => d["tags"].as_array().unwrap().iter().any(|t| t == value),
        "os" => s("os").eq_ignore_ascii_case(value),
        "owner" => s("owner").eq_ignore_ascii_case(value),
        "ephemeral" => d["ephemeral"].as_bool().unwrap().to_string() == value,
        "hostname" => match value.strip_suffix('*') {
            Some(p) => s("hostname").starts_with(p),
            None => s("hostname") == value,
        },
        other => panic!("{other}"),
    }
}

async fn pages(app: &TestApp, query: &str) -> Vec<String> {
    let (items, _) = app.list_all(&app.token, "/api/v1/devices", query).await;
    items
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn indexed_pages_equal_a_filter_over_the_whole_fleet() {
    let app = spawn_app().await;
    fleet(&app).await;
    let (all, _) = app
        .list_all(&app.token, "/api/v1/devices", "limit=200")
        .await;
    assert_eq!(all.len(), 24);
    let filters: &[&[&[(&str, &str)]]] = &[
        &[],
        &[&[("tag", "tag:db")]],
        &[&[("tag", "tag:nothing")]],
        &[&[("os", "linux")]],
        &[&[("owner", "bob@example.com")]],
        &[&[("ephemeral", "true")]],
        &[&[("ephemeral", "false")], &[("os", "macos")]],
        &[&[("hostname", "web-1*")]],
        &[&[("hostname", "db-22")]],
        &[&[("tag", "tag:db"), ("os", "windows")]],
        &[
            &[("tag", "tag:prod")],
            &[("hostname", "web*"), ("os", "linux")],
        ],
    ];
    for clauses in filters {
        let text = clauses
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("+");
        let matching: Vec<&Value> = all
            .iter()
            .filter(|d| clauses.iter().all(|c| c.iter().any(|(k, v)| term(d, k, v))))
            .collect();
        for field in ["created_at", "hostname"] {
            // `all` is in creation order already (the default sort).
            let mut expected = matching.clone();
            if field == "hostname" {
                expected.sort_by_key(|d| (d[field].as_str().unwrap(), d["id"].as_str().unwrap()));
            }
            let mut ids: Vec<String> = expected
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect();
            for descending in [false, true] {
                if descending {
                    ids.reverse();
                }
                let dir = if descending { "desc" } else { "asc" };
                for limit in [1, 5, 200] {
                    let query = format!(
                        "limit={limit}&sort={field}:{dir}&filter={}",
                        urlencoding(&text)
                    );
                    assert_eq!(pages(&app, &query).await, ids, "{query}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_cached_page_follows_writes_and_heartbeats() {
    let app = spawn_app().await;
    fleet(&app).await;
    let url = "/api/v1/devices?limit=200&filter=tag:new";
    let first = json(app.get(url).await).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 0);
    let before = app.state.pages().len();
    assert_eq!(json(app.get(url).await).await, first, "served again");
    assert_eq!(app.state.pages().len(), before, "from the cache");

    let id = pages(&app, "limit=1").await.remove(0);
    let resp = app
        .post(
            &format!("/api/v1/devices/{id}/tags"),
            &json!({ "tags": ["tag:new"] }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let after = json(app.get(url).await).await;
    assert_eq!(after["items"][0]["id"], id.as_str(), "read-your-writes");
    assert!(after["items"][0]["last_seen"].is_null());

    app.state
        .heartbeats()
        .record(&id, events::now_micros(), Report::default());
    let seen = json(app.get(url).await).await;
    assert!(seen["items"][0]["last_seen"].is_string(), "{seen}");
    assert_eq!(seen["items"][0]["online"], true);
}

/// Percent-encodes what a query value cannot carry as is (`+` would turn into a space, which
/// also means AND; spelled out so the test sends exactly one form).
fn urlencoding(text: &str) -> String {
    text.replace('+', "%2B")
        .replace(':', "%3A")
        .replace(',', "%2C")
        .replace('*', "%2A")
        .replace('@', "%40")
}
