//! `quickztna org set-oidc`: points the organization at its OpenID provider, through the API
//! (`PUT /api/v1/sso/oidc`, scope `users:write`).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::Client;
use super::output::print_json;

#[derive(Debug, Args)]
pub struct SetOidcArgs {
    /// The issuer, exactly as the provider spells it: https://<org>.okta.com,
    /// https://login.microsoftonline.com/<tenant id>/v2.0 (never /common), …
    #[arg(long)]
    pub issuer: String,
    /// The client (application) id the provider issued.
    #[arg(long)]
    pub client_id: String,
    /// A file holding the client secret (a secret on the command line would be in the shell's
    /// history and in `ps`); `-` reads standard input.
    #[arg(long)]
    pub client_secret_file: PathBuf,
}

pub async fn set_oidc(client: &Client, args: SetOidcArgs) -> Result<(), CliError> {
    let secret = if args.client_secret_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.client_secret_file)
    }
    .map_err(|e| CliError::new(format!("{}: {e}", args.client_secret_file.display())))?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(CliError::new(format!(
            "{}: the client secret file is empty",
            args.client_secret_file.display()
        )));
    }
    let body = json!({
        "issuer": args.issuer,
        "client_id": args.client_id,
        "client_secret": secret,
    });
    let answer = client
        .send(reqwest::Method::PUT, "/api/v1/sso/oidc", Some(&body))
        .await?;
    if let Some(redirect) = answer
        .get("oidc")
        .and_then(|o| o.get("redirect_uri"))
        .and_then(|v| v.as_str())
    {
        eprintln!(
            "Single sign-on configured. Register this redirect URI at the provider: {redirect}"
        );
    }
    print_json(&answer);
    Ok(())
}
