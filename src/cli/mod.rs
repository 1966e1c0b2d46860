//! The admin CLI: a client of the REST API (and the dispatcher of every subcommand).
//!
//! # Layout
//! - [`client`]: server and token resolution, requests, problems, `Retry-After`.
//! - [`connect`]: the HTTP client's trust (`--ca-cert`) and the refusal to send secrets over
//!   plain HTTP to another machine (`--insecure`).
//! - [`output`]: tables on a terminal, JSON with `--json`.
//! - [`tokens`]: `tokens create|list|revoke`.
//! - [`devices`]: `devices list|get|remove|expire-key|tag`.
//! - [`keys`]: `keys create|list|revoke` (pre-auth keys).
//! - [`users`]: `users list|get|invite|remove` and `groups list|members`.
//! - [`audit`]: `audit-log list|export`, and `audit-log verify --export` (offline).
//! - [`events`]: `events tail`, the live event stream.
//! - [`policy`]: `policy get|set|lint|diff|history` and `posture get|set`.
//! - [`webhooks`]: `webhooks create|list|get|update|remove|rotate-secret|deliveries|test|replay`.

pub mod audit;
pub mod client;
pub mod connect;
pub mod devices;
pub mod events;
pub mod keys;
pub mod output;
pub mod policy;
pub mod sso;
pub mod tokens;
pub mod users;
pub mod webhooks;

use std::fmt;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::config::{Cli, Command};
use crate::offline::OrgCommand;
use audit::AuditLogCommand;

/// The flags every `list` subcommand shares.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Filter expression, e.g. `status:active`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A failed command: what to print, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::new(message)
    }
}

/// What to warn about secrets passed as command-line arguments: other users of the machine
/// see them in the process list, and shells keep them in their history. The environment
/// variables carry the same values out of sight.
pub fn secrets_on_argv(matches: &ArgMatches) -> Vec<String> {
    let on_argv = |m: &ArgMatches, id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    let mut warnings = Vec::new();
    if on_argv(matches, "token") {
        warnings.push(
            "--token on the command line is visible to other users of this machine in the \
             process list and stays in your shell history; set QUICKZTNA_TOKEN instead \
             (`quickztna login` saves it for later commands)"
                .to_owned(),
        );
    }
    if let Some(("up", up)) = matches.subcommand()
        && on_argv(up, "auth_key")
    {
        warnings.push(
            "--auth-key on the command line is visible to other users of this machine in the \
             process list and stays in your shell history; set QUICKZTNA_AUTH_KEY instead"
                .to_owned(),
        );
    }
    if let Some(("serve", serve)) = matches.subcommand()
        && on_argv(serve, "smtp_url")
        && serve
            .get_one::<String>("smtp_url")
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.password().is_some())
    {
        warnings.push(
            "--smtp-url with a password on the command line is visible to other users of this \
             machine in the process list; set QUICKZTNA_SMTP_URL instead"
                .to_owned(),
        );
    }
    warnings
}

/// Runs one command.
pub async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let client_args = cli.client;
    if let Some(data) = cli.command.data_dir() {
        // Before anything touches the data directory: what is created in it is the owner's.
        crate::private_files::restrict_umask();
        crate::private_files::check_data_dir(&data.data_dir);
    }
    match cli.command {
        Command::Serve(args) => Ok(crate::server::serve(*args).await?),
        Command::Init(args) => Ok(crate::offline::init(args).await?),
        Command::Org(OrgCommand::SetLimits(args)) => Ok(crate::offline::set_limits(args).await?),
        Command::Org(OrgCommand::SetSettings(args)) => {
            Ok(crate::offline::set_settings(args).await?)
        }
        Command::Org(OrgCommand::IssueToken(args)) => Ok(crate::offline::issue_token(args).await?),
        Command::Org(OrgCommand::List(args)) => Ok(crate::offline::list_orgs(args).await?),
        Command::Org(OrgCommand::SetRetention(args)) => {
            Ok(crate::offline::set_retention(args).await?)
        }
        Command::Org(OrgCommand::SetOidc(args)) => {
            let client = devices::admin_client(&client_args)?;
            sso::set_oidc(&client, args).await
        }
        Command::AuditLog(AuditLogCommand::Verify(args)) => match args.export {
            // An auditor's check: a file, no server, no data dir.
            Some(file) => {
                tokio::task::spawn_blocking(move || audit::verify::run(&file, args.public_key))
                    .await
                    .map_err(|e| CliError::new(e.to_string()))?
            }
            None => Ok(crate::offline::verify(args.data).await?),
        },
        Command::AuditLog(cmd) => {
            let client = devices::admin_client(&client_args)?;
            audit::run(&client, cmd).await
        }
        Command::Login(args) => {
            let connect = connect::Connect {
                ca_cert: client_args.ca_cert.clone(),
                insecure: client_args.insecure,
            };
            if args.sso {
                let server = client_args
                    .server
                    .clone()
                    .unwrap_or_else(|| client::DEFAULT_SERVER.to_owned());
                return sso::login_sso(&server, connect, args).await;
            }
            let (Some(server), Some(token)) = (&client_args.server, &client_args.token) else {
                return Err(CliError::new(
                    "usage: quickztna login --server URL --token TOKEN (or --sso)",
                ));
            };
            client::login(server, token, connect).await
        }
        Command::Tokens(cmd) => {
            let client = client::Client::resolve(&client_args)?;
            tokens::run(&client, cmd).await
        }
        Command::Devices(cmd) => {
            let client = devices::admin_client(&client_args)?;
            devices::run(&client, cmd).await
        }
        Command::Keys(cmd) => {
            let client = devices::admin_client(&client_args)?;
            keys::run(&client, cmd).await
        }
        Command::Events(cmd) => {
            let client = devices::admin_client(&client_args)?;
            events::run(&client, cmd).await
        }
        Command::Users(cmd) => {
            let client = devices::admin_client(&client_args)?;
            users::run(&client, cmd).await
        }
        Command::Groups(cmd) => {
            let client = devices::admin_client(&client_args)?;
            users::run_groups(&client, cmd).await
        }
        Command::Policy(cmd) => {
            let client = devices::admin_client(&client_args)?;
            policy::run(&client, cmd).await
        }
        Command::Posture(cmd) => {
            let client = devices::admin_client(&client_args)?;
            policy::run_posture(&client, cmd).await
        }
        Command::Webhooks(cmd) => {
            let client = devices::admin_client(&client_args)?;
            webhooks::run(&client, cmd).await
        }
        Command::Up(args) => {
            let client = client::Client::resolve(&client_args)?;
            crate::agent::run(client.server(), client.connect(), args).await
        }
    }
}
