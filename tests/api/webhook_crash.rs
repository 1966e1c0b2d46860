//! A `kill -9` of the real server with deliveries pending (some being retried, some not yet
//! sent): after a restart every event reaches the receiver at least once, in order of first
//! arrival, none skipped, each passing the README's receiver. And the CLI drives every webhook
//! route.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::Cli;
use crate::durability::{run_offline, serve_with};

use crate::webhook_readme;
use crate::webhook_receiver::Receiver;
use quickztna::webhooks::sign::{Secret, verify_quickztna, verify_standard};

/// Kills the server when the test ends, also when it fails: a `std::process::Child` is not
/// killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const FLAGS: &[&str] = &[
    "--webhook-allow-cidr",
    "127.0.0.0/8",
    "--webhook-retry-schedule",
    "0,100ms,200ms,300ms/60s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_with_deliveries_pending_loses_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let init: Value = serde_json::from_str(&run_offline(&[
        "init",
        "--org",
        "acme",
        "--plan",
        "business",
        "--data-dir",
        &data_dir,
    ]))
    .unwrap();
    let token = init["token"].as_str().unwrap().to_owned();
    let rx = Receiver::start().await;
    // Slow enough that the kill lands with most events not yet delivered; the first ones fail.
    rx.delay(Duration::from_millis(30));
    rx.answer(&[500, 503]);
    let (server, base) = serve_with(dir.path(), FLAGS).await;
    let mut server = Killed(server);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let resp = post(
        "/api/v1/webhooks",
        json!({"url": rx.url(), "event_types": ["key.*"]}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    for i in 0..40 {
        let resp = post("/api/v1/keys", json!({"description": format!("k{i}")}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    rx.wait_until("a few", |r| {
        r.iter().filter(|r| r.status == 200).count() >= 5
    })
    .await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let sent_before = rx.delivered().len();
    assert!(sent_before < 40, "the kill came too late to prove anything");

    let (server, base) = serve_with(dir.path(), FLAGS).await;
    let _server = Killed(server);
    let audit: Value = client
        .get(format!(
            "{base}/api/v1/audit-log?event_type=key.created&limit=100"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut expected: Vec<u64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 40);
    rx.wait_until("all forty", |r| {
        let mut ids: Vec<u64> = r
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json()["id"].as_u64().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len() >= 40
    })
    .await;
    let mut first_seen = Vec::new();
    for r in rx.delivered() {
        let id = r.json()["id"].as_u64().unwrap();
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(
        first_seen, expected,
        "every event, in order of first delivery"
    );
    // And every one of them, before and after the crash, passes the README's receiver.
    let delivered = rx.delivered();
    let key = Secret::parse(&secret).unwrap();
    for r in &delivered {
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!(verify_standard(
            &key,
            &r.header("webhook-id"),
            ts,
            &r.body,
            &r.header("webhook-signature")
        ));
        assert!(verify_quickztna(
            &key,
            &r.body,
            &r.header("x-quickztna-signature")
        ));
    }
    if webhook_readme::verifier_available() {
        let cases: Vec<Value> = delivered
            .iter()
            .map(|r| webhook_readme::case(&secret, r))
            .collect();
        let verdicts = webhook_readme::readme_verdicts(&json!(cases));
        let ids: Vec<Value> = delivered.iter().map(|r| r.json()["id"].clone()).collect();
        assert_eq!(verdicts, json!(ids));
    }
}

#[tokio::test]
async fn the_cli_creates_tests_lists_replays_rotates_and_removes_webhooks() {
    let app = crate::webhooks::spawn_hooks().await;
    let rx = Receiver::start().await;
    let cli = Cli::new(&app);
    let out = cli
        .run(&[
            "webhooks",
            "create",
            "--url",
            &rx.url(),
            "--event-type",
            "key.*",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let list: Value =
        serde_json::from_slice(&cli.run(&["webhooks", "list", "--json"]).await.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(!list.to_string().contains(&secret));

    let out = cli.run(&["webhooks", "test", &id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = app.post("/api/v1/keys", &json!({})).await;
    assert_eq!(resp.status(), 201);
    rx.wait_until("ping and key", |r| r.len() >= 2).await;
    let deliveries: Value = serde_json::from_slice(
        &cli.run(&["webhooks", "deliveries", &id, "--json"])
            .await
            .stdout,
    )
    .unwrap();
    let outcomes: Vec<&str> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "test"]);
    let since = deliveries[0]["event_id"].as_u64().unwrap().to_string();
    let out = cli
        .run(&["webhooks", "replay", &id, "--since-id", &since])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rx.wait_until("replayed", |r| r.len() >= 3).await;

    let out = cli
        .run(&["webhooks", "rotate-secret", &id, "--grace-period", "1h"])
        .await;
    let rotated = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    let out = cli
        .run(&["webhooks", "update", &id, "--disable", "--json"])
        .await;
    let changed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changed["status"], "disabled");
    assert!(cli.run(&["webhooks", "remove", &id]).await.status.success());
    let out = cli.run(&["webhooks", "get", &id]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook"));
    // A refused ping is a failed command.
    let created = crate::webhooks::create(&app, "http://127.0.0.1:9/", &[]).await;
    let out = cli
        .run(&["webhooks", "test", created["id"].as_str().unwrap()])
        .await;
    assert!(!out.status.success());
}
