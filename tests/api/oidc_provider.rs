//! A real OpenID provider for the SSO tests (`tests/oidc/provider.mjs`, panva's certified
//! `oidc-provider` on node), and a headless "browser" that signs a person in through it.
//!
//! The provider runs as a child process on a free port of 127.0.0.1 and is killed when the
//! [`OidcProvider`] is dropped. Its node modules come from `npm ci --prefix tests/oidc`
//! (`.ci/run` does it).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// One client registered at the provider.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

impl ClientSpec {
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> ClientSpec {
        ClientSpec {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![redirect_uri.into()],
        }
    }
}

pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`
    pub issuer: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the provider's npm packages (pinned by `tests/oidc/package-lock.json`) the first
/// time a test needs them, so that `cargo test` works on a fresh checkout as it is.
fn ensure_installed(dir: &std::path::Path) {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed || dir.join("node_modules/oidc-provider").is_dir() {
        *installed = true;
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .output()
        .expect("run npm (node and npm are needed for the OpenID provider the SSO tests use)");
    assert!(
        out.status.success() && dir.join("node_modules/oidc-provider").is_dir(),
        "npm ci --prefix tests/oidc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    *installed = true;
}

impl OidcProvider {
    /// Starts the provider with these clients and accounts (`{login: {email, email_verified,
    /// name, preferred_username, groups}}`) and waits until it accepts connections.
    pub async fn start(clients: &[ClientSpec], accounts: &Value) -> OidcProvider {
        OidcProvider::start_with(clients, accounts, 0, false).await
    }

    /// [`Self::start`] on `port` (0: any free one), signing with a key of its own when
    /// `fresh_keys` (a restart on the same port then rotates the provider's keys).
    pub async fn start_with(
        clients: &[ClientSpec],
        accounts: &Value,
        port: u16,
        fresh_keys: bool,
    ) -> OidcProvider {
        let dir = harness_dir();
        ensure_installed(&dir);
        let clients: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({"client_id": c.client_id, "client_secret": c.client_secret,
                       "redirect_uris": c.redirect_uris})
            })
            .collect();
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args(["--port", &port.to_string()])
            .env("OIDC_FRESH_KEYS", if fresh_keys { "1" } else { "0" })
            .current_dir(&dir)
            .env("OIDC_CLIENTS", Value::Array(clients).to_string())
            .env("OIDC_ACCOUNTS", accounts.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node (is node on PATH?)");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut text = sink.lock().unwrap();
                if text.len() < 64 * 1024 {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let (Some(issuer), Some(tx)) = (line.strip_prefix("READY "), tx.take()) {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(issuer)) => issuer,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OpenID provider did not start: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        OidcProvider {
            issuer,
            child,
            stderr,
        }
    }

    /// Replaces one account's claims (e.g. their groups before a second sign-in).
    pub async fn set_account(&self, login: &str, claims: &Value) {
        let resp = reqwest::Client::new()
            .put(format!("{}/__test/accounts/{login}", self.issuer))
            .body(claims.to_string())
            .send()
            .await
            .expect("provider control endpoint");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        reqwest::Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.port())
            .expect("the issuer has a port")
    }

    /// What the provider wrote on stderr so far (for assertion messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A person's browser: follows redirects itself (so a test sees each hop), keeps cookies per
/// host:port, and fills in the provider's login and consent forms.
pub struct Browser {
    client: reqwest::Client,
    jar: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar: Mutex::new(HashMap::new()),
        }
    }

    fn origin(url: &reqwest::Url) -> String {
        format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        )
    }

    fn with_cookies(
        &self,
        url: &reqwest::Url,
        req: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        let jar = self.jar.lock().unwrap();
        match jar.get(&Self::origin(url)) {
            Some(cookies) if !cookies.is_empty() => {
                let header = cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                req.header(reqwest::header::COOKIE, header)
            }
            _ => req,
        }
    }

    fn keep_cookies(&self, url: &reqwest::Url, resp: &Response) {
        let mut jar = self.jar.lock().unwrap();
        let cookies = jar.entry(Self::origin(url)).or_default();
        for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or("");
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            let expired = value
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970")
                || value.to_ascii_lowercase().contains("max-age=0");
            if expired || val.is_empty() {
                cookies.remove(name.trim());
            } else {
                cookies.insert(name.trim().to_owned(), val.to_owned());
            }
        }
    }

    pub async fn get(&self, url: &str) -> Response {
        let parsed = reqwest::Url::parse(url).expect("url");
        let resp = self
            .with_cookies(&parsed, self.client.get(parsed.clone()))
            .send()
            .await
            .expect("GET");
        self.keep_cookies(&parsed, &resp);
        resp
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Response {
        let parsed = reqwest::Url::parse(url).expect("url");
        let body = serde_urlencoded::to_string(form).expect("form");
        let resp = self
            .with_cookies(&parsed, self.client.post(parsed.clone()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .expect("POST");
        self.keep_cookies(&parsed, &resp);
        resp
    }

    /// Starts at `start` (our `/sso/login?...`), follows every redirect, signs in as `login` on
    /// the provider's login page and grants consent, and stops at the first URL that begins
    /// with `stop_prefix` (our callback), which it returns without requesting it.
    pub async fn authorize(&self, start: &str, login: &str, stop_prefix: &str) -> String {
        let mut url = start.to_owned();
        let mut pending: Option<Response> = None;
        for _ in 0..20 {
            let resp = match pending.take() {
                Some(resp) => resp,
                None => {
                    if url.starts_with(stop_prefix) {
                        return url;
                    }
                    self.get(&url).await
                }
            };
            let here = resp.url().clone();
            if resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .expect("a redirect has a Location");
                url = here.join(location).expect("location").to_string();
                continue;
            }
            let status = resp.status();
            let page = resp.text().await.unwrap_or_default();
            assert_eq!(status, StatusCode::OK, "unexpected page at {here}: {page}");
            let (action, prompt) =
                form_of(&page).unwrap_or_else(|| panic!("no sign-in form at {here}: {page}"));
            let action = here.join(&action).expect("form action").to_string();
            let resp = match prompt.as_str() {
                "login" => {
                    self.post_form(
                        &action,
                        &[("prompt", "login"), ("login", login), ("password", "x")],
                    )
                    .await
                }
                "consent" => self.post_form(&action, &[("prompt", "consent")]).await,
                other => panic!("unknown prompt {other} at {here}"),
            };
            pending = Some(resp);
        }
        panic!("sign-in did not reach {stop_prefix}");
    }

    /// [`Self::authorize`], then requests the callback URL and returns its response.
    pub async fn sign_in(&self, start: &str, login: &str, stop_prefix: &str) -> Response {
        let callback = self.authorize(start, login, stop_prefix).await;
        self.get(&callback).await
    }
}

/// The first form's `action` and its hidden `prompt` value, from the provider's dev pages.
fn form_of(page: &str) -> Option<(String, String)> {
    let form = &page[page.find("<form")?..];
    let action = attr(form, "action")?;
    let prompt_at = form.find("name=\"prompt\"")?;
    let prompt = attr(&form[prompt_at..], "value")?;
    Some((action.replace("&amp;", "&"), prompt))
}

fn attr(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

/// The value of `name` in a URL's query.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
