//! `/policy`: apply, read back in both formats, optimistic concurrency, lint with positions,
//! diff with access impact, dry run, history and rollback, and a 1 MiB policy that survives a
//! restart.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, header, json, spawn_app};
use crate::machine::{key_secret, register};

pub const WEB_TO_DB: &str = "\
version: 1
rules:
  - name: web-to-db
    action: accept
    src: [tag:web]
    dst: [tag:db]
    proto: tcp
    ports: [5432]
";

/// `PUT /policy` with a YAML body and optional extra headers.
pub async fn put_policy(app: &TestApp, text: &str, headers: &[(&str, &str)]) -> Response {
    put_policy_at(app, "/api/v1/policy", text, headers).await
}

pub async fn put_policy_at(
    app: &TestApp,
    path: &str,
    text: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = app
        .request(Method::PUT, path)
        .header("content-type", "application/yaml")
        .body(text.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("PUT /policy")
}

/// Applies `text`, asserting success; returns the answer.
pub async fn apply(app: &TestApp, text: &str) -> Value {
    let resp = put_policy(app, text, &[]).await;
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 200, "applying a policy: {body}");
    body
}

async fn post_yaml(app: &TestApp, path: &str, text: &str) -> Value {
    let resp = app
        .request(Method::POST, path)
        .header("content-type", "application/yaml")
        .body(text.to_owned())
        .send()
        .await
        .expect("POST");
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn a_policy_is_applied_read_back_in_both_formats_and_guarded_by_if_match() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/policy").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "etag").as_deref(), Some("\"0\""));
    assert!(
        resp.text().await.unwrap().contains("rules: []"),
        "default deny"
    );

    let resp = put_policy(
        &app,
        WEB_TO_DB,
        &[
            ("if-match", "\"0\""),
            ("x-change-reason", "CHG-1: first policy"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "etag").as_deref(), Some("\"1\""));
    let body = json(resp).await;
    assert_eq!(body["version"], 1);
    assert_eq!(body["applied"], true);

    // A writer who saw version 0 lost the race.
    let stale = put_policy(&app, "version: 1\nrules: []\n", &[("if-match", "\"0\"")]).await;
    assert_eq!(header(&stale, "etag").as_deref(), Some("\"1\""));
    assert_problem(stale, 412, "precondition_failed").await;

    let yaml = app.get("/api/v1/policy").await;
    assert_eq!(
        header(&yaml, "content-type").as_deref(),
        Some("application/yaml")
    );
    assert_eq!(
        yaml.text().await.unwrap(),
        WEB_TO_DB,
        "the text as it was sent"
    );
    let as_json = app
        .request(Method::GET, "/api/v1/policy")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&as_json, "etag").as_deref(), Some("\"1\""));
    let doc = json(as_json).await;
    assert_eq!(doc["rules"][0]["name"], "web-to-db");
    assert_eq!(doc["rules"][0]["ports"], json!([5432]));
    let html = app
        .request(Method::GET, "/api/v1/policy")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 406);

    let plain = app
        .request(Method::PUT, "/api/v1/policy")
        .header("content-type", "text/plain")
        .body(WEB_TO_DB)
        .send()
        .await
        .unwrap();
    assert_problem(plain, 415, "unsupported_media_type").await;

    // JSON in, the same policy.
    let resp = app
        .request(Method::PUT, "/api/v1/policy?reason=json%20too")
        .json(&json!({"version": 1, "rules": [{"name": "web-to-db", "action": "accept", "src": ["tag:web"], "dst": ["tag:db"], "proto": "tcp", "ports": [5432, 5433]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["version"], 2);
    let yaml = app.get("/api/v1/policy").await.text().await.unwrap();
    assert!(
        yaml.contains("5433"),
        "stored JSON is served as YAML by default: {yaml}"
    );

    let history = json(app.get("/api/v1/policy/history").await).await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], 2, "newest first");
    assert_eq!(items[0]["reason"], "json too");
    assert_eq!(items[0]["current"], true);
    assert_eq!(items[1]["reason"], "CHG-1: first policy");
    assert_eq!(items[1]["actor"]["kind"], "token");
    let v1 = json(app.get("/api/v1/policy/history/1").await).await;
    assert_eq!(v1["text"], WEB_TO_DB);
    assert_problem(app.get("/api/v1/policy/history/9").await, 404, "not_found").await;

    // Rolling back is a PUT of an old version's text.
    let back = apply(&app, WEB_TO_DB).await;
    assert_eq!(back["version"], 3);
    assert_eq!(back["rollback_of"], 1);
    // The same text again changes nothing.
    let again = apply(&app, WEB_TO_DB).await;
    assert_eq!(
        (again["version"].clone(), again["applied"].clone()),
        (json!(3), json!(false))
    );

    let audit = json(app.get("/api/v1/audit-log?event_type=policy.applied").await).await;
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().any(|e| e["data"]["rollback_of"] == 1));
}

#[tokio::test]
async fn a_policy_that_does_not_lint_is_refused_with_every_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let bad = "\
version: 1
rules:
  - name: one
    action: accept
    src: [group:nobody]
    dst: [tag:db]
    ports: [70000]
  - name: one
    action: allow
    src: ['*']
    dst: ['*']
";
    let lint = post_yaml(&app, "/api/v1/policy/lint", bad).await;
    assert_eq!(lint["valid"], false);
    let problems = lint["problems"].as_array().unwrap();
    assert!(problems.len() >= 4, "every problem at once: {problems:?}");
    let port = problems
        .iter()
        .find(|p| p["pointer"] == "/rules/0/ports/0")
        .expect("the bad port");
    assert_eq!(
        (port["line"].as_u64(), port["column"].as_u64()),
        (Some(7), Some(13))
    );
    assert_eq!(port["rule"], "one");
    assert!(
        problems
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("group:nobody")
                || p["message"].as_str().unwrap().contains("nobody"))
    );

    let resp = put_policy(&app, bad, &[]).await;
    let body = assert_problem(resp, 422, "unprocessable_entity").await;
    assert!(body["problems"].as_array().unwrap().len() >= 4, "{body}");
    let resp = app.get("/api/v1/policy").await;
    assert_eq!(
        header(&resp, "etag").as_deref(),
        Some("\"0\""),
        "nothing applied"
    );

    let not_yaml = put_policy(&app, "rules: [unclosed", &[]).await;
    assert_problem(not_yaml, 422, "unprocessable_entity").await;
    // Lint reports on a policy; what is not a policy document at all is refused.
    for not_a_policy in ["just a string", "[1, 2]", "rules: [unclosed"] {
        let resp = app
            .request(Method::POST, "/api/v1/policy/lint")
            .header("content-type", "application/yaml")
            .body(not_a_policy)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, "unprocessable_entity").await;
    }
    let bad_utf8 = app
        .request(Method::PUT, "/api/v1/policy")
        .header("content-type", "application/yaml")
        .body(vec![0xffu8, 0xfe, b'a'])
        .send()
        .await
        .unwrap();
    assert_problem(bad_utf8, 400, "invalid_argument").await;
}

#[tokio::test]
async fn diff_and_dry_run_show_who_gains_and_loses_access_without_applying() {
    let app = spawn_app().await;
    let web = key_secret(&app, json!({ "tags": ["tag:web"], "reusable": true })).await;
    let db = key_secret(&app, json!({ "tags": ["tag:db"] })).await;
    let w = register(&app, &web, "web-1").await;
    let d = register(&app, &db, "db-1").await;
    let (wid, did) = (
        w["device"]["id"].as_str().unwrap(),
        d["device"]["id"].as_str().unwrap(),
    );
    apply(&app, WEB_TO_DB).await;

    let candidate = WEB_TO_DB.replace("ports: [5432]", "ports: [22]");
    let diff = post_yaml(&app, "/api/v1/policy/diff", &candidate).await;
    assert_eq!(diff["from_version"], 1);
    assert!(
        diff["text_diff"]
            .as_str()
            .unwrap()
            .contains("-    ports: [5432]\n+    ports: [22]"),
        "{}",
        diff["text_diff"]
    );
    let gained = &diff["impact"]["gained"];
    assert_eq!(
        gained,
        &json!([{"src": wid, "src_hostname": "web-1", "src_owner": null, "dst": did, "dst_hostname": "db-1", "proto": "tcp", "ports": "22"}])
    );
    assert_eq!(diff["impact"]["lost"][0]["ports"], "5432");
    assert_eq!(diff["impact"]["lost_count"], 1);

    let resp = put_policy_at(&app, "/api/v1/policy?dry_run=true", &candidate, &[]).await;
    assert_eq!(resp.status(), 200);
    let dry = json(resp).await;
    assert_eq!(
        (
            dry["applied"].clone(),
            dry["dry_run"].clone(),
            dry["version"].clone()
        ),
        (json!(false), json!(true), json!(1))
    );
    assert_eq!(dry["impact"]["gained"], *gained);
    assert_eq!(
        header(&app.get("/api/v1/policy").await, "etag").as_deref(),
        Some("\"1\""),
        "a dry run applies nothing"
    );
}

#[tokio::test]
async fn a_one_mebibyte_policy_round_trips_and_survives_a_restart() {
    let app = spawn_app().await;
    let mut text = String::from(WEB_TO_DB);
    let line = format!("# {}\n", "x".repeat(98));
    while text.len() + line.len() <= 1024 * 1024 {
        text.push_str(&line);
    }
    assert!(text.len() > 1024 * 1024 - 100);
    let applied = apply(&app, &text).await;
    assert_eq!(applied["version"], 1);
    let app = app.restart().await;
    let back = app.get("/api/v1/policy").await.text().await.unwrap();
    assert_eq!(back.len(), text.len());
    assert!(back == text, "the same bytes after a restart");
    let v = json(app.get("/api/v1/policy/history/1").await).await;
    assert_eq!(v["size"], text.len());
}

#[tokio::test]
async fn one_organizations_policy_and_history_are_invisible_to_another() {
    let app = spawn_app().await;
    let (_, other) = app.second_org("globex").await;
    let secret = "# globex-secret\nversion: 1\nrules: []\n";
    let resp = app
        .request_as(&other, Method::PUT, "/api/v1/policy")
        .header("content-type", "application/yaml")
        .body(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mine = app.get("/api/v1/policy").await;
    assert_eq!(header(&mine, "etag").as_deref(), Some("\"0\""));
    assert!(!mine.text().await.unwrap().contains("globex"));
    assert_problem(app.get("/api/v1/policy/history/1").await, 404, "not_found").await;
    let history = json(app.get("/api/v1/policy/history").await).await;
    assert_eq!(history["items"], json!([]));
    // The other organization's version numbering is its own.
    let first = apply(&app, WEB_TO_DB).await;
    assert_eq!(first["version"], 1);
}

#[tokio::test]
async fn if_match_takes_a_list_of_strong_tags_and_anything_else_is_a_412() {
    let app = spawn_app().await;
    apply(&app, WEB_TO_DB).await;
    let other = "version: 1\nrules: []\n";
    for bad in ["W/\"1\"", "\"one\"", "1"] {
        let resp = put_policy(&app, other, &[("if-match", bad)]).await;
        assert_problem(resp, 412, "precondition_failed").await;
    }
    let resp = put_policy(&app, other, &[("if-match", "\"7\", \"1\"")]).await;
    assert_eq!(resp.status(), 200);
    let resp = put_policy(&app, WEB_TO_DB, &[("if-match", "*")]).await;
    let body = json(resp).await;
    assert_eq!(
        (body["version"].clone(), body["rollback_of"].clone()),
        (json!(3), json!(1))
    );
}

#[tokio::test]
async fn a_policy_too_big_to_check_safely_is_refused_naming_the_bound() {
    let app = spawn_app().await;
    let ports: Vec<String> = (1..=600).map(|p| (p * 2 + 1).to_string()).collect();
    let text = format!(
        "version: 1\nrules:\n  - {{ name: odd, action: accept, src: ['*'], dst: ['*'], ports: [{}] }}\n",
        ports.join(", ")
    );
    let resp = app
        .request(Method::POST, "/api/v1/policy/diff")
        .header("content-type", "application/yaml")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422, "unprocessable_entity").await;
    let problems = problem["problems"].as_array().unwrap();
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 256"),
        "{problems:?}"
    );
    let resp = put_policy(&app, &text, &[]).await;
    assert_problem(resp, 422, "unprocessable_entity").await;
}
