//! Single sign-on from the command line:
//! - `quickztna org set-oidc` points the organization at its OpenID provider, through the API
//!   (`PUT /api/v1/sso/oidc`, scope `users:write`);
//! - `quickztna login --sso` signs a person in: it prints a link, waits while they sign in and
//!   confirm in a browser (`POST /api/v1/sso/cli-login`), and saves the session token it gets,
//!   which acts for them with what their role allows.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{Client, save_login};
use super::connect::Connect;
use super::output::print_json;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Sign in through the organization's identity provider (prints a link to open) instead of
    /// saving a token given with --token.
    #[arg(long)]
    pub sso: bool,
    /// With --sso: the organization (id or name), when the server has several.
    #[arg(long, env = "QUICKZTNA_ORG")]
    pub org: Option<String>,
}

/// `quickztna login --sso`.
pub async fn login_sso(server: &str, connect: Connect, args: LoginArgs) -> Result<(), CliError> {
    connect.check(server, "the session token")?;
    let http = connect.http_client(
        concat!("quickztna-cli/", env!("CARGO_PKG_VERSION")),
        std::time::Duration::from_secs(30),
    )?;
    let server = server.trim_end_matches('/');
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| CliError::new(format!("the OS random source failed: {e}")))?;
    let poll_secret = hex::encode(raw);
    let mut body = json!({ "poll_secret": poll_secret });
    if let Some(org) = &args.org {
        body["org"] = json!(org);
    }
    let started = answer(
        http.post(format!("{server}/api/v1/sso/cli-login"))
            .json(&body)
            .send()
            .await,
    )
    .await?;
    let text = |k: &str| started.1.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let (Some(login_id), Some(auth_url)) = (text("login_id"), text("auth_url")) else {
        return Err(CliError::new("the server's sign-in answer has no link"));
    };
    eprintln!("To sign in, open: {auth_url}");
    let poll = format!("{server}/api/v1/sso/cli-login/{login_id}");
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let (status, body) = answer(
            http.post(&poll)
                .bearer_auth(&poll_secret)
                .json(&json!({}))
                .send()
                .await,
        )
        .await?;
        if status == reqwest::StatusCode::ACCEPTED {
            continue;
        }
        let token = body
            .get("token")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(CliError::new("the server's answer has no session token"));
        }
        save_login(server, token, connect.ca_cert.clone())?;
        eprintln!(
            "Signed in as {} ({}) until {}",
            body.get("email").and_then(|v| v.as_str()).unwrap_or("?"),
            body.get("role").and_then(|v| v.as_str()).unwrap_or("?"),
            body.get("expires_at")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
        );
        return Ok(());
    }
}

/// A 2xx answer's status and JSON; anything else as the server's problem.
async fn answer(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<(reqwest::StatusCode, serde_json::Value), CliError> {
    let resp = sent.map_err(|e| CliError::new(format!("cannot reach the server: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return Ok((status, body));
    }
    let detail = body
        .get("detail")
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    Err(CliError::new(format!(
        "sign-in failed ({status}): {detail}"
    )))
}

#[derive(Debug, Args)]
pub struct SetOidcArgs {
    /// The issuer, exactly as the provider spells it: https://<org>.okta.com,
    /// https://login.microsoftonline.com/<tenant id>/v2.0 (never /common), …
    #[arg(long)]
    pub issuer: String,
    /// The client (application) id the provider issued.
    #[arg(long)]
    pub client_id: String,
    /// A file holding the client secret (a secret on the command line would be in the shell's
    /// history and in `ps`); `-` reads standard input.
    #[arg(long)]
    pub client_secret_file: PathBuf,
}

pub async fn set_oidc(client: &Client, args: SetOidcArgs) -> Result<(), CliError> {
    let secret = if args.client_secret_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.client_secret_file)
    }
    .map_err(|e| CliError::new(format!("{}: {e}", args.client_secret_file.display())))?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(CliError::new(format!(
            "{}: the client secret file is empty",
            args.client_secret_file.display()
        )));
    }
    let body = json!({
        "issuer": args.issuer,
        "client_id": args.client_id,
        "client_secret": secret,
    });
    let answer = client
        .send(reqwest::Method::PUT, "/api/v1/sso/oidc", Some(&body))
        .await?;
    if let Some(redirect) = answer
        .get("oidc")
        .and_then(|o| o.get("redirect_uri"))
        .and_then(|v| v.as_str())
    {
        eprintln!(
            "Single sign-on configured. Register this redirect URI at the provider: {redirect}"
        );
    }
    print_json(&answer);
    Ok(())
}
