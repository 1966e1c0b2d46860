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
        .record(&app.org_id, &id, events::now_micros(), Report::default());
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

/// A filter as the API documents it.
type Wanted = Box<dyn Fn(&Value) -> bool>;

/// A device's place in last-seen order: its latest heartbeat, else its registration.
fn seen_key(d: &Value) -> (i64, String) {
    let field = if d["last_seen"].is_string() {
        "last_seen"
    } else {
        "created_at"
    };
    let t: jiff::Timestamp = d[field].as_str().unwrap().parse().unwrap();
    (t.as_microsecond(), d["id"].as_str().unwrap().to_owned())
}

/// `sort=last_seen` and the last-seen filters through the last-seen order, checked against a
/// sort of the whole fleet, before and after devices are registered, removed and heard from.
#[tokio::test]
async fn last_seen_pages_equal_a_sort_of_the_whole_fleet() {
    let app = spawn_app().await;
    fleet(&app).await;
    const DAY: i64 = 86_400_000_000;
    let now = events::now_micros();
    let ids = pages(&app, "limit=200").await;
    for (i, id) in ids.iter().enumerate() {
        // A third never heard from, a third at distinct times, a third tied at one time.
        let at = match i % 3 {
            0 => continue,
            1 => now - i as i64 * DAY,
            _ => now - 50 * DAY,
        };
        app.state
            .heartbeats()
            .record(&app.org_id, id, at, Report::default());
    }
    let cut = |days: i64| events::format_time(now - days * DAY);
    let check = |round: &'static str| {
        let app = &app;
        let cut = &cut;
        async move {
            let (all, _) = app
                .list_all(&app.token, "/api/v1/devices", "limit=200")
                .await;
            let filters: Vec<(String, Wanted)> = vec![
                (String::new(), Box::new(|_| true)),
                (format!("last_seen_before:{}", cut(30)), {
                    let t = now - 30 * DAY;
                    Box::new(move |d| seen_key(d).0 < t)
                }),
                (
                    format!("last_seen_after:{},last_seen_after:{}", cut(10), cut(60)),
                    {
                        let t = now - 60 * DAY;
                        Box::new(move |d| seen_key(d).0 > t)
                    },
                ),
                (format!("last_seen_after:{}+tag:db", cut(40)), {
                    let t = now - 40 * DAY;
                    Box::new(move |d| seen_key(d).0 > t && term(d, "tag", "tag:db"))
                }),
                (format!("last_seen_before:{},os:macos", cut(5)), {
                    let t = now - 5 * DAY;
                    Box::new(move |d| seen_key(d).0 < t || term(d, "os", "macos"))
                }),
                ("os:linux".into(), Box::new(|d| term(d, "os", "linux"))),
            ];
            for (filter, wanted) in &filters {
                let mut expected: Vec<&Value> = all.iter().filter(|d| wanted(d)).collect();
                expected.sort_by_key(|d| seen_key(d));
                let mut ids: Vec<String> = expected.iter().map(|d| seen_key(d).1).collect();
                for dir in ["asc", "desc"] {
                    if dir == "desc" {
                        ids.reverse();
                    }
                    for limit in [1, 4, 200] {
                        let query = format!(
                            "limit={limit}&sort=last_seen:{dir}&filter={}",
                            urlencoding(filter)
                        );
                        assert_eq!(pages(app, &query).await, ids, "{round}: {query}");
                    }
                }
                // The same filter in creation order: a time clause can drive it.
                let mut created: Vec<&Value> = all.iter().filter(|d| wanted(d)).collect();
                created.sort_by_key(|d| (d["created_at"].as_str(), d["id"].as_str()));
                let created: Vec<String> = created.iter().map(|d| seen_key(d).1).collect();
                let query = format!("limit=3&filter={}", urlencoding(filter));
                assert_eq!(pages(app, &query).await, created, "{round}: {query}");
            }
        }
    };
    check("heartbeats").await;

    // Registrations and removals reach the order at its next use; a heartbeat moves a device.
    let key = create_key(&app, json!({ "reusable": true, "tags": ["tag:db"] })).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["late-1", "late-2", "late-3"] {
        let resp = register_raw(&app, &register_body(&key, name)).await;
        assert_eq!(resp.status(), 201);
    }
    for id in &ids[..2] {
        let resp = app.delete(&format!("/api/v1/devices/{id}")).await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    app.state
        .heartbeats()
        .record(&app.org_id, &ids[3], now - 45 * DAY, Report::default());
    check("changes").await;
}
