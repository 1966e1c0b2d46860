//! `quickztna webhooks create|list|get|update|remove|rotate-secret|deliveries|test|replay`:
//! the organization's webhook destinations and what happened to their deliveries.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::CliError;
use super::ListArgs;
use super::client::{Client, encode};
use super::output::{print_json, print_list};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook; prints its signing secret once.
    Create(CreateArgs),
    /// List the organization's webhooks.
    List(ListArgs),
    /// Show one webhook and where its deliveries stand.
    Get { id: String },
    /// Change a webhook's URL, event types or description, or enable/disable it.
    Update(UpdateArgs),
    /// Remove a webhook: deliveries stop and its secret is erased.
    Remove { id: String },
    /// Make a new signing secret; prints it once. The old one keeps signing for the grace
    /// period.
    RotateSecret {
        id: String,
        /// How long the old secret also signs: 30m, 24h (default), up to 7d; 0s to stop now.
        #[arg(long)]
        grace_period: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The last delivery attempts (newest first).
    Deliveries {
        id: String,
        /// Filter expression, e.g. `outcome:failed`.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Send a signed ping now and print the receiver's answer.
    Test {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver again every subscribed event from an event id on.
    Replay {
        id: String,
        /// The first event id to deliver again (as in the audit log).
        #[arg(long)]
        since_id: u64,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Where to POST events (https://…).
    #[arg(long)]
    pub url: String,
    /// Event type to send, exact or a prefix like `device.*` (repeatable; default: all).
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Print the whole JSON response.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: String,
    #[arg(long)]
    pub url: Option<String>,
    /// Replaces the event types (repeatable); `--all-events` sends every event.
    #[arg(long = "event-type", conflicts_with = "all_events")]
    pub event_types: Vec<String>,
    #[arg(long)]
    pub all_events: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Resume deliveries (also of a webhook the server disabled).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Stop deliveries; events wait for it to be enabled again.
    #[arg(long)]
    pub disable: bool,
    #[arg(long)]
    pub json: bool,
}

const COLUMNS: &[&str] = &[
    "id",
    "status",
    "url",
    "event_types",
    "last_event_id",
    "description",
];

fn path(id: &str, rest: &str) -> String {
    format!("/api/v1/webhooks/{}{rest}", encode(id))
}

pub async fn run(client: &Client, cmd: WebhooksCommand) -> Result<(), CliError> {
    match cmd {
        WebhooksCommand::Create(args) => {
            let mut body = Map::new();
            body.insert("url".into(), json!(args.url));
            body.insert("event_types".into(), json!(args.event_types));
            if let Some(d) = &args.description {
                body.insert("description".into(), json!(d));
            }
            let created = client
                .post("/api/v1/webhooks", &Value::Object(body))
                .await?;
            if args.json {
                print_json(&created);
            } else {
                show_secret("Created webhook", &created["id"], &created["secret"])?;
            }
            Ok(())
        }
        WebhooksCommand::List(args) => {
            let query = match &args.filter {
                Some(f) => format!("/api/v1/webhooks?filter={}", encode(f)),
                None => "/api/v1/webhooks?".to_owned(),
            };
            let items = client.get_all(&query).await?;
            print_list(&items, COLUMNS, args.json);
            Ok(())
        }
        WebhooksCommand::Get { id } => {
            print_json(&client.get(&path(&id, "")).await?);
            Ok(())
        }
        WebhooksCommand::Update(args) => {
            let mut body = Map::new();
            if let Some(u) = &args.url {
                body.insert("url".into(), json!(u));
            }
            if args.all_events {
                body.insert("event_types".into(), json!([]));
            } else if !args.event_types.is_empty() {
                body.insert("event_types".into(), json!(args.event_types));
            }
            if let Some(d) = &args.description {
                body.insert("description".into(), json!(d));
            }
            if args.enable || args.disable {
                body.insert("enabled".into(), json!(args.enable));
            }
            let changed = client
                .send(
                    Method::PATCH,
                    &path(&args.id, ""),
                    Some(&Value::Object(body)),
                )
                .await?;
            if args.json {
                print_json(&changed);
            } else {
                print_list(std::slice::from_ref(&changed), COLUMNS, false);
            }
            Ok(())
        }
        WebhooksCommand::Remove { id } => {
            client.delete(&path(&id, "")).await?;
            eprintln!("Removed webhook {id}");
            Ok(())
        }
        WebhooksCommand::RotateSecret {
            id,
            grace_period,
            json,
        } => {
            let body = match grace_period {
                Some(g) => json!({ "grace_period": g }),
                None => json!({}),
            };
            let rotated = client.post(&path(&id, "/rotate-secret"), &body).await?;
            if json {
                print_json(&rotated);
            } else {
                eprintln!(
                    "The previous secret also signs until {}.",
                    rotated["previous_secret_expires_at"]
                        .as_str()
                        .unwrap_or("?")
                );
                show_secret(
                    "New secret of webhook",
                    &rotated["webhook_id"],
                    &rotated["secret"],
                )?;
            }
            Ok(())
        }
        WebhooksCommand::Deliveries { id, filter, json } => {
            let query = match &filter {
                Some(f) => path(&id, &format!("/deliveries?filter={}", encode(f))),
                None => path(&id, "/deliveries?"),
            };
            let items = client.get_all(&query).await?;
            print_list(
                &items,
                &[
                    "time",
                    "event_id",
                    "event_type",
                    "attempt",
                    "outcome",
                    "status",
                    "error",
                    "latency_ms",
                    "next_retry_at",
                ],
                json,
            );
            Ok(())
        }
        WebhooksCommand::Test { id, json } => {
            let result = client.post(&path(&id, "/test"), &json!({})).await?;
            if json {
                print_json(&result);
            }
            let d = &result["delivery"];
            if result["delivered"].as_bool() == Some(true) {
                if !json {
                    eprintln!("Delivered: HTTP {} in {} ms", d["status"], d["latency_ms"]);
                }
                Ok(())
            } else {
                let why = match d["status"].as_u64() {
                    Some(s) => format!("the receiver answered HTTP {s}"),
                    None => d["error"].as_str().unwrap_or("no answer").to_owned(),
                };
                Err(CliError::new(format!("the ping was not delivered: {why}")))
            }
        }
        WebhooksCommand::Replay { id, since_id } => {
            client
                .post(
                    &path(&id, &format!("/replay?since_id={since_id}")),
                    &json!({}),
                )
                .await?;
            eprintln!("Webhook {id} will receive its events again from id {since_id}");
            Ok(())
        }
    }
}

/// Prints a secret once: the note on stderr, the secret alone on stdout (for `| pbcopy`).
fn show_secret(what: &str, id: &Value, secret: &Value) -> Result<(), CliError> {
    let secret = secret
        .as_str()
        .ok_or_else(|| CliError::new("the server's answer has no secret"))?;
    eprintln!(
        "{what} {}. Its signing secret is shown only this once:",
        id.as_str().unwrap_or("?")
    );
    println!("{secret}");
    Ok(())
}
