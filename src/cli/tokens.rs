//! `quickztna tokens create|list|revoke`.

use serde_json::json;

use super::CliError;
use super::client::{Client, encode};
use super::output::{print_json, print_list};
use crate::config::TokensCommand;

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
