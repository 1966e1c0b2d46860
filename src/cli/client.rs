//! The HTTP client behind every CLI command.
//!
//! The server and token come from `--server`/`--token`, else `QUICKZTNA_SERVER`/
//! `QUICKZTNA_TOKEN`, else the file `quickztna login` wrote, else `http://127.0.0.1:8080`.
//! A 429 or 503 is retried after the server's `Retry-After`; any other problem is printed as its
//! title and detail. A token is never sent over plain `http://` to another machine unless
//! `--insecure` ([`Connect`]).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CliError;
use super::connect::Connect;
use crate::config::ClientArgs;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
const MAX_RETRIES: u32 = 8;

/// What `quickztna login` saves.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedLogin {
    pub server: Option<String>,
    pub token: Option<String>,
    /// The `--ca-cert` given to `login`, if any.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/quickztna/login.json`, or `~/.config/quickztna/login.json`.
pub fn login_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("quickztna").join("login.json"))
}

fn read_login() -> SavedLogin {
    login_file()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// `quickztna login`: checks the token against the server, then saves both, and the CA file
/// if given (mode 0600).
pub async fn login(server: &str, token: &str, connect: Connect) -> Result<(), CliError> {
    let ca_cert = connect.ca_cert.clone();
    let client = Client::new(server.to_owned(), Some(token.to_owned()), connect)?;
    client
        .get("/api/v1/tokens?limit=1")
        .await
        .map_err(|e| CliError::new(format!("the server did not accept this token: {e}")))?;
    save_login(server, token, ca_cert)
}

/// Saves the server, the token and the CA file (mode 0600) for later commands.
pub fn save_login(server: &str, token: &str, ca_cert: Option<PathBuf>) -> Result<(), CliError> {
    let path =
        login_file().ok_or_else(|| CliError::new("cannot find a config directory (set HOME)"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    }
    let body = serde_json::to_vec_pretty(&SavedLogin {
        server: Some(server.to_owned()),
        token: Some(token.to_owned()),
        ca_cert,
    })
    .map_err(|e| CliError::new(e.to_string()))?;
    events::durable::replace(&path, &[&body])
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    eprintln!("Saved the server and token to {}", path.display());
    Ok(())
}

/// A configured API client.
#[derive(Debug, Clone)]
pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
    connect: Connect,
}

impl Client {
    pub fn new(
        server: String,
        token: Option<String>,
        connect: Connect,
    ) -> Result<Client, CliError> {
        let http = connect.http_client(
            concat!("quickztna-cli/", env!("CARGO_PKG_VERSION")),
            Duration::from_secs(60),
        )?;
        Ok(Client {
            server: server.trim_end_matches('/').to_owned(),
            token,
            http,
            connect,
        })
    }

    /// Resolves the server, token and CA file from flags, environment and the login file.
    pub fn resolve(args: &ClientArgs) -> Result<Client, CliError> {
        let saved = read_login();
        let server = args
            .server
            .clone()
            .or(saved.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = args.token.clone().or(saved.token);
        let connect = Connect {
            ca_cert: args.ca_cert.clone().or(saved.ca_cert),
            insecure: args.insecure,
        };
        Client::new(server, token, connect)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The API token, if one is configured.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// How this client reaches the server (the agent reuses it).
    pub fn connect(&self) -> &Connect {
        &self.connect
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends a request, retrying after `Retry-After` on 429/503; returns the JSON body (Null
    /// for 204).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let bytes = self
            .request(method, path, body)
            .await
            .map_err(Failure::into_error)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::new(format!("the server sent invalid JSON: {e}")))
    }

    /// GETs `path` and returns the body's bytes, telling a request that never got a whole
    /// answer (worth retrying: `audit-log export` resumes) from one the server refused.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, Failure> {
        self.request(Method::GET, path, None).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, Failure> {
        let body = match body {
            Some(v) => Body::Json(v),
            None => Body::None,
        };
        let (status, _, bytes) = self.exchange(method, path, body, &[]).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(Failure::Answered(status, problem_error(status, &bytes)))
    }

    /// Sends a request with `body` and extra `headers`, retrying after `Retry-After` on
    /// 429/503, and returns the answer whatever its status (for callers that read a problem's
    /// extra members, or headers such as `ETag`).
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), Failure> {
        if self.token.is_some() {
            self.connect
                .check(&self.server, "the API token")
                .map_err(Failure::Refused)?;
        }
        let url = format!("{}{}", self.server, path);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(token) = &self.token {
                req = req.bearer_auth(token);
            }
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            req = match &body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Raw {
                    content_type,
                    bytes,
                } => req
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.to_vec()),
            };
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Transport(format!("cannot reach {}: {e}", self.server)))?;
            let status = resp.status();
            if (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                && attempt < MAX_RETRIES
            {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 120);
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| Failure::Transport(format!("reading the response: {e}")))?;
            return Ok((status, headers, bytes.to_vec()));
        }
    }

    /// Follows `next_cursor` from `path` (which must already have a `?`) and returns all items.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}&limit=200&cursor={}", encode(c)),
                None => format!("{path}&limit=200"),
            };
            let page = self.get(&page_path).await?;
            if let Some(arr) = page.get("items").and_then(Value::as_array) {
                items.extend(arr.iter().cloned());
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

/// What a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// Bytes in a media type of the caller's (a policy as YAML).
    Raw {
        content_type: &'a str,
        bytes: &'a [u8],
    },
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
    /// No whole answer: the connection failed or dropped, or timed out.
    Transport(String),
    /// The server answered with this status and problem.
    Answered(StatusCode, CliError),
    /// Refused before sending (a token over plain HTTP to another machine).
    Refused(CliError),
}

impl Failure {
    pub fn into_error(self) -> CliError {
        match self {
            Failure::Transport(message) => CliError::new(message),
            Failure::Answered(_, e) | Failure::Refused(e) => e,
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A problem body as the message of a failed command.
pub fn problem_error(status: StatusCode, body: &[u8]) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = match (field("title"), field("detail")) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        (Some(t), None) => t,
        _ => format!("the server answered {status}"),
    };
    let message = match field("request_id") {
        Some(id) if status.is_server_error() => format!("{message} (request id {id})"),
        _ => message,
    };
    CliError::new(message)
}
