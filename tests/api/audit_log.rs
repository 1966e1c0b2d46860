//! `/audit-log`: filters checked against a brute-force scan of the whole log, ordering,
//! single events, chain links, tenancy and bad input.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json, spawn_app};
use crate::machine::{key_secret, register};

/// Writes a varied history: two tokens acting, keys, devices tagged and removed.
async fn history(app: &TestApp) -> (String, String, Vec<String>) {
    let ops = app.create_token(&["write"], "ops bot").await;
    let ops_secret = ops["token"].as_str().unwrap().to_owned();
    let ops_id = ops["id"].as_str().unwrap().to_owned();
    let key = key_secret(app, json!({ "reusable": true, "expires_in": "1h" })).await;
    let mut devices = Vec::new();
    for i in 0..6 {
        let d = register(app, &key, &format!("web-{i}")).await;
        devices.push(d["device"]["id"].as_str().unwrap().to_owned());
    }
    for (i, d) in devices.iter().enumerate() {
        let who = if i % 2 == 0 { &app.token } else { &ops_secret };
        let resp = app
            .request_as(who, Method::POST, &format!("/api/v1/devices/{d}/tags"))
            .json(&json!({ "tags": [format!("tag:t{}", i % 3)] }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let resp = app
        .request_as(
            &ops_secret,
            Method::DELETE,
            &format!("/api/v1/devices/{}", devices[5]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let other = app.create_token(&["read"], "reader").await;
    let resp = app
        .request_as(
            &ops_secret,
            Method::DELETE,
            &format!("/api/v1/tokens/{}", other["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let owner_id = app.token_id_of(&app.token);
    (owner_id, ops_id, devices)
}

fn ids(items: &[Value]) -> Vec<u64> {
    items.iter().map(|v| v["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn every_filter_combination_matches_a_brute_force_scan_in_both_orders() {
    let app = spawn_app().await;
    let (owner, ops, devices) = history(&app).await;
    let (all, _) = app
        .list_all(&app.token, "/api/v1/audit-log", "limit=200&sort=time:asc")
        .await;
    let all_ids = ids(&all);
    assert_eq!(
        all_ids,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "gap-free, oldest first"
    );
    assert!(all.len() > 20);
    let mid_time = all[all.len() / 2]["time"].as_str().unwrap().to_owned();
    let t_subject = |v: &Value| v["subject"]["id"].as_str().unwrap().to_owned();
    type Pred = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (
            "event_type=device.tagged".into(),
            Box::new(|v| v["type"] == "device.tagged"),
        ),
        (
            "event_type=device.*".into(),
            Box::new(|v| v["type"].as_str().unwrap().starts_with("device.")),
        ),
        (
            "event_type=token.*,key.created".into(),
            Box::new(|v| {
                let t = v["type"].as_str().unwrap();
                t.starts_with("token.") || t == "key.created"
            }),
        ),
        (format!("actor={ops}"), {
            let ops = ops.clone();
            Box::new(move |v| v["actor"]["id"] == ops.as_str())
        }),
        (format!("subject={}", devices[5]), {
            let d = devices[5].clone();
            Box::new(move |v| t_subject(v) == d)
        }),
        (format!("event_type=device.*&actor={owner}"), {
            let owner = owner.clone();
            Box::new(move |v| {
                v["type"].as_str().unwrap().starts_with("device.")
                    && v["actor"]["id"] == owner.as_str()
            })
        }),
        (
            format!("filter=type:device.tagged,type:device.removed%2Bactor:{ops}"),
            {
                let ops = ops.clone();
                Box::new(move |v| {
                    (v["type"] == "device.tagged" || v["type"] == "device.removed")
                        && v["actor"]["id"] == ops.as_str()
                })
            },
        ),
        (
            format!("filter=subject:{},subject:{}", devices[0], devices[1]),
            {
                let (a, b) = (devices[0].clone(), devices[1].clone());
                Box::new(move |v| t_subject(v) == a || t_subject(v) == b)
            },
        ),
        (format!("since={mid_time}"), {
            let t = mid_time.clone();
            Box::new(move |v| v["time"].as_str().unwrap() >= t.as_str())
        }),
        (format!("until={mid_time}&event_type=device.*"), {
            let t = mid_time.clone();
            Box::new(move |v| {
                v["time"].as_str().unwrap() < t.as_str()
                    && v["type"].as_str().unwrap().starts_with("device.")
            })
        }),
        (format!("filter=since:{mid_time}%2Btype:device.*"), {
            let t = mid_time.clone();
            Box::new(move |v| {
                v["time"].as_str().unwrap() >= t.as_str()
                    && v["type"].as_str().unwrap().starts_with("device.")
            })
        }),
    ];
    for (query, pred) in &cases {
        let expected: Vec<u64> = all
            .iter()
            .filter(|v| pred(v))
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert!(!expected.is_empty(), "{query} selects something");
        for limit in [1, 3, 200] {
            let (asc, _) = app
                .list_all(
                    &app.token,
                    "/api/v1/audit-log",
                    &format!("{query}&limit={limit}&sort=time:asc"),
                )
                .await;
            assert_eq!(ids(&asc), expected, "{query} asc limit {limit}");
            let (desc, _) = app
                .list_all(
                    &app.token,
                    "/api/v1/audit-log",
                    &format!("{query}&limit={limit}"),
                )
                .await;
            let mut rev = expected.clone();
            rev.reverse();
            assert_eq!(ids(&desc), rev, "{query} newest first, limit {limit}");
        }
    }
    // Every page item is the same view as the full scan's.
    let (tagged, _) = app
        .list_all(
            &app.token,
            "/api/v1/audit-log",
            "event_type=device.tagged&limit=2",
        )
        .await;
    for v in &tagged {
        assert_eq!(Some(v), all.iter().find(|a| a["id"] == v["id"]));
    }
}

#[tokio::test]
async fn one_event_by_event_id_or_id_with_its_chain_link() {
    let app = spawn_app().await;
    history(&app).await;
    let (all, _) = app
        .list_all(
            &app.token,
            "/api/v1/audit-log",
            "limit=7&sort=time:asc&chain=true",
        )
        .await;
    let mut previous = "0".repeat(64);
    for v in &all {
        assert_eq!(
            v["chain"]["previous"],
            previous.as_str(),
            "links are contiguous across pages"
        );
        previous = v["chain"]["hash"].as_str().unwrap().to_owned();
    }
    let (desc, _) = app
        .list_all(&app.token, "/api/v1/audit-log", "limit=5&chain=true")
        .await;
    let mut desc = desc;
    desc.reverse();
    assert_eq!(desc, all, "the same links newest first");
    for v in [&all[0], &all[9], all.last().unwrap()] {
        let by_ulid = json(
            app.get(&format!(
                "/api/v1/audit-log/{}",
                v["event_id"].as_str().unwrap()
            ))
            .await,
        )
        .await;
        assert_eq!(&by_ulid, v);
        let by_id = json(app.get(&format!("/api/v1/audit-log/{}", v["id"])).await).await;
        assert_eq!(&by_id, v);
    }
    // Without chain=true, no links.
    let page = json(app.get("/api/v1/audit-log?limit=1").await).await;
    assert!(page["items"][0].get("chain").is_none());
    // The chain survives a restart (it is a projection with a snapshot).
    let app = app.restart().await;
    let again = json(
        app.get(&format!("/api/v1/audit-log/{}", all[9]["id"]))
            .await,
    )
    .await;
    assert_eq!(again, all[9]);
    assert_problem(
        app.get("/api/v1/audit-log/01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(app.get("/api/v1/audit-log/999999").await, 404, "not_found").await;
    assert_problem(
        app.get("/api/v1/audit-log/not-an-id").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn another_organization_sees_none_of_it_and_cannot_reuse_cursors() {
    let app = spawn_app().await;
    let (_, _, devices) = history(&app).await;
    let (_, other) = app.second_org("globex").await;
    let theirs = json(
        app.request_as(&other, Method::GET, "/api/v1/audit-log?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    for v in theirs["items"].as_array().unwrap() {
        assert_ne!(v["org_id"], app.org_id.as_str());
    }
    let foreign = json(
        app.request_as(
            &other,
            Method::GET,
            &format!("/api/v1/audit-log?subject={}", devices[0]),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        foreign["items"],
        json!([]),
        "a foreign subject answers nothing"
    );
    let ours = json(app.get("/api/v1/audit-log?limit=1&sort=time:asc").await).await;
    let event_id = ours["items"][0]["event_id"].as_str().unwrap();
    let resp = app
        .request_as(
            &other,
            Method::GET,
            &format!("/api/v1/audit-log/{event_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    let cursor = ours["next_cursor"].as_str().unwrap();
    let resp = app
        .request_as(
            &other,
            Method::GET,
            &format!("/api/v1/audit-log?limit=1&sort=time:asc&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "invalid_argument").await;
    // A cursor belongs to its query too.
    let resp = app
        .get(&format!("/api/v1/audit-log?limit=1&cursor={cursor}"))
        .await;
    assert_problem(resp, 400, "invalid_argument").await;
}

#[tokio::test]
async fn scopes_and_bad_input_are_refused_precisely() {
    let app = spawn_app().await;
    let devices_only = app.create_token(&["devices:read"], "no audit").await;
    let resp = app
        .request_as(
            devices_only["token"].as_str().unwrap(),
            Method::GET,
            "/api/v1/audit-log",
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
    let auditor = app.create_token(&["audit:read"], "auditor").await;
    let resp = app
        .request_as(
            auditor["token"].as_str().unwrap(),
            Method::GET,
            "/api/v1/audit-log",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for bad in [
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "event_type=device.registerd",
        "event_type=nothing.*",
        "subject=nobody",
        "actor=%07x",
        "sort=hostname",
        "limit=0",
        "limit=201",
        "chain=maybe",
        "chain=",
        "chain=true&event_type=device.*",
        "filter=since:2026-01-01T00:00:00Z,type:device.*",
        "filter=colour:red",
        "cursor=garbage",
        "unknown=1",
    ] {
        let resp = app.get(&format!("/api/v1/audit-log?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_problem(resp, 400, "invalid_argument").await;
    }
}

#[tokio::test]
async fn the_audit_chains_equal_a_replay_of_the_log() {
    let app = spawn_app().await;
    history(&app).await;
    let head = app.state.log().head();
    assert!(
        app.state
            .chains()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
    );
    let live = app.state.chains().load();
    let (replayed, position) =
        projections::replay::<quickztna::audit::digests::AuditChains>(app.state.log()).unwrap();
    assert_eq!(position, live.position);
    assert_eq!(replayed, live.state);
}
