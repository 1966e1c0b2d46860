//! `quickztna keys create|list|revoke`: pre-auth keys, which devices use to join.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::CliError;
use super::ListArgs;
use super::client::{Client, encode};
use super::devices::normalize_tag;
use super::output::{print_json, print_list};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a pre-auth key; prints it once.
    Create(KeysCreateArgs),
    /// List active pre-auth keys (never the keys themselves).
    List(ListArgs),
    /// Revoke a pre-auth key.
    Revoke {
        /// Key id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// The key can register many devices (default: one).
    #[arg(long)]
    pub reusable: bool,
    /// Devices joined with it are removed automatically after going offline.
    #[arg(long)]
    pub ephemeral: bool,
    /// Tag given to every device joined with it (repeatable), with or without `tag:`.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// User who owns the devices joined with it.
    #[arg(long)]
    pub owner: Option<String>,
    /// Lifetime, up to 90d (default 1h).
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Expiry as an RFC 3339 time, instead of --expires-in.
    #[arg(long, conflicts_with = "expires_in")]
    pub expires_at: Option<String>,
    /// Label shown in listings and the audit log.
    #[arg(long)]
    pub description: Option<String>,
    /// Most devices it may register (reusable keys).
    #[arg(long)]
    pub max_uses: Option<u64>,
    /// Print the whole JSON response.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Create(args) => create(client, args).await,
        KeysCommand::List(args) => {
            let path = match &args.filter {
                Some(f) => format!("/api/v1/keys?filter={}", encode(f)),
                None => "/api/v1/keys?".to_owned(),
            };
            let items = client.get_all(&path).await?;
            print_list(
                &items,
                &[
                    "id",
                    "prefix",
                    "status",
                    "reusable",
                    "ephemeral",
                    "tags",
                    "uses",
                    "max_uses",
                    "expires_at",
                    "description",
                ],
                args.json,
            );
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            client
                .delete(&format!("/api/v1/keys/{}", encode(&id)))
                .await?;
            eprintln!("Revoked pre-auth key {id}");
            Ok(())
        }
    }
}

/// The body of `POST /keys`: only what was given, so the server's defaults apply.
pub fn create_body(args: &KeysCreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("reusable".into(), json!(args.reusable));
    body.insert("ephemeral".into(), json!(args.ephemeral));
    let tags: Vec<String> = args.tags.iter().map(|t| normalize_tag(t)).collect();
    body.insert("tags".into(), json!(tags));
    if let Some(owner) = &args.owner {
        body.insert("owner".into(), json!(owner));
    }
    if let Some(d) = &args.expires_in {
        body.insert("expires_in".into(), json!(d));
    }
    if let Some(t) = &args.expires_at {
        body.insert("expires_at".into(), json!(t));
    }
    if let Some(d) = &args.description {
        body.insert("description".into(), json!(d));
    }
    if let Some(n) = args.max_uses {
        body.insert("max_uses".into(), json!(n));
    }
    Value::Object(body)
}

async fn create(client: &Client, args: KeysCreateArgs) -> Result<(), CliError> {
    let created = client.post("/api/v1/keys", &create_body(&args)).await?;
    if args.json {
        print_json(&created);
        return Ok(());
    }
    let text = |k: &str| created.get(k).and_then(Value::as_str).unwrap_or("?");
    let mut traits = vec![if created["reusable"].as_bool() == Some(true) {
        match created.get("max_uses").and_then(Value::as_u64) {
            Some(n) => format!("reusable up to {n} times"),
            None => "reusable".to_owned(),
        }
    } else {
        "single-use".to_owned()
    }];
    if created["ephemeral"].as_bool() == Some(true) {
        traits.push("ephemeral".into());
    }
    if let Some(tags) = created.get("tags").and_then(Value::as_array)
        && !tags.is_empty()
    {
        let tags: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
        traits.push(format!("tags {}", tags.join(",")));
    }
    let key = created
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::new("the server's answer has no key"))?;
    eprintln!(
        "Created pre-auth key {} ({}; expires {}). It is shown only this once:",
        text("id"),
        traits.join(", "),
        text("expires_at"),
    );
    println!("{key}");
    Ok(())
}
