//! `quickztna policy …` and `quickztna posture …`: a policy file linted like a compiler would
//! (file:line:column), diffed with its access impact, applied with a reason, and the history.

use crate::cli::Cli;
use crate::helpers::spawn_app;
use crate::peers::node;
use crate::policy::WEB_TO_DB;

#[tokio::test]
async fn the_cli_lints_diffs_applies_and_lists_policies() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    node(&app, &["tag:web"], "web-1").await;
    node(&app, &["tag:db"], "db-1").await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.yaml");
    std::fs::write(&good, WEB_TO_DB).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, WEB_TO_DB.replace("5432", "99999")).unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let out = cli.run(&["policy", "lint", bad]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{bad}:8:13: error:")) && stderr.contains("(rule web-to-db)"),
        "{stderr}"
    );
    let out = cli.run(&["policy", "set", bad]).await;
    assert!(
        !out.status.success(),
        "a policy that does not lint is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{bad}:8:13")));

    cli.ok(&["policy", "lint", good]).await;
    let (diff, _) = cli.ok(&["policy", "diff", good]).await;
    assert!(diff.contains("+    ports: [5432]"), "{diff}");
    assert!(diff.contains("+ web-1 -> db-1 tcp/5432"), "{diff}");
    let (_, err) = cli.ok(&["policy", "set", good, "--dry-run"]).await;
    assert!(err.contains("dry run"), "{err}");
    let (_, err) = cli
        .ok(&[
            "policy",
            "set",
            good,
            "--reason",
            "CHG-7",
            "--if-match",
            "0",
        ])
        .await;
    assert!(err.contains("applied: version 1"), "{err}");
    let out = cli.run(&["policy", "set", good, "--if-match", "0"]).await;
    assert!(!out.status.success(), "stale If-Match");

    let (text, _) = cli.ok(&["policy", "get"]).await;
    assert_eq!(text, WEB_TO_DB);
    let (json, _) = cli.ok(&["policy", "get", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["rules"][0]["name"], "web-to-db");
    let (history, _) = cli.ok(&["policy", "history", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(rows[0]["reason"], "CHG-7");

    let (_, err) = cli
        .ok(&[
            "posture",
            "set",
            "--min-os-version",
            "linux=7.0",
            "--action",
            "warn",
            "--dry-run",
        ])
        .await;
    assert!(err.contains("2 device(s) fail"), "{err}");
    cli.ok(&["posture", "set", "--disk-encrypted"]).await;
    let (cfg, _) = cli.ok(&["posture", "get"]).await;
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["config"]["disk_encrypted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_its_peer_map_beside_its_state_and_follows_changes() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let db = node(&app, &["tag:db"], "db-1").await;
    let (key, _) = cli.ok(&["keys", "create", "--tag", "web"]).await;
    crate::policy::apply(&app, WEB_TO_DB).await;
    let agent = cli.spawn_up(&["--auth-key", key.trim(), "--interval", "1s"]);
    let netmap = cli.state_file().with_file_name("netmap.json");
    let read = || -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&netmap).ok()?).ok()
    };
    crate::peers::eventually("the agent's netmap.json lists the database", || async {
        read().is_some_and(|m| m["peers"][0]["id"] == db.id.as_str())
    })
    .await;
    // The policy changes: the next heartbeat's version differs, and the agent fetches again.
    crate::policy::apply(&app, "version: 1\nrules: []\n").await;
    crate::peers::eventually("the agent's netmap.json is empty again", || async {
        read().is_some_and(|m| m["peers"] == serde_json::json!([]))
    })
    .await;
    crate::cli::sigterm(&agent);
    let out = crate::cli::finish(agent).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Peer map version"), "{stderr}");
}
