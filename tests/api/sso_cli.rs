//! `quickztna login --sso` (the real binary): the person signs in at the local OpenID provider
//! and confirms, and the CLI saves a session token that acts for them with their role.

use std::process::Stdio;
use std::time::Duration;

use quickztna::domain::directory::Role;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::assert_problem;
use crate::oidc_provider::Browser;
use crate::sso_fixture::SsoApp;

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sso_saves_a_session_that_acts_for_the_person_with_their_role() {
    let sso = SsoApp::start().await;
    let (alice, _) = sso.invite("alice@acme.test", Role::Auditor).await;
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["login", "--sso"])
        .env("QUICKZTNA_SERVER", &sso.app.address)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_ORG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a link within 20 s")
        .unwrap()
        .unwrap();
    let link = first
        .strip_prefix("To sign in, open: ")
        .expect(&first)
        .to_owned();
    assert!(link.starts_with(&sso.app.url("/sso/login?cli=")), "{link}");

    // She signs in; the page asks her to confirm; only then does the CLI get anything.
    let browser = Browser::new();
    let page = browser.sign_in(&link, "alice", &sso.callback()).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("quickztna login --sso"), "{html}");
    let field = |name: &str| {
        let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
        html[at..at + html[at..].find('"').unwrap()].to_owned()
    };
    let form = [("login", field("login")), ("confirm", field("confirm"))];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = browser.post_form(&sso.app.url("/sso/device"), &form).await;
    assert_eq!(done.status(), 200);
    // The confirmation is used once.
    let again = browser.post_form(&sso.app.url("/sso/device"), &form).await;
    assert_problem(again, 410, "login_expired").await;

    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("login finishes")
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("Signed in as alice@acme.test (auditor)"),
        "{rest}"
    );
    let saved: Value = serde_json::from_slice(
        &std::fs::read(home.path().join("config/quickztna/login.json")).unwrap(),
    )
    .unwrap();
    let token = saved["token"].as_str().unwrap();

    // An auditor's session reads, and writes nothing.
    let resp = sso
        .app
        .request_as(token, Method::GET, "/api/v1/devices")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = sso
        .app
        .request_as(token, Method::POST, "/api/v1/keys")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;

    // It ends with her deactivation.
    sso.set_active(&alice, false).await;
    let resp = sso
        .app
        .request_as(token, Method::GET, "/api/v1/devices")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_set_oidc_configures_the_provider_from_a_secret_file() {
    let sso = SsoApp::start().await;
    let home = tempfile::tempdir().unwrap();
    let secret_file = home.path().join("secret");
    std::fs::write(&secret_file, "rotated-secret\n").unwrap();
    let run = |issuer: String| {
        Command::new(BIN)
            .args([
                "org",
                "set-oidc",
                "--issuer",
                &issuer,
                "--client-id",
                "quickztna",
            ])
            .arg("--client-secret-file")
            .arg(&secret_file)
            .env("QUICKZTNA_SERVER", &sso.app.address)
            .env("QUICKZTNA_TOKEN", &sso.app.token)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .stdin(Stdio::null())
            .output()
    };
    let out = run(sso.op.issuer.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&sso.app.url("/sso/callback")), "{stderr}");
    let stored = sso
        .app
        .data_dir()
        .join(format!("secrets/oidc-{}", sso.app.org_id));
    assert_eq!(std::fs::read_to_string(stored).unwrap(), "rotated-secret");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("rotated-secret"), "{stdout}");

    let out = run("http://127.0.0.1:9".into()).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("issuer"), "{stderr}");
}
