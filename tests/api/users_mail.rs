//! Invitations by email, through a real SMTP server run by the test (PyPI `aiosmtpd`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::durability::{free_port, run_offline, serve_with};

/// An `aiosmtpd` sink that stores every message it receives in a Maildir.
struct Sink {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Sink {
    /// Starts the sink; `None` (outside CI) when `aiosmtpd` is not installed.
    async fn start() -> Option<Sink> {
        let have = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install aiosmtpd (pip install aiosmtpd)"
            );
            eprintln!("skipping: aiosmtpd is not installed (pip install aiosmtpd)");
            return None;
        }
        let port = free_port();
        let maildir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("inbox"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Sink {
                    child,
                    port,
                    maildir,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start listening");
    }

    /// Every message received so far, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("inbox").join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_emailed_through_the_relay_and_its_link_is_not_returned() {
    let Some(sink) = Sink::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let init: Value = serde_json::from_str(&run_offline(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        &data_dir,
    ]))
    .unwrap();
    let token = init["token"].as_str().unwrap().to_owned();
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let (mut server, base) = serve_with(
        dir.path(),
        &[
            "--smtp-url",
            &smtp,
            "--smtp-from",
            "Acme IT <it@acme.test>",
            "--public-url",
            "https://ztna.acme.test/",
        ],
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({ "email": "carol@example.com", "role": "auditor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["invitation"]["emailed"], true, "{body}");
    assert_eq!(body["invitation"]["url"], Value::Null);

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "one message reached the sink");
    let m = &messages[0];
    assert!(m.contains("To: carol@example.com"), "{m}");
    assert!(
        m.contains("From: \"Acme IT\" <it@acme.test>")
            || m.contains("From: Acme IT <it@acme.test>"),
        "{m}"
    );
    assert!(m.contains("Subject: Join acme on QuickZTNA"), "{m}");
    assert!(m.contains("as auditor"), "{m}");
    let unfolded = m
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        unfolded.contains("https://ztna.acme.test/sso/login?org=")
            && unfolded.contains("invitation=qzi_"),
        "{m}"
    );
    server.kill().unwrap();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_returns_the_link_instead_and_the_invitation_stands() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let init: Value = serde_json::from_str(&run_offline(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        &data_dir,
    ]))
    .unwrap();
    let token = init["token"].as_str().unwrap().to_owned();
    // Nothing listens there.
    let smtp = format!("smtp://127.0.0.1:{}", free_port());
    let (mut server, base) = serve_with(dir.path(), &["--smtp-url", &smtp]).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({ "email": "dave@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["invitation"]["emailed"], false);
    assert!(
        body["invitation"]["url"]
            .as_str()
            .unwrap()
            .contains("invitation=qzi_")
    );
    assert!(
        body["invitation"]["note"]
            .as_str()
            .unwrap()
            .contains("could not be emailed")
    );
    assert_eq!(body["user"]["status"], "pending");
    server.kill().unwrap();
    let _ = server.wait();
}
