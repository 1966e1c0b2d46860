//! The CLI and the device agent, run as the real `quickztna` binary against a real server:
//! `keys`, `devices`, `up`, and the seed page's stale-device pipeline verbatim.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, json, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// The binary with its environment pointed at `app` and a private home directory.
pub struct Cli {
    server: String,
    token: String,
    home: TempDir,
}

impl Cli {
    pub fn new(app: &TestApp) -> Cli {
        Cli {
            server: app.address.clone(),
            token: app.token.clone(),
            home: tempfile::tempdir().expect("temp home"),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.home.path().join("state/quickztna/agent.json")
    }

    /// A command with QUICKZTNA_SERVER/QUICKZTNA_TOKEN set and HOME/XDG dirs in the temp dir.
    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd);
        cmd.kill_on_drop(true);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        let home = self.home.path();
        cmd.env("QUICKZTNA_SERVER", &self.server)
            .env("QUICKZTNA_TOKEN", &self.token)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env_remove("QUICKZTNA_AUTH_KEY")
            .env_remove("QUICKZTNA_STATE_FILE")
            .env_remove("QUICKZTNA_LOG")
            .env_remove("RUST_LOG");
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run quickztna")
    }

    /// Runs a command that must succeed; returns (stdout, stderr).
    pub async fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args).await;
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "quickztna {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        (stdout, stderr)
    }

    /// Starts the device agent in the background.
    pub fn spawn_up(&self, args: &[&str]) -> Child {
        self.command()
            .arg("up")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quickztna up")
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM the way an init system does.
pub fn sigterm(child: &Child) {
    let pid = child.id().expect("the agent is still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// Waits for the child to exit (at most 20 s); returns its output.
pub async fn finish(child: Child) -> Output {
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the agent exits within 20 s")
        .expect("wait for the agent")
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every device, following cursors.
async fn devices(app: &TestApp) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=200&cursor={c}"),
            None => "/api/v1/devices?limit=200".to_owned(),
        };
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        let page = json(resp).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

async fn device(app: &TestApp, id: &str) -> Value {
    let resp = app.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(resp.status(), 200, "GET /devices/{id}");
    json(resp).await
}

fn ids(items: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Creates a pre-auth key over HTTP; returns the secret.
async fn create_key(app: &TestApp, body: Value) -> String {
    let resp = app.post("/api/v1/keys", &body).await;
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 201, "creating a key: {body}");
    body["key"].as_str().expect("key").to_owned()
}

/// Registers a device over HTTP; returns (device id, node credential).
async fn register(app: &TestApp, key: &str, hostname: &str) -> (String, String) {
    let resp = app
        .client
        .post(app.url("/api/v1/machine/register"))
        .json(&json!({
            "auth_key": key,
            "hostname": hostname,
            "os": "linux",
            "os_version": "6.1.0",
            "public_key": crate::helpers::public_key(),
        }))
        .send()
        .await
        .expect("register");
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, 201, "registering {hostname}: {body}");
    (
        body["device"]["id"].as_str().expect("device id").to_owned(),
        body["node_credential"]
            .as_str()
            .expect("node credential")
            .to_owned(),
    )
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("state file")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_list_and_revoke() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);

    let (key, stderr) = cli
        .ok(&[
            "keys",
            "create",
            "--reusable",
            "--tag",
            "prod",
            "--tag=tag:web",
            "--expires-in",
            "2h",
            "--description",
            "fleet rollout",
        ])
        .await;
    let key = key.trim();
    assert!(key.starts_with("qzk_"), "the key alone on stdout: {key:?}");
    assert!(!key.contains(char::is_whitespace));
    assert!(stderr.contains("Created pre-auth key"), "{stderr}");
    assert!(stderr.contains("reusable"), "{stderr}");

    let (created, _) = cli
        .ok(&["keys", "create", "--ephemeral", "--max-uses", "1", "--json"])
        .await;
    let created: Value = serde_json::from_str(&created).expect("--json prints JSON");
    assert!(created["key"].as_str().unwrap().starts_with("qzk_"));
    assert_eq!(created["ephemeral"], true);
    let second_id = created["id"].as_str().unwrap().to_owned();

    let (listed, _) = cli.ok(&["keys", "list", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("a JSON array");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let first = listed
        .iter()
        .find(|k| k["id"] != second_id.as_str())
        .expect("the first key");
    assert_eq!(first["tags"], json!(["tag:prod", "tag:web"]));
    assert_eq!(first["reusable"], true);
    assert_eq!(first["description"], "fleet rollout");
    assert!(
        listed.iter().all(|k| k.get("key").is_none()),
        "listing never shows keys: {listed:?}"
    );

    let (stdout, stderr) = cli.ok(&["keys", "revoke", &second_id]).await;
    assert!(stdout.is_empty());
    assert!(stderr.contains(&format!("Revoked pre-auth key {second_id}")));
    let (listed, _) = cli.ok(&["keys", "list", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0]["id"], second_id.as_str());

    // A bad duration is the server's problem, printed as title: detail.
    let out = cli.run(&["keys", "create", "--expires-in", "91d"]).await;
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: ") && stderr.contains(": "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_registers_heartbeats_reuses_its_state_and_stops_on_sigterm() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let (key, _) = cli
        .ok(&["keys", "create", "--reusable", "--tag", "prod"])
        .await;
    let key = key.trim().to_owned();

    let agent = cli.spawn_up(&[&format!("--auth-key={key}"), "--interval", "1s"]);
    let id = eventually(20, "the agent's device", || async {
        devices(&app)
            .await
            .first()
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    let seen = eventually(20, "a heartbeat", || async {
        let d = device(&app, &id).await;
        (!d["last_seen"].is_null()).then_some(d)
    })
    .await;
    assert_eq!(seen["tags"], json!(["tag:prod"]));
    assert_eq!(seen["os"], std::env::consts::OS);
    let hostname = seen["hostname"].as_str().unwrap();
    assert!(
        !hostname.is_empty()
            && hostname
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "a sanitized hostname: {hostname}"
    );
    let recorded = app.state.heartbeats().get(&id).expect("a heartbeat");
    assert_eq!(
        recorded.client_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(recorded.disk_encrypted.is_some() && recorded.firewall.is_some());
    assert!(recorded.os_version.is_some_and(|v| !v.is_empty()));

    sigterm(&agent);
    let out = finish(agent).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "exit 0 on SIGTERM: {stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&format!("Registered as {id} (")),
        "{stderr}"
    );

    // The state file keeps the credential (mode 0600) and a second run reuses it.
    let state_file = cli.state_file();
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["device_id"], id.as_str());
    assert!(
        saved["node_credential"]
            .as_str()
            .unwrap()
            .starts_with("qzn_")
    );
    assert!(!saved["public_key"].as_str().unwrap().is_empty());
    #[cfg(unix)]
    assert_eq!(mode(&state_file), 0o600);

    let before = device(&app, &id).await["last_seen"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let agent = cli.spawn_up(&["--auth-key", &key, "--interval=1s"]);
    eventually(20, "a heartbeat from the saved registration", || async {
        (device(&app, &id).await["last_seen"] != before).then_some(())
    })
    .await;
    sigterm(&agent);
    let out = finish(agent).await;
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Using the saved registration"), "{stderr}");
    assert_eq!(ids(&devices(&app).await), vec![id], "no second device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stops_when_its_device_is_removed_and_rejoins_only_with_a_key_presented_anew() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    // The seed's onboarding pattern: a reusable key in every server's user-data.
    let reusable = create_key(&app, json!({ "reusable": true })).await;
    let up = |key: &str| {
        cli.spawn_up(&[
            "--auth-key",
            key,
            "--hostname",
            "edge-1",
            "--interval",
            "1s",
        ])
    };
    let agent = up(&reusable);
    let first = eventually(20, "the first registration", || async {
        devices(&app)
            .await
            .first()
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    cli.ok(&["devices", "remove", &first]).await;
    let out = finish(agent).await;
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "the agent stops: {stderr}");
    assert!(
        stderr.contains("Re-authentication required: the device was removed. Stopped: to rejoin"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("e-authentication").count(),
        1,
        "said once: {stderr}"
    );
    assert!(devices(&app).await.is_empty(), "removal dropped it");

    // A service manager restarting it with the same key does not undo the removal.
    let out = finish(up(&reusable)).await;
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the key that had registered it"),
        "{stderr}"
    );
    assert!(devices(&app).await.is_empty(), "still removed");

    // A key presented anew rejoins.
    let fresh = create_key(&app, json!({})).await;
    let agent = up(&fresh);
    let second = eventually(20, "a registration with the new key", || async {
        devices(&app)
            .await
            .first()
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    assert_ne!(second, first);
    sigterm(&agent);
    assert!(finish(agent).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_reregister_joins_again_after_removal_while_its_key_works() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);

    // A reusable key: removal is followed by a new registration.
    let reusable = create_key(&app, json!({ "reusable": true })).await;
    let agent = cli.spawn_up(&[
        "--auth-key",
        &reusable,
        "--hostname",
        "edge-1",
        "--interval",
        "1s",
        "--reregister",
    ]);
    let first = eventually(20, "the first registration", || async {
        devices(&app)
            .await
            .first()
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    cli.ok(&["devices", "remove", &first]).await;
    let second = eventually(20, "a second registration", || async {
        let all = devices(&app).await;
        all.iter()
            .find(|d| d["id"] != first.as_str())
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(device(&app, &second).await["hostname"], "edge-1");
    eventually(20, "a heartbeat from the new device", || async {
        (!device(&app, &second).await["last_seen"].is_null()).then_some(())
    })
    .await;
    sigterm(&agent);
    let out = finish(agent).await;
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Registered as {first}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Registered as {second}")),
        "{stderr}"
    );
    let saved = std::fs::read_to_string(cli.state_file()).expect("state file");
    assert!(saved.contains(&second), "{saved}");
    assert!(!saved.contains(&reusable), "the key itself is not kept");

    // A single-use key is spent by the first registration: after an expired key, the agent
    // exits non-zero with the server's reason.
    let cli = Cli::new(&app);
    let single = create_key(&app, json!({ "reusable": false })).await;
    let agent = cli.spawn_up(&[
        "--auth-key",
        &single,
        "--hostname",
        "edge-2",
        "--interval",
        "1s",
        "--reregister",
    ]);
    let dev = eventually(20, "the single-use registration", || async {
        devices(&app)
            .await
            .iter()
            .find(|d| d["hostname"] == "edge-2")
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;
    cli.ok(&["devices", "expire-key", &dev]).await;
    let out = finish(agent).await;
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "exits non-zero: {stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(
        stderr.contains("registering again with --auth-key failed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_retries_while_the_server_is_unreachable_and_refuses_a_bad_key() {
    let app = spawn_app().await;

    // Nothing listens on this port: the agent retries instead of exiting.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cli = Cli::new(&app);
    cli.server = format!("http://127.0.0.1:{port}");
    let mut agent = cli.spawn_up(&["--auth-key", "qzk_whatever", "--interval", "1s"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(agent.try_wait().unwrap().is_none(), "still retrying");
    sigterm(&agent);
    let out = finish(agent).await;
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying in"), "{stderr}");

    // A key the server does not know: the problem, and no device.
    let cli = Cli::new(&app);
    let out = finish(cli.spawn_up(&["--auth-key", "qzk_not-a-real-key"])).await;
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot register with"), "{stderr}");
    assert!(devices(&app).await.is_empty());

    // No key and no saved registration: says how to get one.
    let out = finish(Cli::new(&app).spawn_up(&[])).await;
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("--auth-key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_list_get_tag_expire_and_errors() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let key = create_key(&app, json!({ "reusable": true })).await;
    let (id, credential) = register(&app, &key, "db-1").await;
    let (other, _) = register(&app, &key, "web-1").await;

    let (stdout, _) = cli.ok(&["devices", "list", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert_eq!(
        ids(&listed),
        ids(&[json!({"id": id}), json!({"id": other})])
    );
    let db = listed.iter().find(|d| d["id"] == id.as_str()).unwrap();
    assert_eq!(db["hostname"], "db-1");
    assert!(db["addresses"]["ipv4"].as_str().is_some());

    // Not a terminal: JSON even without --json.
    let (stdout, _) = cli
        .ok(&["devices", "list", "--filter", "hostname:db-1"])
        .await;
    let listed: Vec<Value> = serde_json::from_str(&stdout).expect("JSON in a pipe");
    assert_eq!(ids(&listed), vec![id.clone()]);

    // Tags, with or without the prefix.
    let (stdout, stderr) = cli.ok(&["devices", "tag", "add", &id, "prod"]).await;
    assert!(stdout.is_empty());
    assert!(stderr.contains("tag:prod"), "{stderr}");
    cli.ok(&["devices", "tag", "add", &id, "tag:db"]).await;
    let tags = device(&app, &id).await["tags"].clone();
    assert!(
        tags.as_array().unwrap().contains(&json!("tag:prod")),
        "{tags}"
    );
    assert!(
        tags.as_array().unwrap().contains(&json!("tag:db")),
        "{tags}"
    );
    let (stdout, _) = cli
        .ok(&["devices", "list", "--filter=tag:db", "--json"])
        .await;
    assert_eq!(
        ids(&serde_json::from_str::<Vec<Value>>(&stdout).unwrap()),
        vec![id.clone()]
    );
    cli.ok(&["devices", "tag", "remove", &id, "prod"]).await;
    cli.ok(&["devices", "tag", "remove", &id, "tag:db"]).await;
    assert_eq!(device(&app, &id).await["tags"], json!([]));

    // get prints the device as JSON.
    let (stdout, _) = cli.ok(&["devices", "get", &id]).await;
    let got: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["hostname"], "db-1");

    // expire-key: the device's credential now needs re-authentication.
    let (stdout, _) = cli.ok(&["devices", "expire-key", &id]).await;
    assert!(stdout.is_empty());
    assert_eq!(device(&app, &id).await["key_expired"], true);
    let resp = app
        .client
        .post(app.url("/api/v1/machine/heartbeat"))
        .bearer_auth(&credential)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(resp, 401, "reauthentication_required").await;

    // remove: a line on stderr, nothing on stdout.
    let (stdout, stderr) = cli.ok(&["devices", "remove", &other]).await;
    assert!(stdout.is_empty());
    assert_eq!(stderr.trim(), format!("Removed device {other}"));

    // A problem prints as "error: Title: detail" and exits non-zero.
    let resp = app
        .get("/api/v1/devices/dev_01JZZZZZZZZZZZZZZZZZZZZZZZ")
        .await;
    assert!(resp.status().is_client_error());
    let problem = json(resp).await;
    let out = cli
        .run(&["devices", "get", "dev_01JZZZZZZZZZZZZZZZZZZZZZZZ"])
        .await;
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {}: {}",
            problem["title"].as_str().unwrap(),
            problem["detail"].as_str().unwrap()
        )
    );

    // A bad filter is the server's 400, likewise.
    let out = cli
        .run(&["devices", "list", "--filter", "colour:blue"])
        .await;
    assert!(!out.status.success());
    assert!(texts(&out).1.contains("colour"), "{}", texts(&out).1);

    // A bad --idle-for is refused before any request.
    let out = cli
        .run(&["devices", "list", "--idle-for", "ninety days"])
        .await;
    assert!(!out.status.success());
    assert!(
        texts(&out).1.contains("invalid duration"),
        "{}",
        texts(&out).1
    );

    // No token anywhere: says how to provide one.
    let mut cmd = cli.command();
    cmd.env_remove("QUICKZTNA_TOKEN").args(["devices", "list"]);
    let out = cmd.output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty());
    for hint in ["--token", "QUICKZTNA_TOKEN", "quickztna login"] {
        assert!(stderr.contains(hint), "mentions {hint}: {stderr}");
    }

    // ...and with `quickztna login`'s file, no flags or token variable are needed.
    let login = cli.home.path().join("config/quickztna/login.json");
    std::fs::create_dir_all(login.parent().unwrap()).unwrap();
    std::fs::write(
        &login,
        json!({ "server": app.address, "token": app.token }).to_string(),
    )
    .unwrap();
    let mut cmd = cli.command();
    cmd.env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_SERVER")
        .args(["devices", "list", "--json"]);
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&listed), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_list_idle_for_selects_devices_not_seen_since() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let key = create_key(&app, json!({ "reusable": true })).await;
    let (old, _) = register(&app, &key, "old").await;
    let (recent, _) = register(&app, &key, "recent").await;
    let (never, _) = register(&app, &key, "never").await;
    app.state.heartbeats().record(
        &app.org_id,
        &old,
        now_micros() - 100 * DAY_MICROS,
        Default::default(),
    );
    app.state.heartbeats().record(
        &app.org_id,
        &recent,
        now_micros() - 10 * DAY_MICROS,
        Default::default(),
    );

    let list = |args: &'static [&'static str]| {
        let cli = &cli;
        async move {
            let (stdout, _) = cli.ok(args).await;
            ids(&serde_json::from_str::<Vec<Value>>(&stdout).expect("JSON array"))
        }
    };
    assert_eq!(
        list(&["devices", "list", "--idle-for=90d", "--json"]).await,
        vec![old.clone()]
    );
    let mut both = vec![old.clone(), recent.clone()];
    both.sort();
    assert_eq!(
        list(&["devices", "list", "--idle-for", "7d", "--json"]).await,
        both
    );
    // Never seen counts as seen when registered (just now).
    assert!(
        !list(&["devices", "list", "--idle-for", "1d", "--json"])
            .await
            .contains(&never)
    );
    // ANDed with --filter.
    assert_eq!(
        list(&[
            "devices",
            "list",
            "--idle-for",
            "7d",
            "--filter",
            "hostname:recent",
            "--json"
        ])
        .await,
        vec![recent]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_stale_device_pipeline_runs_verbatim() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let key = create_key(&app, json!({ "reusable": true })).await;
    let (stale_a, _) = register(&app, &key, "stale-a").await;
    let (stale_b, _) = register(&app, &key, "stale-b").await;
    let (fresh, _) = register(&app, &key, "fresh").await;
    app.state.heartbeats().record(
        &app.org_id,
        &stale_a,
        now_micros() - 91 * DAY_MICROS,
        Default::default(),
    );
    app.state.heartbeats().record(
        &app.org_id,
        &stale_b,
        now_micros() - 400 * DAY_MICROS,
        Default::default(),
    );
    app.state.heartbeats().record(
        &app.org_id,
        &fresh,
        now_micros() - 89 * DAY_MICROS,
        Default::default(),
    );

    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cli.env(&mut cmd);
    let out = cmd
        .env("PATH", path)
        .arg("-c")
        .arg(
            "set -o pipefail\n\
             quickztna devices list --idle-for=90d --json | jq -r '.[].id' | xargs -n1 quickztna devices remove",
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run bash");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "the pipeline failed: {stderr}");
    assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
    assert!(
        stderr.contains(&format!("Removed device {stale_a}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Removed device {stale_b}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    assert_eq!(ids(&devices(&app).await), vec![fresh]);
    for gone in [&stale_a, &stale_b] {
        let resp = app.get(&format!("/api/v1/devices/{gone}")).await;
        assert_eq!(resp.status(), 404, "{gone} was removed");
    }
}
