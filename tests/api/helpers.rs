//! `spawn_app()`: the real server on 127.0.0.1:0 with a temp data dir, and a client for it.
//! Set `TEST_LOG=1` to see the server's logs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Once;

use events::Actor;
use events::event::Plan;
use quickztna::bootstrap;
use quickztna::state::{AppState, Settings};
use reqwest::{Method, Response};
use serde_json::Value;
use tokio::sync::oneshot;

static TRACING: Once = Once::new();

/// A device public key no other test device has: 32 bytes in base64, as the API requires.
pub fn public_key() -> String {
    use base64::Engine;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut raw = [0u8; 32];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    raw[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .init();
        }
    });
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The owner token (scope `write`) of the first organization.
    pub token: String,
    pub org_id: String,
    pub client: reqwest::Client,
    pub state: AppState,
    data_dir: PathBuf,
    // Kept so the directory lives as long as the app (and restarts reuse it).
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Options for [`spawn_app_with`].
#[derive(Clone)]
pub struct AppOptions {
    pub plan: Plan,
    /// Lift the organization's rate limits (most tests are not about them).
    pub unlimited: bool,
    pub settings: Option<fn(&mut Settings)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            plan: Plan::Workforce,
            unlimited: true,
            settings: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// Starts a server on a new data dir with one organization (`acme`) and its owner token.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    let listener = bind_any().await;
    let state = open_state(&data_dir, options.settings, &listener).await;
    let created = bootstrap::create_org(&state, "acme", options.plan, Actor::console("test setup"))
        .await
        .expect("create org");
    let head = state.log().head();
    assert!(
        state
            .models()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
    );
    if options.unlimited {
        bootstrap::set_limits(
            &state,
            &created.org_id,
            1_000_000,
            1_000_000,
            Actor::console("test setup"),
        )
        .await
        .expect("lift limits");
    }
    let head = state.log().head();
    assert!(
        state
            .models()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
    );
    let mut app = start_on(listener, state, data_dir);
    app._dir = Some(dir);
    app.token = created.token;
    app.org_id = created.org_id;
    app
}

/// Opens the data dir with the settings a server on `listener` has: links it builds
/// (invitations, the OpenID redirect URL) point at it.
async fn open_state(
    data_dir: &Path,
    tweak: Option<fn(&mut Settings)>,
    listener: &tokio::net::TcpListener,
) -> AppState {
    let mut settings = Settings::new(data_dir);
    settings.public_url = format!("http://{}", listener.local_addr().expect("addr"));
    if let Some(f) = tweak {
        f(&mut settings);
    }
    AppState::open(settings).await.expect("open state")
}

async fn bind_any() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

fn start_on(listener: tokio::net::TcpListener, state: AppState, data_dir: PathBuf) -> TestApp {
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(quickztna::server::run(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    TestApp {
        address,
        token: String::new(),
        org_id: String::new(),
        client: reqwest::Client::new(),
        state,
        data_dir,
        _dir: None,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A full URL for an API path, e.g. `url("/api/v1/tokens")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with the owner token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.token, method, path)
    }

    pub fn request_as(&self, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    /// Issues a token with these scopes and returns its secret.
    pub async fn token_with(&self, scopes: &[&str]) -> String {
        let resp = self
            .post(
                "/api/v1/tokens",
                &serde_json::json!({ "scopes": scopes, "description": format!("test {}", scopes.join(" ")), "expires_in": "2h" }),
            )
            .await;
        assert_eq!(resp.status(), 201, "creating a token");
        let body: Value = resp.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a second organization on the same server; returns (org id, owner token).
    pub async fn second_org(&self, name: &str) -> (String, String) {
        let created = bootstrap::create_org(
            &self.state,
            name,
            Plan::Workforce,
            Actor::console("test setup"),
        )
        .await
        .expect("second org");
        let head = self.state.log().head();
        assert!(
            self.state
                .models()
                .wait_for(head, std::time::Duration::from_secs(10))
                .await
        );
        (created.org_id, created.token)
    }

    /// Stops the server gracefully (snapshot + close) and starts it again on the same data dir.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let listener = bind_any().await;
        let state = open_state(&self.data_dir, None, &listener).await;
        let head = state.log().head();
        assert!(
            state
                .models()
                .wait_for(head, std::time::Duration::from_secs(30))
                .await
        );
        let mut app = start_on(listener, state, self.data_dir.clone());
        app._dir = self._dir.take();
        app.token = std::mem::take(&mut self.token);
        app.org_id = std::mem::take(&mut self.org_id);
        app
    }

    /// Like [`TestApp::restart`], on the same port, with `tweak` applied to the new settings:
    /// for clients that reconnect to the address they know.
    pub async fn restart_on_same_port(mut self, tweak: Option<fn(&mut Settings)>) -> TestApp {
        let addr = self.address.trim_start_matches("http://").to_owned();
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("bind the same port again");
        let state = open_state(&self.data_dir, tweak, &listener).await;
        let head = state.log().head();
        assert!(
            state
                .models()
                .wait_for(head, std::time::Duration::from_secs(30))
                .await
        );
        let mut app = start_on(listener, state, self.data_dir.clone());
        app._dir = self._dir.take();
        app.token = std::mem::take(&mut self.token);
        app.org_id = std::mem::take(&mut self.org_id);
        app
    }

    /// Stops the server and waits until it has released the data dir.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server run");
        }
    }
}

/// Reads a JSON body, failing with the raw text when it is not JSON.
pub async fn json(resp: Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts `resp` is an RFC 7807 problem with this status and code; returns the body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type"
    );
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Request-ID header");
    let body = json(resp).await;
    assert_eq!(
        body["type"],
        format!("https://quickztna.com/docs/api/#errors-{code}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        body["instance"]
            .as_str()
            .is_some_and(|t| t.starts_with('/'))
    );
    assert_eq!(body["request_id"], request_id);
    body
}

// ---- Helpers for the HTTP platform tests (auth, errors, pagination, rate limits, durability).

/// A response header as text (`None` when absent or not text).
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl TestApp {
    /// POSTs `body` to `/api/v1/tokens` as `token`, asserts 201 and returns the created token.
    pub async fn create_token_as(&self, token: &str, body: &Value) -> Value {
        let resp = self
            .request_as(token, Method::POST, "/api/v1/tokens")
            .json(body)
            .send()
            .await
            .expect("POST /tokens");
        let status = resp.status();
        let body = json(resp).await;
        assert_eq!(status, 201, "creating a token: {body}");
        body
    }

    /// Issues a token with these scopes and description (expiring in 2 hours) as the owner;
    /// returns the created token (`id`, `token`, …).
    pub async fn create_token(&self, scopes: &[&str], description: &str) -> Value {
        self.create_token_as(
            &self.token,
            &serde_json::json!({ "scopes": scopes, "description": description, "expires_in": "2h" }),
        )
        .await
    }

    /// The id of the token whose secret is `secret`, from the read model.
    pub fn token_id_of(&self, secret: &str) -> String {
        let hash = quickztna::domain::secret::hash(secret);
        let models = self.state.models().load();
        models
            .state
            .tokens
            .by_secret_hash(&hash)
            .map(|t| t.id.clone())
            .expect("a token with this secret")
    }

    /// Waits until the read models include everything in the log (after a direct append).
    pub async fn wait_caught_up(&self) {
        let head = self.state.log().head();
        assert!(
            self.state
                .models()
                .wait_for(head, std::time::Duration::from_secs(10))
                .await,
            "read models caught up with {head}"
        );
    }

    /// Every item of a list endpoint, following `next_cursor` with this query (`limit=…&…`);
    /// returns the items and the number of pages.
    pub async fn list_all(&self, token: &str, path: &str, query: &str) -> (Vec<Value>, usize) {
        self.list_from(token, path, query, None).await
    }

    /// Like [`TestApp::list_all`], starting at `cursor` (a previous page's `next_cursor`).
    pub async fn list_from(
        &self,
        token: &str,
        path: &str,
        query: &str,
        cursor: Option<String>,
    ) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut cursor = cursor;
        loop {
            let mut url = format!("{path}?{query}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let resp = self
                .request_as(token, Method::GET, &url)
                .send()
                .await
                .expect("GET page");
            let status = resp.status();
            let page = json(resp).await;
            assert_eq!(status, 200, "{url}: {page}");
            pages += 1;
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => {
                    assert!(page["next_cursor"].is_null(), "next_cursor is null: {page}");
                    return (items, pages);
                }
            }
            assert!(pages < 10_000, "pagination makes progress");
        }
    }
}
