//! Joining without a pre-auth key: the device's owner signs in for it (`POST /machine/login`,
//! see `http::machine_login`), like `tailscale up`.
//!
//! The agent prints the sign-in link and polls until the person has signed in and confirmed
//! the device; a link that expires unused is replaced by a new one. It polls with a random
//! secret sent only to the server, so whoever sees the link cannot collect the credential.
//!
//! Re-authentication (the device's key expired, or its owner was deactivated) comes back here:
//! the owner signs in again and the device registers anew with the same public key, which
//! replaces the old registration (a new device id; the overlay address is the organization's
//! next one, since the old one rests in quarantine).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Agent;
use super::call::{Backoff, CallError};
use super::host::os_version;
use crate::cli::CliError;

/// Polling interval when the server does not say.
const DEFAULT_POLL: Duration = Duration::from_secs(2);

impl Agent {
    /// Waits for the owner's sign-in and keeps the registration it yields.
    pub(super) async fn sign_in(&mut self) -> Result<(), CliError> {
        loop {
            let poll_secret = random_secret()?;
            let mut body = json!({
                "hostname": self.hostname,
                "os": std::env::consts::OS,
                "os_version": os_version(),
                "public_key": self.state.public_key,
                "poll_secret": poll_secret,
            });
            if let Some(org) = &self.org {
                body["org"] = json!(org);
            }
            let started = self
                .retrying("Starting the sign-in", "/api/v1/machine/login", None, &body)
                .await
                .map_err(|p| {
                    CliError::new(format!(
                        "cannot start a sign-in with {}: {p} (or join with --auth-key KEY)",
                        self.server
                    ))
                })?;
            let text = |k: &str| started.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(login_id), Some(auth_url)) = (text("login_id"), text("auth_url")) else {
                return Err(CliError::new("the server's sign-in answer has no link"));
            };
            let every = started
                .get("poll_interval_secs")
                .and_then(Value::as_u64)
                .filter(|s| (1..=60).contains(s))
                .map_or(DEFAULT_POLL, Duration::from_secs);
            eprintln!("To sign in, open: {auth_url}");
            let path = format!("/api/v1/machine/login/{login_id}");
            loop {
                tokio::time::sleep(every).await;
                match self.call(&path, Some(&poll_secret), &json!({})).await {
                    Ok(answer) if answer.get("node_credential").is_some() => {
                        self.adopt(&answer, None)
                            .map_err(|p| CliError::new(p.to_string()))?;
                        return Ok(());
                    }
                    // 202: nobody signed in yet, or they are confirming.
                    Ok(_) => {}
                    // Expired, or forgotten by a server that restarted meanwhile.
                    Err(CallError::Problem(p))
                        if p.status == StatusCode::GONE || p.status == StatusCode::UNAUTHORIZED =>
                    {
                        eprintln!("The sign-in link expired; here is a new one");
                        break;
                    }
                    Err(CallError::Problem(p)) => {
                        return Err(CliError::new(format!("the sign-in was refused: {p}")));
                    }
                    Err(CallError::Transient { message, .. }) => {
                        eprintln!("Waiting for the sign-in: {message}; still trying");
                    }
                }
            }
        }
    }

    /// One call, retried with backoff while it fails transiently.
    async fn retrying(
        &self,
        what: &str,
        path: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Value, super::call::Problem> {
        let mut backoff = Backoff::default();
        loop {
            match self.call(path, bearer, body).await {
                Ok(answer) => return Ok(answer),
                Err(CallError::Problem(p)) => return Err(p),
                Err(CallError::Transient {
                    message,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| backoff.next());
                    eprintln!(
                        "{what} failed: {message}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

fn random_secret() -> Result<String, CliError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| CliError::new(format!("the OS random source failed: {e}")))?;
    Ok(hex::encode(raw))
}
