//! `quickztna devices list|get|remove|expire-key|tag add|tag remove`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::client::{Client, SavedLogin, encode, login_file};
use super::output::{print_json, print_list};
use crate::config::ClientArgs;

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List devices (a table on a terminal, a JSON array with --json or in a pipeline).
    List(DevicesListArgs),
    /// Show one device as JSON, with its peers and recent audit events.
    Get {
        /// Device id (`dev_…`).
        id: String,
    },
    /// Remove a device and revoke its node credential.
    Remove {
        /// Device id (`dev_…`).
        id: String,
    },
    /// Expire a device's key now: its agent must re-authenticate.
    ExpireKey {
        /// Device id (`dev_…`).
        id: String,
    },
    /// Add or remove a device's tags.
    #[command(subcommand)]
    Tag(DevicesTagCommand),
}

#[derive(Debug, Args)]
pub struct DevicesListArgs {
    /// Filter expression, e.g. `tag:prod+os:linux` or `os:linux,windows`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Only devices not seen for this long (30s, 15m, 12h, 90d); ANDed with --filter.
    #[arg(long, value_parser = crate::domain::duration::parse)]
    pub idle_for: Option<std::time::Duration>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DevicesTagCommand {
    /// Add a tag to a device.
    Add {
        /// Device id (`dev_…`).
        id: String,
        /// Tag, with or without the `tag:` prefix.
        tag: String,
    },
    /// Remove a tag from a device.
    Remove {
        /// Device id (`dev_…`).
        id: String,
        /// Tag, with or without the `tag:` prefix.
        tag: String,
    },
}

/// The columns of `devices list` on a terminal (`ipv4` is `addresses.ipv4`).
const COLUMNS: &[&str] = &["id", "hostname", "os", "ipv4", "tags", "last_seen"];

/// Resolves the client for an admin command, refusing early (with how to fix it) when no token
/// is configured anywhere.
pub fn admin_client(args: &ClientArgs) -> Result<Client, CliError> {
    let saved_token = login_file()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<SavedLogin>(&b).ok())
        .and_then(|s| s.token);
    let has_token = args.token.as_deref().is_some_and(|t| !t.is_empty()) || saved_token.is_some();
    if !has_token {
        return Err(CliError::new(
            "no API token configured: pass --token TOKEN, set QUICKZTNA_TOKEN, or run \
             `quickztna login --server URL --token TOKEN` once (an owner can issue one with \
             `quickztna tokens create`)",
        ));
    }
    Client::resolve(args)
}

pub async fn run(client: &Client, cmd: DevicesCommand) -> Result<(), CliError> {
    match cmd {
        DevicesCommand::List(args) => list(client, args).await,
        DevicesCommand::Get { id } => {
            let device = client.get(&device_path(&id)).await?;
            print_json(&device);
            Ok(())
        }
        DevicesCommand::Remove { id } => {
            client.delete(&device_path(&id)).await?;
            eprintln!("Removed device {id}");
            Ok(())
        }
        DevicesCommand::ExpireKey { id } => {
            client
                .post(&format!("{}/expire-key", device_path(&id)), &json!({}))
                .await?;
            eprintln!("Expired the key of device {id}; its agent must re-authenticate");
            Ok(())
        }
        DevicesCommand::Tag(DevicesTagCommand::Add { id, tag }) => {
            let tag = normalize_tag(&tag);
            client
                .post(
                    &format!("{}/tags", device_path(&id)),
                    &json!({ "tags": [tag] }),
                )
                .await?;
            eprintln!("Tagged device {id} with {tag}");
            Ok(())
        }
        DevicesCommand::Tag(DevicesTagCommand::Remove { id, tag }) => {
            let tag = normalize_tag(&tag);
            client
                .delete(&format!("{}/tags/{}", device_path(&id), encode(&tag)))
                .await?;
            eprintln!("Removed {tag} from device {id}");
            Ok(())
        }
    }
}

async fn list(client: &Client, args: DevicesListArgs) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    let filter = list_filter(args.filter.as_deref(), args.idle_for, now)?;
    let path = match &filter {
        Some(f) => format!("/api/v1/devices?filter={}", encode(f)),
        None => "/api/v1/devices?".to_owned(),
    };
    let items = client.get_all(&path).await?;
    if args.json || !std::io::stdout().is_terminal() {
        print_list(&items, COLUMNS, true);
    } else {
        let rows: Vec<Value> = items.iter().map(table_row).collect();
        print_list(&rows, COLUMNS, false);
    }
    Ok(())
}

/// The filter sent for `--filter` and `--idle-for`: the idle term is one more AND clause,
/// `last_seen_before:<now − idle>` in RFC 3339 UTC.
pub fn list_filter(
    filter: Option<&str>,
    idle_for: Option<Duration>,
    now: jiff::Timestamp,
) -> Result<Option<String>, CliError> {
    let idle = match idle_for {
        None => None,
        Some(d) => {
            let span = jiff::SignedDuration::try_from(d)
                .map_err(|_| CliError::new("--idle-for is too large"))?;
            let cutoff = now
                .checked_sub(span)
                .map_err(|_| CliError::new("--idle-for reaches before the year -9999"))?;
            Some(format!(
                "last_seen_before:{}",
                cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
            ))
        }
    };
    let user = filter.map(str::trim).filter(|f| !f.is_empty());
    Ok(match (user, idle) {
        (Some(f), Some(i)) => Some(format!("{f} {i}")),
        (Some(f), None) => Some(f.to_owned()),
        (None, Some(i)) => Some(i),
        (None, None) => None,
    })
}

/// A device flattened for the table: `addresses.ipv4` becomes `ipv4`, and a device never seen
/// shows `never`.
fn table_row(device: &Value) -> Value {
    let mut row = device.clone();
    if let Some(obj) = row.as_object_mut() {
        let ipv4 = device
            .get("addresses")
            .and_then(|a| a.get("ipv4"))
            .cloned()
            .unwrap_or(Value::Null);
        obj.insert("ipv4".into(), ipv4);
        if obj.get("last_seen").is_none_or(Value::is_null) {
            obj.insert("last_seen".into(), Value::String("never".into()));
        }
    }
    row
}

/// `prod` and `tag:prod` both mean `tag:prod`.
pub fn normalize_tag(tag: &str) -> String {
    let tag = tag.trim();
    if tag.starts_with("tag:") {
        tag.to_owned()
    } else {
        format!("tag:{tag}")
    }
}

fn device_path(id: &str) -> String {
    format!("/api/v1/devices/{}", encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_get_their_prefix_once() {
        assert_eq!(normalize_tag("prod"), "tag:prod");
        assert_eq!(normalize_tag("tag:prod"), "tag:prod");
    }

    #[test]
    fn idle_for_is_anded_as_a_utc_cutoff() {
        let now: jiff::Timestamp = "2026-04-10T12:00:00.123456Z".parse().unwrap();
        let ninety = Some(Duration::from_secs(90 * 86_400));
        assert_eq!(
            list_filter(None, ninety, now).unwrap().as_deref(),
            Some("last_seen_before:2026-01-10T12:00:00Z")
        );
        assert_eq!(
            list_filter(Some("tag:a,tag:b"), ninety, now)
                .unwrap()
                .as_deref(),
            Some("tag:a,tag:b last_seen_before:2026-01-10T12:00:00Z")
        );
        assert_eq!(
            list_filter(Some("os:linux"), None, now).unwrap().as_deref(),
            Some("os:linux")
        );
        assert_eq!(list_filter(Some("  "), None, now).unwrap(), None);
    }
}
