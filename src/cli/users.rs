//! `quickztna users list|get|invite|remove` and `quickztna groups list|members`: the people of
//! the organization and the groups the identity provider syncs.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::CliError;
use super::ListArgs;
use super::client::{Client, encode};
use super::output::{print_json, print_list};

const USER_COLUMNS: &[&str] = &[
    "id",
    "email",
    "display_name",
    "role",
    "status",
    "source",
    "last_sign_in_at",
];

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users (`--filter role:admin`, `status:pending`, `group:Engineering`, `email:…`).
    List(ListArgs),
    /// One user, with their devices and groups.
    Get {
        /// User id (`usr_…`).
        id: String,
        /// Print the whole JSON response.
        #[arg(long)]
        json: bool,
    },
    /// Invite a person by email, or let a whole email domain join by signing in.
    Invite(InviteArgs),
    /// Remove a user and every device they own, in one operation.
    Remove {
        /// User id (`usr_…`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The person to invite.
    #[arg(required_unless_present = "domain", conflicts_with = "domain")]
    pub email: Option<String>,
    /// Instead: people of this email domain join when they sign in with single sign-on.
    #[arg(long)]
    pub domain: Option<String>,
    /// `admin`, `member` (default) or `auditor`.
    #[arg(long)]
    pub role: Option<String>,
    /// How long the invitation stays valid (default 7d, at most 30d).
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Print the whole JSON response.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the groups synced from the identity provider.
    List(ListArgs),
    /// The users in a group.
    Members {
        /// Group id (`grp_…`).
        id: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn list_path(base: &str, filter: &Option<String>) -> String {
    match filter {
        Some(f) => format!("{base}?filter={}", encode(f)),
        None => format!("{base}?"),
    }
}

pub async fn run(client: &Client, cmd: UsersCommand) -> Result<(), CliError> {
    match cmd {
        UsersCommand::List(args) => {
            let items = client
                .get_all(&list_path("/api/v1/users", &args.filter))
                .await?;
            print_list(&items, USER_COLUMNS, args.json);
            Ok(())
        }
        UsersCommand::Get { id, json } => {
            let user = client
                .get(&format!("/api/v1/users/{}", encode(&id)))
                .await?;
            if json {
                print_json(&user);
                return Ok(());
            }
            print_list(std::slice::from_ref(&user), USER_COLUMNS, false);
            let groups: Vec<&str> = user["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g["display_name"].as_str())
                .collect();
            println!(
                "\ngroups: {}",
                if groups.is_empty() {
                    "-".to_owned()
                } else {
                    groups.join(", ")
                }
            );
            println!("devices ({}):", user["device_count"]);
            let devices = user["devices"].as_array().cloned().unwrap_or_default();
            print_list(&devices, &["id", "hostname", "os", "ipv4", "online"], false);
            Ok(())
        }
        UsersCommand::Invite(args) => invite(client, args).await,
        UsersCommand::Remove { id } => {
            client
                .delete(&format!("/api/v1/users/{}", encode(&id)))
                .await?;
            eprintln!("Removed user {id} and every device they owned");
            Ok(())
        }
    }
}

pub async fn run_groups(client: &Client, cmd: GroupsCommand) -> Result<(), CliError> {
    match cmd {
        GroupsCommand::List(args) => {
            let items = client
                .get_all(&list_path("/api/v1/groups", &args.filter))
                .await?;
            print_list(
                &items,
                &[
                    "id",
                    "display_name",
                    "source",
                    "member_count",
                    "external_id",
                ],
                args.json,
            );
        }
        GroupsCommand::Members { id, json } => {
            let path = format!("/api/v1/groups/{}/members?", encode(&id));
            let items = client.get_all(&path).await?;
            print_list(&items, USER_COLUMNS, json);
        }
    }
    Ok(())
}

async fn invite(client: &Client, args: InviteArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    if let Some(email) = &args.email {
        body.insert("email".into(), json!(email));
    }
    if let Some(domain) = &args.domain {
        body.insert("domain".into(), json!(domain));
    }
    if let Some(role) = &args.role {
        body.insert("role".into(), json!(role));
    }
    if let Some(d) = &args.expires_in {
        body.insert("expires_in".into(), json!(d));
    }
    let created = client.post("/api/v1/users", &Value::Object(body)).await?;
    if args.json {
        print_json(&created);
        return Ok(());
    }
    if let Some(rule) = created.get("sso_domain").filter(|v| !v.is_null()) {
        eprintln!(
            "People of {} now join as {} when they sign in with single sign-on",
            rule["domain"].as_str().unwrap_or("?"),
            rule["role"].as_str().unwrap_or("?")
        );
        return Ok(());
    }
    let user = &created["user"];
    let inv = &created["invitation"];
    let email = user["email"].as_str().unwrap_or("?");
    eprintln!(
        "Invited {email} as {} ({}); the invitation expires {}.",
        user["role"].as_str().unwrap_or("?"),
        user["id"].as_str().unwrap_or("?"),
        inv["expires_at"].as_str().unwrap_or("?")
    );
    match inv["url"].as_str() {
        Some(url) => {
            if let Some(note) = inv["note"].as_str() {
                eprintln!("{note}");
            }
            println!("{url}");
        }
        None if inv["emailed"] == true => eprintln!("The sign-in link was emailed to {email}."),
        None => eprintln!(
            "{}",
            inv["note"]
                .as_str()
                .unwrap_or("The link is not shown again.")
        ),
    }
    Ok(())
}
