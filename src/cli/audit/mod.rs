//! `quickztna audit-log list|export|verify`.
//!
//! - [`export`]: follows the audit log's cursors into a JSON or JSONL file (gzip by extension)
//!   with the chain links and a signed checkpoint of its last event.
//! - [`verify`]: checks such a file offline, with no server and no data dir: every chain link
//!   recomputed, and the checkpoint's signature.
//!
//! `audit-log verify` without `--export` is the data dir check of `crate::offline`.

pub mod export;
pub mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::client::{Client, encode};
use super::output::print_list;
use crate::config::DataDirArgs;

#[derive(Debug, Subcommand)]
pub enum AuditLogCommand {
    /// List audit events, most recent first (a table on a terminal, JSON with --json or in a
    /// pipeline).
    List(ListArgs),
    /// Export audit events to a file for a SIEM or an auditor: JSON or JSONL, gzipped when the
    /// file name ends in `.gz`, with the chain links and a signed checkpoint.
    Export(ExportArgs),
    /// Verify an export offline (`--export FILE`), or the tamper-evident chain of the whole
    /// log in a data dir (offline, while no server holds it).
    Verify(VerifyArgs),
}

/// The filters `list` and `export` share.
#[derive(Debug, Args)]
pub struct Filters {
    /// Events at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<jiff::Timestamp>,
    /// Events before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<jiff::Timestamp>,
    /// Event type, exact (`device.registered`) or a prefix (`device.*`); `,` for several.
    #[arg(long)]
    pub event_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Only events caused by this actor: `tok_…`, `dev_…`, `system` or `console`.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only events about this subject: `dev_…`, `tok_…`, `key_…` or `org_…`.
    #[arg(long)]
    pub subject: Option<String>,
    /// How many events to show at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Events at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: jiff::Timestamp,
    /// Events before this time (RFC 3339); by default, when the export starts.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<jiff::Timestamp>,
    /// Only these event types (exact, `device.*`, `,` for several). Such an export has no
    /// chain links, so it cannot be verified.
    #[arg(long)]
    pub event_type: Option<String>,
    /// `json` (one object with an `items` array) or `jsonl` (one event a line, then a line
    /// with the checkpoint); by default from the file name, else json.
    #[arg(long, value_parser = ["json", "jsonl"])]
    pub format: Option<String>,
    /// The file to write; gzipped when it ends in `.gz`. Written under a temporary name and
    /// renamed when complete.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An export file (`audit-log export`) to verify: needs no server and no data dir.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// The server's checkpoint public key (hex), to check the export's signature against;
    /// without it the export is checked against its own key, which you must then compare
    /// with the server's.
    #[arg(long, requires = "export", value_parser = parse_public_key)]
    pub public_key: Option<[u8; 32]>,
    #[command(flatten)]
    pub data: DataDirArgs,
}

impl VerifyArgs {
    /// The data dir this command opens: none when it verifies an export.
    pub fn data_dir(&self) -> Option<&DataDirArgs> {
        self.export.is_none().then_some(&self.data)
    }
}

/// Runs `audit-log list|export`; `verify` is dispatched by the caller (it may need no client).
pub async fn run(client: &Client, cmd: AuditLogCommand) -> Result<(), CliError> {
    match cmd {
        AuditLogCommand::List(args) => list(client, args).await,
        AuditLogCommand::Export(args) => export::run(client, args).await,
        AuditLogCommand::Verify(_) => Err(CliError::new("audit-log verify needs no server")),
    }
}

/// The columns of `audit-log list` on a terminal.
const COLUMNS: &[&str] = &["id", "time", "type", "actor", "subject"];

async fn list(client: &Client, args: ListArgs) -> Result<(), CliError> {
    let mut query = filter_query(&args.filters);
    for (name, value) in [("actor", &args.actor), ("subject", &args.subject)] {
        if let Some(v) = value {
            query.push_str(&format!("&{name}={}", encode(v)));
        }
    }
    let wanted = args.limit as usize;
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while items.len() < wanted {
        let page_size = (wanted - items.len()).min(200);
        let mut path = format!("/api/v1/audit-log?limit={page_size}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let page = client.get(&path).await?;
        if let Some(arr) = page.get("items").and_then(Value::as_array) {
            items.extend(arr.iter().take(wanted - items.len()).cloned());
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    if args.json || !std::io::stdout().is_terminal() {
        print_list(&items, COLUMNS, true);
    } else {
        // The table shows who and what by id; `--json` has the whole event.
        let rows: Vec<Value> = items
            .iter()
            .map(|e| {
                json!({
                    "id": e["id"], "time": e["time"], "type": e["type"],
                    "actor": e["actor"]["id"],
                    "subject": e["subject"]["id"],
                })
            })
            .collect();
        print_list(&rows, COLUMNS, false);
    }
    Ok(())
}

/// `&since=…&until=…&event_type=…` for the filters given.
fn filter_query(f: &Filters) -> String {
    let mut q = String::new();
    if let Some(t) = f.since {
        q.push_str(&format!("&since={}", encode(&t.to_string())));
    }
    if let Some(t) = f.until {
        q.push_str(&format!("&until={}", encode(&t.to_string())));
    }
    if let Some(t) = &f.event_type {
        q.push_str(&format!("&event_type={}", encode(t)));
    }
    q
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an RFC 3339 time, e.g. 2026-01-01T00:00:00Z"))
}

fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "a checkpoint public key is 64 hex digits".to_owned())
}
