//! Secrets on the host, through the real binary: the data directory and everything in it are
//! owner-only, whatever the umask the server was started with.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

/// `quickztna ARGS` started with the permissive umask 022, as from a typical login shell, so
/// that only the binary itself can make its files private.
fn quickztna(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"umask 022; exec "$0" "$@""#)
        .arg(BIN)
        .args(args)
        .env_remove("QUICKZTNA_DATA_DIR")
        .env_remove("QUICKZTNA_LISTEN")
        .env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_AUTH_KEY")
        .env_remove("QUICKZTNA_OWNER_TOKEN_FILE")
        .env("QUICKZTNA_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `quickztna serve` child on a free port.
pub struct Served {
    pub child: Child,
    pub base: String,
    /// What it printed on stdout before it was healthy.
    pub stdout: Vec<String>,
}

/// Starts `quickztna serve --data-dir DIR --listen … EXTRA` and waits for its health check,
/// collecting what it prints on stdout meanwhile.
pub async fn serve(dir: &Path, extra: &[&str]) -> Served {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let mut child = quickztna(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let mut stdout = Vec::new();
    for _ in 0..600 {
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(10), lines.next_line()).await
        {
            stdout.push(line);
        }
        if let Ok(resp) = client.get(format!("{base}/api/v1/health")).send().await
            && resp.status() == 200
        {
            // What it printed before listening may still be in the pipe on a busy machine.
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
            {
                stdout.push(line);
            }
            return Served {
                child,
                base,
                stdout,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("quickztna serve did not become healthy; it printed {stdout:?}");
}

impl Served {
    /// The owner token it printed on its first start.
    pub fn printed_token(&self) -> String {
        self.stdout
            .iter()
            .find(|l| l.starts_with("qz_"))
            .unwrap_or_else(|| panic!("no token in {:?}", self.stdout))
            .clone()
    }

    /// SIGTERM, as a service manager stops it; waits for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("stops within 30 s")
            .expect("wait");
        assert!(status.success(), "clean exit: {status}");
    }
}

/// Every path under `dir` (and `dir` itself) whose mode gives group or others any access.
fn open_to_others(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push((path.clone(), format!("{mode:o}")));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    found
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                stack.push(entry.expect("entry").path());
            }
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_everything_in_it_are_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let served = serve(&data, &[]).await;
    let token = served.printed_token();
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", served.base);

    // Some of everything: events, a device (heartbeats) and read-model snapshots at shutdown.
    for i in 0..5 {
        let resp = client
            .post(api("/tokens"))
            .bearer_auth(&token)
            .json(&json!({ "scopes": ["read"], "description": format!("reader {i}"), "expires_in": "2h" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let key: Value = client
        .post(api("/keys"))
        .bearer_auth(&token)
        .json(&json!({ "reusable": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registered: Value = client
        .post(api("/machine/register"))
        .json(&json!({
            "auth_key": key["key"],
            "hostname": "web-1",
            "os": "linux",
            "os_version": "6.1",
            "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = client
        .post(api("/machine/heartbeat"))
        .bearer_auth(registered["node_credential"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    served.stop().await;

    assert!(
        data.join("heartbeats.bin").exists(),
        "heartbeats were saved"
    );
    assert!(count_files(&data) >= 8, "the server wrote its files");
    assert_eq!(open_to_others(&data), Vec::new(), "group/other access");

    // The offline commands too, on a directory they create.
    let fresh = root.path().join("fresh");
    let out = quickztna(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        fresh.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(open_to_others(&fresh), Vec::new(), "group/other access");
}

#[tokio::test]
async fn a_data_directory_open_to_others_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = quickztna(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("open to other users") && stderr.contains("chmod -R go-rwx"),
        "{stderr}"
    );
    // Its contents are owner-only all the same.
    let inside: Vec<_> = open_to_others(&data)
        .into_iter()
        .filter(|(p, _)| p != &data)
        .collect();
    assert_eq!(inside, Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_token_goes_to_a_new_owner_only_file_instead_of_stdout() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let file = root.path().join("owner.token");
    let file_arg = file.to_str().unwrap();
    let served = serve(&data, &["--owner-token-file", file_arg]).await;
    let printed = served.stdout.join("\n");
    assert!(
        !printed.contains("qz_"),
        "the token is not printed: {printed}"
    );
    assert!(
        printed.contains(file_arg),
        "stdout says where it went: {printed}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(token.starts_with("qz_"), "{token}");
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/tokens", served.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the token in the file works");
    served.stop().await;

    // A restart with the same flag (as a unit file has it) starts, and leaves the file alone.
    let served = serve(&data, &["--owner-token-file", file_arg]).await;
    assert!(served.stdout.iter().all(|l| !l.contains("owner token")));
    served.stop().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
}

#[tokio::test]
async fn an_existing_owner_token_file_is_never_overwritten() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let file = root.path().join("owner.token");
    std::fs::write(&file, "someone else's\n").unwrap();
    let out = quickztna(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--owner-token-file",
        file.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--owner-token-file") && stderr.contains("new file"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("qz_"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "someone else's\n");
}

#[tokio::test]
async fn secrets_given_on_the_command_line_draw_a_warning_pointing_at_the_environment() {
    let unreachable = "http://127.0.0.1:1";
    let stderr = |out: std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for args in [
        vec![
            "--token",
            "qz_on-argv",
            "tokens",
            "list",
            "--server",
            unreachable,
        ],
        vec![
            "tokens",
            "list",
            "--server",
            unreachable,
            "--token=qz_on-argv",
        ],
    ] {
        let err = stderr(quickztna(&args).output().await.unwrap());
        assert!(
            err.contains("warning: --token") && err.contains("QUICKZTNA_TOKEN"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("qz_on-argv"),
            "the warning does not repeat it"
        );
    }
    let err = stderr(
        quickztna(&["tokens", "list", "--server", unreachable])
            .env("QUICKZTNA_TOKEN", "qz_in-env")
            .output()
            .await
            .unwrap(),
    );
    assert!(!err.contains("warning"), "{err}");

    // The agent, stopped early by a state file it cannot write.
    let up = [
        "up",
        "--server",
        unreachable,
        "--state-file",
        "/dev/null/agent.json",
    ];
    let on_argv = [&up[..], &["--auth-key", "qzk_on-argv"]].concat();
    let err = stderr(quickztna(&on_argv).output().await.unwrap());
    assert!(
        err.contains("warning: --auth-key") && err.contains("QUICKZTNA_AUTH_KEY"),
        "{err}"
    );
    let err = stderr(
        quickztna(&up)
            .env("QUICKZTNA_AUTH_KEY", "qzk_in-env")
            .output()
            .await
            .unwrap(),
    );
    assert!(!err.contains("warning"), "{err}");

    // The server, stopped early by a data directory it cannot create: an SMTP password on
    // argv is warned about, without repeating it; a relay URL without one is not.
    let serve = |smtp: &'static str| {
        let mut cmd = quickztna(&["serve", "--data-dir", "/dev/null/data", "--smtp-url", smtp]);
        cmd.env_remove("QUICKZTNA_SMTP_URL");
        cmd
    };
    let err = stderr(
        serve("smtps://relay:s3cret-pw@mail.example.com")
            .output()
            .await
            .unwrap(),
    );
    assert!(
        err.contains("warning: --smtp-url") && err.contains("QUICKZTNA_SMTP_URL"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-pw"),
        "the warning does not repeat it: {err}"
    );
    let err = stderr(serve("smtp://127.0.0.1:2525").output().await.unwrap());
    assert!(!err.contains("warning: --smtp-url"), "{err}");
}
