//! Acknowledged means durable: restarts change no answer, idempotency keys survive them, and a
//! `kill -9` of the real binary loses no acknowledged write.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, header, json, spawn_app};

#[tokio::test]
async fn every_answer_is_the_same_after_a_restart() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let scopes: &[&str] = if i % 2 == 0 {
            &["read"]
        } else {
            &["devices:read"]
        };
        let t = app
            .create_token(scopes, &format!("before restart {i}"))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    for id in ids.iter().step_by(3) {
        assert_eq!(
            app.delete(&format!("/api/v1/tokens/{id}")).await.status(),
            204
        );
    }
    ids.push(app.token_id_of(&app.token));

    async fn answers(app: &crate::helpers::TestApp, ids: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for query in [
            "limit=5",
            "limit=4&sort=description:desc",
            "filter=status:revoked",
        ] {
            out.push(json!(
                app.list_all(&app.token, "/api/v1/tokens", query).await.0
            ));
        }
        for id in ids {
            let resp = app.get(&format!("/api/v1/tokens/{id}")).await;
            assert_eq!(resp.status(), 200);
            out.push(json(resp).await);
        }
        out.push(json(app.get("/api/v1/health").await).await);
        out
    }

    let before = answers(&app, &ids).await;
    let head = app.state.log().head();
    let app = app.restart().await;
    assert_eq!(app.state.log().head(), head);
    let after = answers(&app, &ids).await;
    assert_eq!(after, before);
    // And the tokens still authenticate (the owner's did, to produce `after`).
    let t = app.create_token(&["read"], "after restart").await;
    assert_eq!(t["status"], "active");
}

async fn post_with_key(
    app: &crate::helpers::TestApp,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/tokens")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_token_without_its_secret() {
    let app = spawn_app().await;
    let body = json!({ "scopes": ["read"], "description": "ci deploy", "expires_in": "2h" });
    let first = post_with_key(&app, "deploy-2026-05-15", &body).await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first = json(first).await;
    assert!(first["token"].is_string());
    let head = app.state.log().head();

    let second = post_with_key(&app, "deploy-2026-05-15", &body).await;
    assert_eq!(second.status(), 201);
    assert_eq!(
        header(&second, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let location = header(&second, "location");
    let second = json(second).await;
    assert_eq!(second["id"], first["id"]);
    assert!(second["token"].is_null(), "{second}");
    assert!(second["note"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(
        location,
        Some(format!("/api/v1/tokens/{}", first["id"].as_str().unwrap()))
    );
    for field in [
        "prefix",
        "scopes",
        "description",
        "expires_at",
        "created_at",
    ] {
        assert_eq!(second[field], first[field], "{field}");
    }
    assert_eq!(app.state.log().head(), head, "the repeat wrote nothing");
    let (all, _) = app.list_all(&app.token, "/api/v1/tokens", "").await;
    assert_eq!(all.len(), 2, "one token issued, plus the owner's");
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_a_conflict() {
    let app = spawn_app().await;
    let body = json!({ "scopes": ["read"], "description": "ci deploy", "expires_in": "2h" });
    assert_eq!(post_with_key(&app, "k-1", &body).await.status(), 201);
    let head = app.state.log().head();
    let other = json!({ "scopes": ["read"], "description": "something else", "expires_in": "2h" });
    let resp = post_with_key(&app, "k-1", &other).await;
    let problem = assert_problem(resp, 409, "conflict").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    assert_eq!(app.state.log().head(), head, "nothing was written");
    // Another key with the other body is a new request.
    assert_eq!(post_with_key(&app, "k-2", &other).await.status(), 201);
}

#[tokio::test]
async fn idempotency_keys_are_per_organization() {
    let app = spawn_app().await;
    let body = json!({ "scopes": ["read"], "description": "shared key", "expires_in": "2h" });
    let ours = json(post_with_key(&app, "same-key", &body).await).await;
    let (_, globex) = app.second_org("globex").await;
    let resp = app
        .request_as(&globex, Method::POST, "/api/v1/tokens")
        .header("idempotency-key", "same-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, "idempotent-replayed"), None);
    let theirs = json(resp).await;
    assert_ne!(theirs["id"], ours["id"], "globex does not get acme's token");
    assert!(theirs["token"].is_string());
}

#[tokio::test]
async fn idempotency_keys_survive_a_restart() {
    let app = spawn_app().await;
    let body = json!({ "scopes": ["read"], "description": "before restart", "expires_in": "2h" });
    let first = json(post_with_key(&app, "survivor", &body).await).await;
    let app = app.restart().await;
    let again = post_with_key(&app, "survivor", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let again = json(again).await;
    assert_eq!(again["id"], first["id"]);
    assert!(again["token"].is_null());
    let changed = json!({ "scopes": ["read"], "description": "after restart", "expires_in": "2h" });
    let resp = post_with_key(&app, "survivor", &changed).await;
    assert_problem(resp, 409, "conflict").await;
}

// ---- kill -9 of the real binary.

pub fn quickztna(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quickztna"));
    cmd.args(args)
        .env_remove("QUICKZTNA_DATA_DIR")
        .env_remove("QUICKZTNA_LISTEN")
        .env("QUICKZTNA_LOG", "warn");
    cmd
}

/// Runs an offline command to completion; returns its stdout, failing with its stderr.
pub fn run_offline(args: &[&str]) -> String {
    let out = quickztna(args).output().expect("run quickztna");
    assert!(
        out.status.success(),
        "quickztna {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `quickztna serve` on `dir` and waits until it answers its health check.
pub async fn serve(dir: &Path) -> (Child, String) {
    serve_with(dir, &[]).await
}

/// Like [`serve`], with more flags.
pub async fn serve_with(dir: &Path, extra: &[&str]) -> (Child, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let mut child = quickztna(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(resp) = client.get(format!("{base}/api/v1/health")).send().await
            && resp.status() == 200
        {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("quickztna serve did not become healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_concurrent_writes_loses_no_acknowledged_token() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let init: Value = serde_json::from_str(&run_offline(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        &data_dir,
    ]))
    .expect("init prints JSON");
    let owner = init["token"].as_str().expect("token").to_owned();
    run_offline(&[
        "org",
        "set-limits",
        "--org",
        "acme",
        "--read-per-min",
        "1000000",
        "--write-per-min",
        "1000000",
        "--data-dir",
        &data_dir,
    ]);

    let (mut server, base) = serve(dir.path()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..200 {
        let client = client.clone();
        let tx = tx.clone();
        let url = format!("{base}/api/v1/tokens");
        let owner = owner.clone();
        tokio::spawn(async move {
            let result = async {
                let resp = client
                    .post(url)
                    .bearer_auth(owner)
                    .json(&json!({ "scopes": ["read"], "description": format!("crash {i}"), "expires_in": "2h" }))
                    .send()
                    .await?;
                let status = resp.status();
                let body: Value = resp.json().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
            .await;
            let _ = tx.send(result);
        });
    }
    drop(tx);

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut answered = 0;
    let mut killed = false;
    while let Some(result) = rx.recv().await {
        answered += 1;
        if let Ok((status, body)) = result {
            // Anything but 201 (e.g. a 503 while busy) acknowledges nothing; it just must not
            // be a success of another kind.
            assert!(status == 201 || !status.is_success(), "{status}: {body}");
            if status == 201 {
                acknowledged.push((
                    body["id"].as_str().unwrap().to_owned(),
                    body["token"].as_str().unwrap().to_owned(),
                ));
            }
        }
        if answered == 50 && !killed {
            server.kill().expect("SIGKILL the server");
            killed = true;
        }
    }
    if !killed {
        server.kill().expect("SIGKILL the server");
    }
    server.wait().expect("reap the server");
    assert!(
        !acknowledged.is_empty(),
        "some writes were acknowledged before the kill"
    );

    let (mut server, base) = serve(dir.path()).await;
    for (id, secret) in &acknowledged {
        let resp = client
            .get(format!("{base}/api/v1/tokens/{id}"))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "acknowledged token {id} survived");
        let resp = client
            .get(format!("{base}/api/v1/tokens?limit=1"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the secret of {id} authenticates");
    }
    // Nothing half-written either: every listed token (acknowledged or not) is whole.
    let mut cursor: Option<String> = None;
    let mut listed = 0;
    loop {
        let mut url = format!("{base}/api/v1/tokens?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for t in page["items"].as_array().unwrap() {
            assert!(
                t["description"].is_string() && t["prefix"].is_string(),
                "{t}"
            );
            listed += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        listed > acknowledged.len(),
        "the owner plus every acknowledged token"
    );

    // A graceful stop, then the offline chain check.
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(stopped.success());
    let status = server.wait().expect("wait for the server");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let verified: Value = serde_json::from_str(&run_offline(&[
        "audit-log",
        "verify",
        "--data-dir",
        &data_dir,
    ]))
    .expect("verify prints JSON");
    assert!(verified["first_bad_position"].is_null(), "{verified}");
    assert!(verified["verified"].as_u64().unwrap() >= acknowledged.len() as u64 + 2);
}
