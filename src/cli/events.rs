//! `quickztna events tail`: the organization's live event stream (`GET /events?stream=true`),
//! one JSON object a line on stdout.
//!
//! A dropped connection (a restart, a network failure, a server that went quiet for longer than
//! three keep-alives) is reopened with `Last-Event-ID` set to the last event printed, so the
//! output has no gap and no duplicate. Reconnects back off from 1 s to 30 s; a `429` or `503`
//! is retried after its `Retry-After`. Any other refusal (a bad filter, a missing scope, the
//! plan, an expired cursor) ends the command with the server's problem. SIGINT or SIGTERM stops
//! it cleanly.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;

use super::CliError;
use super::client::{Client, encode, problem_error};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they happen, one JSON object a line; reconnects where it left off.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only these types: exact types or prefixes, comma-separated (`device.*,key.revoked`).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Start after this event id (its `id`), replaying what came since; without it, only new
    /// events are printed.
    #[arg(long)]
    pub since_id: Option<u64>,
}

/// A connection that shows nothing for this long (five keep-alives) is taken for dead.
const READ_TIMEOUT: Duration = Duration::from_secs(75);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: u64 = 300;

pub async fn run(client: &Client, cmd: EventsCommand) -> Result<(), CliError> {
    match cmd {
        EventsCommand::Tail(args) => {
            tokio::select! {
                done = tail(client, args) => done,
                _ = crate::server::shutdown_signal() => Ok(()),
            }
        }
    }
}

/// How one connection ended.
enum Ended {
    /// The stream closed or broke after it was open: reconnect soon.
    Dropped { printed: bool },
    /// Could not connect, or a 5xx: back off.
    Unreachable(String),
    /// `429`/`503`: come back after this long.
    RetryAfter(Duration),
    /// Whoever read the output is gone (`events tail | head`).
    StdoutClosed,
}

async fn tail(client: &Client, args: TailArgs) -> Result<(), CliError> {
    if client.token().is_some() {
        client.connect().check(client.server(), "the API token")?;
    }
    let http = client.connect().stream_client(
        concat!("quickztna-cli/", env!("CARGO_PKG_VERSION")),
        READ_TIMEOUT,
    )?;
    let mut url = format!("{}/api/v1/events?stream=true", client.server());
    if let Some(t) = &args.event_type {
        url.push_str(&format!("&event_type={}", encode(t)));
    }
    let mut last = args.since_id;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let wait = match follow(&http, client.token(), &url, &mut last).await? {
            Ended::Dropped { printed } => {
                if printed {
                    backoff = FIRST_BACKOFF;
                }
                eprintln!("the event stream closed; reconnecting");
                next_backoff(&mut backoff)
            }
            Ended::Unreachable(why) => {
                let wait = next_backoff(&mut backoff);
                eprintln!("{why}; retrying in {} s", wait.as_secs());
                wait
            }
            Ended::RetryAfter(wait) => wait,
            Ended::StdoutClosed => return Ok(()),
        };
        tokio::time::sleep(wait).await;
    }
}

/// The wait before the next attempt; doubles the next one, up to [`MAX_BACKOFF`].
fn next_backoff(backoff: &mut Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    wait
}

/// One connection: prints its events and moves `last` past each.
async fn follow(
    http: &reqwest::Client,
    token: Option<&str>,
    url: &str,
    last: &mut Option<u64>,
) -> Result<Ended, CliError> {
    let mut req = http.get(url).header("accept", "text/event-stream");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(id) = last {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return Ok(Ended::Unreachable(format!("cannot reach the server: {e}"))),
    };
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_RETRY_AFTER);
        return Ok(Ended::RetryAfter(Duration::from_secs(secs)));
    }
    if status.is_server_error() {
        return Ok(Ended::Unreachable(format!("the server answered {status}")));
    }
    if !status.is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(problem_error(status, &body));
    }
    let mut events = resp.bytes_stream().eventsource();
    let mut printed = false;
    while let Some(next) = events.next().await {
        let Ok(event) = next else {
            break;
        };
        // Every data message is an event; its id is the organization's sequence number.
        if let Ok(id) = event.id.parse::<u64>() {
            *last = Some(id);
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{}", event.data).is_err() {
            return Ok(Ended::StdoutClosed);
        }
        printed = true;
    }
    Ok(Ended::Dropped { printed })
}
