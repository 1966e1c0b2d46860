//! Devices that join by their owner's sign-in: `quickztna up` without `--auth-key` (the real
//! binary) prints a link, the person signs in at the local OpenID provider and confirms, and
//! the device joins as theirs; a deactivated owner's device must re-authenticate.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickztna::domain::directory::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{assert_problem, json, public_key};
use crate::oidc_provider::Browser;
use crate::sso_fixture::SsoApp;

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

/// `quickztna up` in the background, its stderr collected line by line.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    home: tempfile::TempDir,
}

impl Agent {
    fn spawn(server: &str, args: &[&str]) -> Agent {
        Agent::spawn_in(server, args, tempfile::tempdir().unwrap())
    }

    /// Starts it with `home` (and so the state file) of an earlier run.
    fn spawn_in(server: &str, args: &[&str], home: tempfile::TempDir) -> Agent {
        let mut child = Command::new(BIN)
            .arg("up")
            .args(args)
            .env("QUICKZTNA_SERVER", server)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"))
            .env_remove("QUICKZTNA_TOKEN")
            .env_remove("QUICKZTNA_AUTH_KEY")
            .env_remove("QUICKZTNA_STATE_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn quickztna up");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Agent { child, lines, home }
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for the `n`th line (1-based) containing `needle`; returns it.
    async fn line(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no line #{n} with {needle:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `n`th sign-in link the agent printed.
    async fn link(&self, n: usize) -> String {
        let line = self.line("To sign in, open: ", n).await;
        line.split("To sign in, open: ")
            .nth(1)
            .unwrap()
            .trim()
            .to_owned()
    }

    fn state(&self) -> Value {
        let path = self.home.path().join("state/quickztna/agent.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }
}

/// Signs `login` in at `link` and confirms the device on the page that follows.
async fn approve(sso: &SsoApp, link: &str, login: &str) -> reqwest::Response {
    let browser = Browser::new();
    let page = browser.sign_in(link, login, &sso.callback()).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let field = |name: &str| {
        let at = html.find(&format!("name=\"{name}\" value=\"")).expect(name) + name.len() + 15;
        html[at..at + html[at..].find('"').unwrap()].to_owned()
    };
    let (login_id, confirm) = (field("login"), field("confirm"));
    browser
        .post_form(
            &sso.app.url("/sso/device"),
            &[("login", login_id.as_str()), ("confirm", confirm.as_str())],
        )
        .await
}

fn devices_of(sso: &SsoApp, user_id: &str) -> Vec<(String, String)> {
    let models = sso.app.state.models().load();
    let org = models.state.org(&sso.app.org_id);
    let user = org.user(user_id).unwrap();
    org.devices_of(user)
        .into_iter()
        .map(|d| (d.id.clone(), d.owner.clone().unwrap_or_default()))
        .collect()
}

async fn heartbeat(sso: &SsoApp, credential: &str) -> reqwest::Response {
    sso.app
        .request_as(credential, Method::POST, "/api/v1/machine/heartbeat")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_then_sign_in_then_up_without_a_key_joins_as_that_person_until_deactivated() {
    let sso = SsoApp::start().await;
    // The invitation link POST /users answers without an SMTP relay.
    let (alice, link) = sso.invite("alice@acme.test", Role::Member).await;
    let resp = Browser::new()
        .sign_in(&link, "alice", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200);

    let agent = Agent::spawn(
        &sso.app.address,
        &["--hostname", "laptop-1", "--interval", "1s"],
    );
    let link = agent.link(1).await;
    assert!(
        link.starts_with(&sso.app.url("/sso/login?device=")),
        "{link}"
    );
    let done = approve(&sso, &link, "alice").await;
    assert_eq!(done.status(), 200, "{}", done.text().await.unwrap());
    agent.line("Registered as dev_", 1).await;
    agent.line("Connected to", 1).await;

    let owned = devices_of(&sso, &alice);
    assert_eq!(owned.len(), 1, "{}", agent.stderr());
    let (device_id, owner) = owned[0].clone();
    assert_eq!(owner, alice);
    let listed = sso.get(&format!("/api/v1/users/{alice}/devices")).await;
    assert!(listed.to_string().contains(&device_id), "{listed}");
    let device = json(sso.app.get(&format!("/api/v1/devices/{device_id}")).await).await;
    assert_eq!(device["owner"], alice.as_str());
    assert_eq!(device["hostname"], "laptop-1");
    assert_eq!(device["tags"], json!([]));
    let credential = agent.state()["node_credential"]
        .as_str()
        .unwrap()
        .to_owned();

    // Her account is deactivated: the device must re-authenticate, and the agent asks her to
    // sign in again instead of stopping.
    sso.set_active(&alice, false).await;
    let body = assert_problem(
        heartbeat(&sso, &credential).await,
        401,
        "reauthentication_required",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("deactivated"),
        "{body}"
    );
    let link = agent.link(2).await;
    // Deactivated, she cannot sign in for it.
    let refused = Browser::new()
        .sign_in(&link, "alice", &sso.callback())
        .await;
    assert_problem(refused, 403, "permission_denied").await;
    agent.line("the sign-in was refused", 1).await;
    let mut child = agent.child;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the agent stops after a refused sign-in")
        .unwrap();
    assert!(!status.success());

    // Reactivated, she signs in again from a restarted agent: the same machine (public key)
    // replaces its old registration.
    sso.set_active(&alice, true).await;
    let agent = Agent::spawn_in(
        &sso.app.address,
        &["--hostname", "laptop-1", "--interval", "1s"],
        agent.home,
    );
    let link = agent.link(1).await;
    assert_eq!(approve(&sso, &link, "alice").await.status(), 200);
    agent.line("Connected to", 1).await;
    let owned = devices_of(&sso, &alice);
    assert_eq!(
        owned.len(),
        1,
        "the old registration was replaced: {owned:?}"
    );
    assert_ne!(owned[0].0, device_id);
    assert_eq!(
        heartbeat(&sso, &credential).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old credential is gone with its device"
    );

    // An admin expires its key: the running agent asks its owner to sign in again, and the
    // device comes back as hers.
    let expired = &owned[0].0;
    let resp = sso
        .app
        .post(&format!("/api/v1/devices/{expired}/expire-key"), &json!({}))
        .await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let link = agent.link(2).await;
    assert_eq!(approve(&sso, &link, "alice").await.status(), 200);
    agent.line("Connected to", 2).await;
    let owned = devices_of(&sso, &alice);
    assert_eq!(owned.len(), 1, "{owned:?}");
    assert_ne!(&owned[0].0, expired);

    // She leaves: deleting her removes her device in the same operation, and its credential
    // stops working at once.
    let credential = agent.state()["node_credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(heartbeat(&sso, &credential).await.status(), StatusCode::OK);
    let resp = sso.app.delete(&format!("/api/v1/users/{alice}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        heartbeat(&sso, &credential).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let devices = json(sso.app.get("/api/v1/devices").await).await;
    assert_eq!(devices["items"], json!([]), "{devices}");
    assert_problem(
        sso.app.get(&format!("/api/v1/users/{alice}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_device_login_is_collected_only_with_its_poll_secret_and_refuses_strangers() {
    let sso = SsoApp::start().await;
    let app = &sso.app;
    let secret = "p".repeat(40);
    let started = app
        .client
        .post(app.url("/api/v1/machine/login"))
        .json(
            &json!({"hostname": "laptop-2", "os": "linux", "os_version": "6.1",
                      "public_key": public_key(), "poll_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let started = json(started).await;
    let login_id = started["login_id"].as_str().unwrap().to_owned();
    let poll = |bearer: String| {
        app.client
            .post(app.url(&format!("/api/v1/machine/login/{login_id}")))
            .bearer_auth(bearer)
            .json(&json!({}))
            .send()
    };
    assert_eq!(poll(secret.clone()).await.unwrap().status(), 202);
    assert_problem(poll("q".repeat(40)).await.unwrap(), 401, "unauthenticated").await;

    // Someone the organization does not know signs in at the link: refused, and so is the
    // device, once; then the login is gone.
    let link = started["auth_url"].as_str().unwrap();
    let resp = Browser::new()
        .sign_in(link, "mallory", &sso.callback())
        .await;
    assert_problem(resp, 403, "permission_denied").await;
    assert_problem(
        poll(secret.clone()).await.unwrap(),
        403,
        "permission_denied",
    )
    .await;
    assert_problem(poll(secret.clone()).await.unwrap(), 401, "unauthenticated").await;
    assert!(sso.users().is_empty());

    // Without single sign-on configured, a device cannot start one.
    let (_, other_token) = app.second_org("globex").await;
    let _ = other_token;
    let resp = app
        .client
        .post(app.url("/api/v1/machine/login"))
        .json(
            &json!({"org": "globex", "hostname": "x", "os": "linux", "os_version": "",
                      "public_key": public_key(), "poll_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "unprocessable_entity").await;
}
