//! `quickztna tokens create|list|revoke`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::CliError;
use super::ListArgs;
use super::client::{Client, encode};
use super::output::{print_json, print_list};

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

pub async fn run(client: &Client, cmd: TokensCommand) -> Result<(), CliError> {
    match cmd {
        TokensCommand::Create(args) => {
            let created = client
                .post(
                    "/api/v1/tokens",
                    &json!({
                        "scopes": args.scopes,
                        "description": args.description,
                        "expires_in": args.expires_in,
                    }),
                )
                .await?;
            if args.json {
                print_json(&created);
            } else {
                let token = created.get("token").and_then(|t| t.as_str()).unwrap_or("");
                eprintln!(
                    "Created token {} (expires {}). It is shown only this once:",
                    created.get("id").and_then(|v| v.as_str()).unwrap_or("?"),
                    created
                        .get("expires_at")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?"),
                );
                println!("{token}");
            }
            Ok(())
        }
        TokensCommand::List(args) => {
            let path = match &args.filter {
                Some(f) => format!("/api/v1/tokens?filter={}", encode(f)),
                None => "/api/v1/tokens?".to_owned(),
            };
            let items = client.get_all(&path).await?;
            print_list(
                &items,
                &[
                    "id",
                    "prefix",
                    "status",
                    "scopes",
                    "expires_at",
                    "description",
                ],
                args.json,
            );
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            client
                .delete(&format!("/api/v1/tokens/{}", encode(&id)))
                .await?;
            eprintln!("Revoked token {id}");
            Ok(())
        }
    }
}
