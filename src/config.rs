//! The command line's top level: the subcommands, how CLI commands reach the server, the data
//! dir, and the server's settings. Each other subcommand's flags live next to the code that runs
//! it (`cli::tokens`, `cli::devices`, `cli::keys`, `cli::audit`, `agent`, `offline`). Every flag that a
//! deployment sets also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::agent::UpArgs;
use crate::cli::audit::AuditLogCommand;
use crate::cli::devices::DevicesCommand;
use crate::cli::events::EventsCommand;
use crate::cli::keys::KeysCommand;
use crate::cli::tokens::TokensCommand;
use crate::cli::users::{GroupsCommand, UsersCommand};
use crate::offline::{InitArgs, OrgCommand};

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
    /// PEM file of CA certificates to trust besides the system's, for a server whose
    /// certificate a private CA signed (saved by `quickztna login`).
    #[arg(long, global = true, env = "QUICKZTNA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Send the token, or the agent's keys, over plain http:// to a host other than this
    /// machine. It does not turn off certificate checks on https://.
    #[arg(long, global = true)]
    pub insecure: bool,
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
    // Boxed: the server's flags outweigh every other command's many times over.
    Serve(Box<ServeArgs>),
    /// Create an organization and its owner token (offline; run before `serve`).
    Init(InitArgs),
    /// Organization administration at the console (offline), and `org set-oidc` (online).
    #[command(subcommand)]
    Org(OrgCommand),
    /// The audit log.
    #[command(subcommand, name = "audit-log")]
    AuditLog(AuditLogCommand),
    /// Save the server URL and token for later commands (mode 0600 in your config dir):
    /// `quickztna login --server URL --token TOKEN`, or `quickztna login --server URL --sso`
    /// to sign in through the organization's identity provider instead.
    Login(crate::cli::sso::LoginArgs),
    /// API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Devices: list, inspect, tag, expire keys, remove.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Pre-auth keys, which devices use to join.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The device agent: join with a pre-auth key or its owner's sign-in, then heartbeat until
    /// SIGINT/SIGTERM.
    Up(UpArgs),
    /// The organization's events as they happen (`events tail`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// The organization's people: invite, list, remove (with their devices).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The groups synced from the identity provider (read-only).
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// The access policy: get, set, lint, diff, history.
    #[command(subcommand)]
    Policy(crate::cli::policy::PolicyCommand),
    /// Device posture requirements.
    #[command(subcommand)]
    Posture(crate::cli::policy::PostureCommand),
    /// Webhooks: signed POSTs of the organization's events, and their deliveries.
    #[command(subcommand)]
    Webhooks(crate::cli::webhooks::WebhooksCommand),
}

impl Command {
    /// The data directory of a command that opens one: the server and the offline commands.
    pub fn data_dir(&self) -> Option<&DataDirArgs> {
        use crate::offline::OrgCommand;
        match self {
            Command::Serve(a) => Some(&a.data),
            Command::Init(a) => Some(&a.data),
            Command::Org(OrgCommand::SetLimits(a)) => Some(&a.data),
            Command::Org(OrgCommand::SetSettings(a)) => Some(&a.data),
            Command::Org(OrgCommand::IssueToken(a)) => Some(&a.data),
            Command::Org(OrgCommand::List(a)) => Some(a),
            Command::Org(OrgCommand::SetRetention(a)) => Some(&a.data),
            Command::AuditLog(AuditLogCommand::Verify(a)) => a.data_dir(),
            Command::Org(OrgCommand::SetOidc(_))
            | Command::Login(_)
            | Command::AuditLog(_)
            | Command::Tokens(_)
            | Command::Devices(_)
            | Command::Keys(_)
            | Command::Events(_)
            | Command::Users(_)
            | Command::Groups(_)
            | Command::Policy(_)
            | Command::Posture(_)
            | Command::Webhooks(_)
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
    /// A reverse proxy (CIDR or address; repeatable) whose `X-Forwarded-For` names the client
    /// for the per-address rate limits. None by default: the header is then ignored, because
    /// any client can write it.
    #[arg(
        long = "trusted-proxy",
        env = "QUICKZTNA_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = crate::http::ratelimit::parse_trusted_proxy
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. SIGHUP
    /// reloads both files.
    #[arg(long, env = "QUICKZTNA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "QUICKZTNA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// On an empty data directory, write the new owner token to this file (created, mode
    /// 0600; never an existing file) instead of printing it: for service managers whose
    /// journal keeps stdout. Unused once the data directory has organizations.
    #[arg(long, env = "QUICKZTNA_OWNER_TOKEN_FILE")]
    pub owner_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The event log's page cache, in MiB: recently written and read records kept in memory.
    /// Requests rarely read the log, so a small cache costs little; a larger one trades memory
    /// for fewer reads from the kernel's cache.
    #[arg(long, env = "QUICKZTNA_LOG_CACHE_MB", default_value_t = events::DEFAULT_CACHE_CAPACITY >> 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_cache_mb: u64,
    /// How often an idle event stream (`GET /events?stream=true`) sends a keep-alive comment.
    /// For tests; keep it below --response-write-timeout.
    #[arg(long, hide = true, default_value = "15s", value_parser = crate::domain::duration::parse)]
    pub sse_keep_alive: std::time::Duration,
    /// Event streams (`GET /events?stream=true`) served at once; past it a new one gets 503.
    #[arg(long, env = "QUICKZTNA_MAX_EVENT_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_event_streams: u32,
    /// Event streams one organization may hold at once.
    #[arg(long, env = "QUICKZTNA_MAX_EVENT_STREAMS_PER_ORG", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_event_streams_per_org: u32,
    /// The address people and devices reach this server at (behind a proxy, its public
    /// address): invitation links and the OpenID redirect URL `<public-url>/sso/callback` are
    /// built from it. Default: `http(s)://` and the listen address.
    #[arg(long, env = "QUICKZTNA_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,
    /// The SMTP relay invitations are sent through: `smtps://user:pass@host:465`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:port` (plain, for
    /// a relay on this host). Without it, `POST /users` returns the invitation link instead.
    #[arg(long, env = "QUICKZTNA_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The invitations' sender.
    #[arg(
        long,
        env = "QUICKZTNA_SMTP_FROM",
        default_value = "QuickZTNA <noreply@localhost>"
    )]
    pub smtp_from: String,
    /// A network (CIDR; repeatable) webhooks may deliver to although it is loopback, private,
    /// link-local or otherwise refused: e.g. `10.0.0.0/8` for a SIEM inside the network, or
    /// `127.0.0.0/8` for a receiver on this host. Nothing is allowed by default.
    #[arg(
        long = "webhook-allow-cidr",
        env = "QUICKZTNA_WEBHOOK_ALLOW_CIDRS",
        value_delimiter = ',',
        value_parser = crate::http::ratelimit::parse_trusted_proxy
    )]
    pub webhook_allow_cidrs: Vec<ipnet::IpNet>,
    /// When a failed webhook delivery is tried again: the first try (always at once, `0`), the
    /// delay after each failed try, then `/` and how long after the first failure to keep
    /// trying before the webhook is disabled. Units ms, s, m, h, d.
    #[arg(
        long,
        env = "QUICKZTNA_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5s,5m,30m,2h,5h,10h/24h",
        value_parser = crate::webhooks::schedule::Schedule::parse
    )]
    pub webhook_retry_schedule: crate::webhooks::schedule::Schedule,
    /// How long one webhook delivery may take (connecting included) before it counts as
    /// failed and is retried.
    #[arg(long, env = "QUICKZTNA_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = crate::domain::duration::parse)]
    pub webhook_timeout: std::time::Duration,
}

/// A public URL: `http` or `https`, with a host, without a query or fragment.
pub fn parse_public_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected http:// or https:// and a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("expected no query or fragment".into());
    }
    Ok(url)
}

/// How long clients may take and how many connections they may hold (`state::ConnectionLimits`).
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Time a client has to send a request's headers, from its first byte (or from connecting);
    /// past it the connection is closed.
    #[arg(long, env = "QUICKZTNA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = crate::domain::duration::parse)]
    pub header_read_timeout: std::time::Duration,
    /// Time a client has to send a request's body once its headers arrived; past it the
    /// request is answered with 408.
    #[arg(long, env = "QUICKZTNA_BODY_READ_TIMEOUT", default_value = "30s", value_parser = crate::domain::duration::parse)]
    pub body_read_timeout: std::time::Duration,
    /// Time a client has to read a response; past it the connection is closed.
    #[arg(long, env = "QUICKZTNA_RESPONSE_WRITE_TIMEOUT", default_value = "30s", value_parser = crate::domain::duration::parse)]
    pub response_write_timeout: std::time::Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, env = "QUICKZTNA_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::domain::duration::parse)]
    pub idle_timeout: std::time::Duration,
    /// Connections served at once; past it new connections get 503 and are closed. Lowered at
    /// start if the open-file limit cannot hold it.
    #[arg(long, env = "QUICKZTNA_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn log_cache_mb(args: &[&str]) -> Result<u64, clap::Error> {
        let cli = Cli::try_parse_from([&["quickztna", "serve"], args].concat())?;
        match cli.command {
            Command::Serve(s) => Ok(s.log_cache_mb),
            _ => unreachable!("parsed serve"),
        }
    }

    #[test]
    fn the_log_cache_defaults_to_the_logs_own_default_and_cannot_be_zero() {
        assert_eq!(
            log_cache_mb(&[]).unwrap() << 20,
            events::DEFAULT_CACHE_CAPACITY
        );
        assert_eq!(log_cache_mb(&["--log-cache-mb", "256"]).unwrap(), 256);
        assert!(log_cache_mb(&["--log-cache-mb", "0"]).is_err());
    }
}
