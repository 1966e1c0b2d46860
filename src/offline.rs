//! Commands that open the data dir directly, while no server runs: `init`, `org …`,
//! `audit-log verify`. The log's directory lock makes them fail clearly if a server holds it.

use std::time::Duration;

use clap::{Args, Subcommand};
use events::Actor;
use events::event::Plan;

use crate::bootstrap;
use crate::config::DataDirArgs;
use crate::domain::{duration, retention};
use crate::state::{AppState, Settings};

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
    /// Choose how many days the audit log keeps events (workforce plan only, 30 to 3650).
    SetRetention(SetRetentionArgs),
    /// Point the organization at its OpenID provider for single sign-on. Unlike the other
    /// `org` commands it talks to the running server (PUT /api/v1/sso/oidc, users:write).
    SetOidc(crate::cli::sso::SetOidcArgs),
}

#[derive(Debug, Args)]
pub struct SetRetentionArgs {
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    /// Days the audit log keeps an event: 30 to 3650.
    #[arg(long)]
    pub days: u32,
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// Limits not given keep their current value.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("limits").required(true).multiple(true)))]
pub struct SetLimitsArgs {
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    /// API reads (GET) a minute, shared by the organization's tokens.
    #[arg(long, group = "limits")]
    pub read_per_min: Option<u32>,
    /// API writes a minute, shared by the organization's tokens.
    #[arg(long, group = "limits")]
    pub write_per_min: Option<u32>,
    /// Device registrations (`POST /machine/register`) a minute; apart from API writes.
    #[arg(long, group = "limits")]
    pub register_per_min: Option<u32>,
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

async fn open(data: &DataDirArgs) -> Result<AppState, String> {
    let mut settings = Settings::new(&data.data_dir);
    settings.chain_key_file = data.chain_key_file.clone();
    settings.checkpoint_key_file = data.checkpoint_key_file.clone();
    let state = AppState::open(settings).await.map_err(|e| match e {
        events::Error::Locked { path } => format!(
            "the data directory {path} is in use by another process (is `quickztna serve` running?); stop it first"
        ),
        other => other.to_string(),
    })?;
    let head = state.log().head();
    if !state
        .models()
        .wait_for(head, Duration::from_secs(300))
        .await
    {
        return Err("the read models did not catch up with the log".into());
    }
    Ok(state)
}

/// `quickztna init`: prints `{"org_id": …, "token": …}`.
pub async fn init(args: InitArgs) -> Result<(), String> {
    let plan = Plan::parse(&args.plan).ok_or("plan must be free, business or workforce")?;
    let state = open(&args.data).await?;
    let result =
        bootstrap::create_org(&state, &args.org, plan, Actor::console("quickztna init")).await;
    state.shutdown().await;
    let created = result.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "org_id": created.org_id, "token": created.token })
    );
    Ok(())
}

/// `quickztna org set-limits`: limits not given keep their current value.
pub async fn set_limits(args: SetLimitsArgs) -> Result<(), String> {
    let state = open(&args.data).await?;
    let limits = bootstrap::Limits {
        read_per_min: args.read_per_min,
        write_per_min: args.write_per_min,
        register_per_min: args.register_per_min,
    };
    let result = bootstrap::change_limits(
        &state,
        &args.org,
        limits,
        Actor::console("quickztna org set-limits"),
    )
    .await;
    let plan = result.as_ref().ok().and_then(|set| {
        let models = state.models().load();
        models.state.orgs.get(&set.org_id).map(|o| o.plan)
    });
    state.shutdown().await;
    let set = result.map_err(|e| e.to_string())?;
    let register = set
        .register_per_min
        .or_else(|| plan.map(bootstrap::default_register_per_min));
    println!(
        "{}",
        serde_json::json!({
            "org_id": set.org_id, "read_per_min": set.read_per_min,
            "write_per_min": set.write_per_min, "register_per_min": register,
        })
    );
    Ok(())
}

/// `quickztna org set-settings`: flags not given keep their current value.
pub async fn set_settings(args: SetSettingsArgs) -> Result<(), String> {
    let idle = match args.device_idle_removal.as_deref() {
        None => None,
        Some("off") => Some(None),
        Some(text) => {
            let d = duration::parse(text).map_err(|e| format!("--device-idle-removal: {e}"))?;
            if d.as_secs() % 86_400 != 0 {
                return Err("--device-idle-removal must be whole days, e.g. 90d".into());
            }
            Some(Some(
                u32::try_from(d.as_secs() / 86_400)
                    .map_err(|_| "--device-idle-removal is too large")?,
            ))
        }
    };
    let ephemeral = match args.ephemeral_offline.as_deref() {
        None => None,
        Some(text) => Some(
            duration::parse(text)
                .map_err(|e| format!("--ephemeral-offline: {e}"))?
                .as_secs(),
        ),
    };
    let state = open(&args.data).await?;
    let models = state.models().load();
    let current = models
        .state
        .orgs
        .get(&args.org)
        .or_else(|| models.state.orgs.by_name(&args.org))
        .cloned();
    let result = match current {
        None => Err(format!("no organization '{}'", args.org)),
        Some(org) => {
            let idle = idle.unwrap_or(org.device_idle_removal_days);
            let ephemeral = ephemeral.unwrap_or(org.ephemeral_offline_secs);
            bootstrap::set_settings(
                &state,
                &org.id,
                idle,
                ephemeral,
                Actor::console("quickztna org set-settings"),
            )
            .await
            .map(|id| (id, idle, ephemeral))
            .map_err(|e| e.to_string())
        }
    };
    state.shutdown().await;
    let (org_id, idle, ephemeral) = result?;
    println!(
        "{}",
        serde_json::json!({
            "org_id": org_id,
            "device_idle_removal_days": idle,
            "ephemeral_offline_secs": ephemeral,
        })
    );
    Ok(())
}

/// `quickztna org set-retention`: prints the retention now in force.
pub async fn set_retention(args: SetRetentionArgs) -> Result<(), String> {
    let state = open(&args.data).await?;
    let result = bootstrap::set_retention(
        &state,
        &args.org,
        args.days,
        Actor::console("quickztna org set-retention"),
    )
    .await;
    state.shutdown().await;
    let org_id = result.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "org_id": org_id, "audit_retention_days": args.days })
    );
    Ok(())
}

pub async fn issue_token(args: IssueTokenArgs) -> Result<(), String> {
    let state = open(&args.data).await?;
    let result = bootstrap::issue_owner_token(
        &state,
        &args.org,
        Actor::console("quickztna org issue-token"),
    )
    .await;
    state.shutdown().await;
    let created = result.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "org_id": created.org_id, "token": created.token })
    );
    Ok(())
}

pub async fn list_orgs(data: DataDirArgs) -> Result<(), String> {
    let state = open(&data).await?;
    let models = state.models().load();
    let mut orgs: Vec<_> = models.state.orgs.by_id.values().cloned().collect();
    orgs.sort_by(|a, b| a.name.cmp(&b.name));
    state.shutdown().await;
    let rows: Vec<_> = orgs
        .iter()
        .map(|o| {
            serde_json::json!({
                "id": o.id, "name": o.name, "plan": o.plan.as_str(),
                "read_per_min": o.read_per_min, "write_per_min": o.write_per_min,
                "register_per_min": bootstrap::register_per_min(o),
                "audit_retention_days": retention::audit_retention_days(o.plan, o.audit_retention_days),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&rows).unwrap_or_default()
    );
    Ok(())
}

/// `quickztna audit-log verify`: checks the chain from the first record (or the signed anchor
/// of a prefix dropped by retention) to the last, and the log against its newest signed
/// checkpoint; fails naming the first bad position. Opens only
/// the log, on a copy, so it writes nothing into the data dir, needs no lock and works on a
/// copy of a live server's data dir.
pub async fn verify(data: DataDirArgs) -> Result<(), String> {
    let options = events::VerifyOptions {
        chain_key_file: data.chain_key_file.clone(),
        checkpoint_key_file: data.checkpoint_key_file.clone(),
    };
    let dir = data.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || events::verify_data_dir(&dir, &options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let chain = &report.chain;
    println!(
        "{}",
        serde_json::json!({
            "head": chain.head,
            "verified": chain.verified,
            "first_bad_position": chain.first_bad,
            "reason": chain.reason,
            "checkpoint": report.checkpoint.as_ref().map(|c| serde_json::json!({
                "position": c.position,
                "time": events::format_time(c.time),
                "public_key": hex::encode(c.public_key),
                "authenticated": report.checkpoint_authenticated,
            })),
            "checkpoint_problem": report.checkpoint_problem,
            "first_position": chain.first,
            "anchor": report.anchor.as_ref().map(|a| serde_json::json!({
                "position": a.position,
                "time": events::format_time(a.time),
                "public_key": hex::encode(a.public_key),
            })),
            "anchor_problem": report.anchor_problem,
        })
    );
    match (
        chain.first_bad,
        &report.checkpoint_problem,
        &report.anchor_problem,
    ) {
        (Some(p), _, _) => Err(format!(
            "the chain breaks at position {p}: {}",
            chain.reason.as_deref().unwrap_or("")
        )),
        (None, Some(problem), _) | (None, None, Some(problem)) => Err(problem.clone()),
        (None, None, None) => Ok(()),
    }
}
