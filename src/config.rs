//! The command line. Every flag that a deployment sets also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "quickztna",
    version,
    about = "QuickZTNA control plane: server, admin CLI and device agent"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Server commands log at info level; client commands stay quiet.
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// How CLI commands reach the server: flags, then environment, then `quickztna login`'s file.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server URL, e.g. https://ztna.example.com (default http://127.0.0.1:8080).
    #[arg(long, global = true, env = "QUICKZTNA_SERVER")]
    pub server: Option<String>,
    /// API token (`qz_…`).
    #[arg(long, global = true, env = "QUICKZTNA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where the data lives (offline commands and the server).
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The data directory: event log, snapshots, keys.
    #[arg(long, env = "QUICKZTNA_DATA_DIR", default_value = "./quickztna-data")]
    pub data_dir: PathBuf,
    /// The chain key file, if kept outside the data dir (so a copy of the disk alone cannot
    /// re-forge the audit chain). Created (mode 0600) only for an empty log; for a log with
    /// history, a missing or different key stops the server.
    #[arg(long, env = "QUICKZTNA_CHAIN_KEY_FILE")]
    pub chain_key_file: Option<PathBuf>,
    /// The Ed25519 key that signs log checkpoints (on every snapshot and at shutdown), kept
    /// outside the data dir so a truncated log cannot hide; `checkpoint.key` in the data dir by
    /// default. Created (mode 0600) if missing.
    #[arg(long, env = "QUICKZTNA_CHECKPOINT_KEY_FILE")]
    pub checkpoint_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane server.
    Serve(ServeArgs),
    /// Create an organization and its owner token (offline; run before `serve`).
    Init(InitArgs),
    /// Organization administration at the console (offline).
    #[command(subcommand)]
    Org(OrgCommand),
    /// The audit log.
    #[command(subcommand, name = "audit-log")]
    AuditLog(AuditLogCommand),
    /// Save the server URL and token for later commands (mode 0600 in your config dir):
    /// `quickztna login --server URL --token TOKEN`.
    Login,
    /// API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Devices: list, inspect, tag, expire keys, remove.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Pre-auth keys, which devices use to join.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The device agent: join with a pre-auth key, then heartbeat until SIGINT/SIGTERM.
    Up(UpArgs),
}

impl Command {
    /// The data directory of a command that opens one: the server and the offline commands.
    pub fn data_dir(&self) -> Option<&DataDirArgs> {
        match self {
            Command::Serve(a) => Some(&a.data),
            Command::Init(a) => Some(&a.data),
            Command::Org(OrgCommand::SetLimits(a)) => Some(&a.data),
            Command::Org(OrgCommand::SetSettings(a)) => Some(&a.data),
            Command::Org(OrgCommand::IssueToken(a)) => Some(&a.data),
            Command::Org(OrgCommand::List(a)) => Some(a),
            Command::AuditLog(AuditLogCommand::Verify(a)) => Some(a),
            Command::Login
            | Command::Tokens(_)
            | Command::Devices(_)
            | Command::Keys(_)
            | Command::Up(_) => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Address to listen on.
    #[arg(long, env = "QUICKZTNA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "QUICKZTNA_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// On an empty data directory, write the new owner token to this file (created, mode
    /// 0600; never an existing file) instead of printing it: for service managers whose
    /// journal keeps stdout. Unused once the data directory has organizations.
    #[arg(long, env = "QUICKZTNA_OWNER_TOKEN_FILE")]
    pub owner_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Organization name: 1–63 characters of a-z, 0-9 and '-'.
    #[arg(long)]
    pub org: String,
    /// Plan: free, business or workforce.
    #[arg(long, default_value = "workforce", value_parser = ["free", "business", "workforce"])]
    pub plan: String,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Change an organization's rate limits (the "contact support" path).
    SetLimits(SetLimitsArgs),
    /// Change fleet hygiene settings: automatic removal of idle and of offline ephemeral devices.
    SetSettings(SetSettingsArgs),
    /// Issue a new owner token (scope `write`) for an organization whose token was lost.
    IssueToken(IssueTokenArgs),
    /// List organizations.
    List(DataDirArgs),
}

#[derive(Debug, Args)]
pub struct SetLimitsArgs {
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub read_per_min: u32,
    #[arg(long)]
    pub write_per_min: u32,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct SetSettingsArgs {
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    /// Remove any device idle (not seen) for longer than this many days, e.g. `90d`; `off`
    /// disables it (the default). Unchanged when not given.
    #[arg(long)]
    pub device_idle_removal: Option<String>,
    /// Remove an ephemeral device after it has been offline this long, e.g. `30m` (default
    /// 30 minutes). Unchanged when not given.
    #[arg(long)]
    pub ephemeral_offline: Option<String>,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct IssueTokenArgs {
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditLogCommand {
    /// Verify the tamper-evident chain of the whole log (offline).
    Verify(DataDirArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token; prints it once.
    Create(TokensCreateArgs),
    /// List tokens.
    List(ListArgs),
    /// Revoke a token.
    Revoke {
        /// Token id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TokensCreateArgs {
    /// Scope to grant (repeatable): read, write, devices:read, …
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Label shown in the audit log.
    #[arg(long)]
    pub description: String,
    /// Lifetime: 1h to 12 months, e.g. 30d.
    #[arg(long, default_value = "90d")]
    pub expires_in: String,
    /// Print the whole JSON response.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Filter expression, e.g. `status:active`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Pre-auth key (`qzk_…`). Needed to register, and to re-register when the device's key
    /// expires or it is removed.
    #[arg(long, env = "QUICKZTNA_AUTH_KEY", hide_env_values = true)]
    pub auth_key: Option<String>,
    /// Device name (default: this machine's hostname, lowercased, [a-z0-9-]).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Where the device id and node credential are kept (mode 0600). Default
    /// `$XDG_STATE_HOME/quickztna/agent.json` or `~/.local/state/quickztna/agent.json`.
    #[arg(long, env = "QUICKZTNA_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Time between heartbeats (default: what the server asks for, else 30s).
    #[arg(long, value_parser = crate::domain::duration::parse)]
    pub interval: Option<std::time::Duration>,
    /// Exchange the node credential for a new one once it is this old (`30d`, `12h`, …), or
    /// `off`. Checked after each heartbeat.
    #[arg(
        long,
        env = "QUICKZTNA_ROTATE_CREDENTIAL_EVERY",
        value_parser = crate::agent::rotate::parse_every,
        default_value = crate::agent::rotate::DEFAULT_EVERY
    )]
    pub rotate_credential_every: crate::agent::rotate::RotateEvery,
}
