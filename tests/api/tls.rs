//! TLS, through the real binary: `serve --tls-cert --tls-key` with a private CA's certificate,
//! the CLI trusting that CA with `--ca-cert`, a new certificate served after SIGHUP (and the old
//! one kept when the new files are bad); and the CLI and the agent refusing to send secrets
//! over plain `http://` to another machine unless `--insecure`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use reqwest::tls::{Certificate, TlsInfo};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::helpers::spawn_app;

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

/// Upper bound for waits that only guard against a hang.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A private CA, and the server certificate files it issues.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "quickztna test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        Pki { ca, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).expect("ca.pem")
    }

    /// Issues a certificate for 127.0.0.1 and localhost into cert.pem and key.pem; returns it
    /// (DER).
    fn issue(&self) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &*self.ca)
            .expect("certificate");
        std::fs::write(self.path("cert.pem"), cert.pem()).expect("write cert.pem");
        std::fs::write(self.path("key.pem"), key.serialize_pem()).expect("write key.pem");
        cert.der().to_vec()
    }
}

/// The real binary with a private home, so no saved login or environment leaks in.
fn quickztna(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("QUICKZTNA_LOG", "info")
        .env_remove("QUICKZTNA_SERVER")
        .env_remove("QUICKZTNA_TOKEN")
        .env_remove("QUICKZTNA_CA_CERT")
        .env_remove("QUICKZTNA_AUTH_KEY")
        .env_remove("QUICKZTNA_DATA_DIR")
        .env_remove("QUICKZTNA_LISTEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(home: &Path, args: &[&str]) -> Output {
    tokio::time::timeout(HANG_GUARD, quickztna(home).args(args).output())
        .await
        .expect("quickztna finishes")
        .expect("run quickztna")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `quickztna serve` with TLS, and what it logs.
struct TlsServer {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
    logged: Arc<Notify>,
}

impl TlsServer {
    async fn start(home: &Path, data_dir: &Path, pki: &Pki) -> TlsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = quickztna(home)
            .args(["serve", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", &listen])
            .args(["--tls-cert", pki.path("cert.pem").to_str().unwrap()])
            .args(["--tls-key", pki.path("key.pem").to_str().unwrap()])
            .args(["--header-read-timeout", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let log = Arc::new(Mutex::new(String::new()));
        let logged = Arc::new(Notify::new());
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn({
            let (log, logged) = (log.clone(), logged.clone());
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                    logged.notify_waiters();
                }
            }
        });
        let server = TlsServer {
            child,
            base: format!("https://{listen}"),
            log,
            logged,
        };
        let client = https_client(&pki.ca_pem());
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                if let Ok(resp) = client.get(server.url("/api/v1/health")).send().await
                    && resp.status() == 200
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("serve answers over TLS; its log:\n{}", server.log()));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `text` `times` times.
    async fn logs(&self, text: &str, times: usize) {
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                let logged = self.logged.notified();
                if self.log().matches(text).count() >= times {
                    return;
                }
                logged.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the server logs {text:?}; its log:\n{}", self.log()));
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("serve is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    async fn stop(mut self) {
        self.signal("TERM");
        let status = tokio::time::timeout(HANG_GUARD, self.child.wait())
            .await
            .expect("serve stops on SIGTERM")
            .expect("wait for serve");
        assert!(
            status.success(),
            "serve exits cleanly; its log:\n{}",
            self.log()
        );
    }
}

/// A client that trusts only `ca_pem` and records the server's certificate.
fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(Certificate::from_pem_bundle(ca_pem).expect("CA PEM"))
        .tls_info(true)
        .build()
        .expect("client")
}

/// The certificate the server presents to a new client (DER). A client of its own: one that
/// resumed an earlier TLS session would see that session's certificate.
async fn served_certificate(pki: &Pki, server: &TlsServer) -> Vec<u8> {
    let resp = https_client(&pki.ca_pem())
        .get(server.url("/api/v1/health"))
        .send()
        .await
        .expect("GET /health over TLS");
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::peer_certificate)
        .expect("the peer certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_tls_answers_https_and_swaps_its_certificate_on_sighup() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let first = pki.issue();
    let init = run(
        home.path(),
        &[
            "init",
            "--org",
            "acme",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(init.status.success(), "init: {}", stderr(&init));
    let init: Value = serde_json::from_slice(&init.stdout).expect("init prints JSON");
    let token = init["token"].as_str().expect("token").to_owned();

    let server = TlsServer::start(home.path(), data.path(), &pki).await;
    assert_eq!(served_certificate(&pki, &server).await, first);

    // The CLI trusts the private CA with --ca-cert, and only then.
    let ca = pki.path("ca.pem");
    let list = [
        "--server",
        &server.base,
        "--token",
        &token,
        "tokens",
        "list",
        "--json",
    ];
    let out = run(
        home.path(),
        &[&["--ca-cert", ca.to_str().unwrap()][..], &list].concat(),
    )
    .await;
    assert!(
        out.status.success(),
        "tokens list over TLS: {}",
        stderr(&out)
    );
    let tokens: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(tokens.as_array().map(Vec::len), Some(1));
    let out = run(home.path(), &list).await;
    assert!(
        !out.status.success(),
        "a certificate of an unknown CA is refused"
    );
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
    // `login --ca-cert` saves the CA with the server and token.
    let login = [
        "login",
        "--server",
        &server.base,
        "--token",
        &token,
        "--ca-cert",
        ca.to_str().unwrap(),
    ];
    let out = run(home.path(), &login).await;
    assert!(out.status.success(), "login: {}", stderr(&out));
    let out = run(home.path(), &["tokens", "list", "--json"]).await;
    assert!(out.status.success(), "after login: {}", stderr(&out));

    // A connection that never starts its handshake is closed.
    let addr = server.base.trim_start_matches("https://");
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANG_GUARD, silent.read(&mut buf))
        .await
        .expect("the server closes a connection without a handshake");
    assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered");

    // A renewed certificate is served from the next handshake after SIGHUP.
    let second = pki.issue();
    assert_ne!(first, second);
    server.signal("HUP");
    server.logs("reloaded the TLS certificate", 1).await;
    assert_eq!(served_certificate(&pki, &server).await, second);

    // Files that do not load leave the certificate in use.
    std::fs::write(pki.path("cert.pem"), "not a certificate").unwrap();
    server.signal("HUP");
    server.logs("could not reload the TLS certificate", 1).await;
    assert_eq!(served_certificate(&pki, &server).await, second);
    let _ = pki.issue();
    std::fs::write(
        pki.path("key.pem"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    server.signal("HUP");
    server.logs("could not reload the TLS certificate", 2).await;
    assert_eq!(served_certificate(&pki, &server).await, second);
    assert!(
        !server.log().contains("PRIVATE KEY"),
        "no key material in the log"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_agent_refuse_to_send_secrets_over_plain_http_to_another_machine() {
    let home = tempfile::tempdir().unwrap();
    let refusal = "refusing to send";

    // Refused before any connection, with what to do instead.
    let out = run(
        home.path(),
        &[
            "--server",
            "http://10.1.2.3:8080",
            "--token",
            "qz_x",
            "tokens",
            "list",
        ],
    )
    .await;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains(&format!("{refusal} the API token")), "{text}");
    assert!(
        text.contains("https://") && text.contains("--insecure"),
        "{text}"
    );
    assert!(
        !text.contains("cannot reach"),
        "nothing was attempted: {text}"
    );
    let out = run(
        home.path(),
        &[
            "--server",
            "http://10.1.2.3:8080",
            "up",
            "--auth-key",
            "qzk_x",
        ],
    )
    .await;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains(&format!("{refusal} the pre-auth key and node credential")),
        "{text}"
    );
    assert!(
        !home.path().join("state/quickztna/agent.json").exists(),
        "the agent stopped before writing its state"
    );

    // Nothing reaches the address: not even a connection. (0.0.0.0 is not loopback by name,
    // though Linux connects it to this machine.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://0.0.0.0:{}", listener.local_addr().unwrap().port());
    let out = run(
        home.path(),
        &["--server", &elsewhere, "--token", "qz_x", "keys", "list"],
    )
    .await;
    assert!(stderr(&out).contains(refusal), "{}", stderr(&out));
    let out = run(
        home.path(),
        &["--server", &elsewhere, "up", "--auth-key", "qzk_x"],
    )
    .await;
    assert!(stderr(&out).contains(refusal), "{}", stderr(&out));
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no connection was made"
    );

    // --insecure lets the CLI through to the same kind of address; loopback needs nothing.
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap();
    let plain_elsewhere = format!("http://0.0.0.0:{port}");
    let out = run(
        home.path(),
        &[
            "--server",
            &plain_elsewhere,
            "--token",
            &app.token,
            "--insecure",
            "tokens",
            "list",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for loopback in [format!("http://localhost:{port}"), app.address.clone()] {
        let out = run(
            home.path(),
            &[
                "--server", &loopback, "--token", &app.token, "tokens", "list", "--json",
            ],
        )
        .await;
        assert!(out.status.success(), "{loopback}: {}", stderr(&out));
    }

    // And the agent: with --insecure it connects.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = format!("http://0.0.0.0:{}", listener.local_addr().unwrap().port());
    let mut agent = quickztna(home.path())
        .args([
            "--server",
            &elsewhere,
            "--insecure",
            "up",
            "--auth-key",
            "qzk_x",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    tokio::time::timeout(HANG_GUARD, listener.accept())
        .await
        .expect("the agent connects with --insecure")
        .expect("accept");
    agent.kill().await.expect("stop the agent");
}
