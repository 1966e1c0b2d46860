//! Creating organizations and their owner tokens: `quickztna init`, and `serve` on an empty
//! data dir.

use events::event::{OrgCreated, OrgLimitsSet, OrgSettingsChanged, Plan};
use events::{Actor, AppendRequest, Expected, NewEvent};
use projections::Models;

use crate::domain::ids::new_id;
use crate::domain::scope::Scopes;
use crate::domain::secret;
use crate::domain::tokens::{CreateToken, decide_create, max_expiry};

/// The default rate limits of the seed page.
pub const DEFAULT_READ_PER_MIN: u32 = 600;
pub const DEFAULT_WRITE_PER_MIN: u32 = 60;

/// A new organization and the one copy of its owner token.
pub struct CreatedOrg {
    pub org_id: String,
    pub token: String,
}

/// Why an offline command failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("an organization named '{0}' already exists")]
    NameTaken(String),
    #[error("organization name must be 1 to 63 characters of a-z, 0-9 and '-'")]
    BadName,
    #[error("no organization '{0}'")]
    NoSuchOrg(String),
    #[error("rate limits must be from 1 to 1000000 per minute")]
    BadLimits,
    #[error(
        "idle removal must be from 1 to 36500 days, ephemeral removal from 1 second to 365 days"
    )]
    BadSettings,
    #[error("{0}")]
    Append(#[from] events::AppendError),
}

pub fn valid_org_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Creates an organization and its owner token (scope `write`, 12 months) in one append.
pub async fn create_org(
    log: &events::Log,
    models: &Models,
    name: &str,
    plan: Plan,
    actor: Actor,
) -> Result<CreatedOrg, BootstrapError> {
    if !valid_org_name(name) {
        return Err(BootstrapError::BadName);
    }
    if models.orgs.by_name(name).is_some() {
        return Err(BootstrapError::NameTaken(name.to_owned()));
    }
    let org_id = new_id("org");
    let token_id = new_id("tok");
    let secret = secret::generate("qz_");
    let now = events::now_micros();
    let owner = Scopes::parse(&["write"]).expect("write is a scope");
    let token = decide_create(
        &owner,
        CreateToken {
            token_id: token_id.clone(),
            prefix: secret.display_prefix.clone(),
            secret_hash: secret.hash,
            scopes: owner.clone(),
            description: format!("owner token of {name}"),
            // A minute short of the maximum, so the token is valid when the append lands.
            expires_at: max_expiry(now) - 60 * 1_000_000,
        },
        now,
    )
    .map_err(|e| events::AppendError::Invalid(format!("{e:?}")))?;
    log.append(AppendRequest {
        org_id: org_id.clone(),
        actor,
        request_id: new_id("req"),
        expectations: vec![(format!("org:{org_id}"), Expected::NoStream)],
        events: vec![
            NewEvent::new(
                format!("org:{org_id}"),
                OrgCreated {
                    org_id: org_id.clone(),
                    name: name.to_owned(),
                    plan,
                    read_per_min: DEFAULT_READ_PER_MIN,
                    write_per_min: DEFAULT_WRITE_PER_MIN,
                },
            ),
            NewEvent::new(format!("token:{token_id}"), token),
        ],
        idempotency: None,
    })
    .await?;
    Ok(CreatedOrg {
        org_id,
        token: secret.value,
    })
}

/// Issues another owner token for an existing organization (when the first one was lost).
pub async fn issue_owner_token(
    log: &events::Log,
    models: &Models,
    org: &str,
    actor: Actor,
) -> Result<CreatedOrg, BootstrapError> {
    let org = find_org(models, org)?.clone();
    let token_id = new_id("tok");
    let secret = secret::generate("qz_");
    let now = events::now_micros();
    let owner = Scopes::parse(&["write"]).expect("write is a scope");
    let token = decide_create(
        &owner,
        CreateToken {
            token_id: token_id.clone(),
            prefix: secret.display_prefix.clone(),
            secret_hash: secret.hash,
            scopes: owner.clone(),
            description: format!("owner token of {} (issued at the console)", org.name),
            expires_at: max_expiry(now) - 60 * 1_000_000,
        },
        now,
    )
    .map_err(|e| events::AppendError::Invalid(format!("{e:?}")))?;
    log.append(AppendRequest {
        org_id: org.id.clone(),
        actor,
        request_id: new_id("req"),
        expectations: vec![],
        events: vec![NewEvent::new(format!("token:{token_id}"), token)],
        idempotency: None,
    })
    .await?;
    Ok(CreatedOrg {
        org_id: org.id,
        token: secret.value,
    })
}

/// Changes an organization's rate limits ("contact support and we raise your limits").
pub async fn set_limits(
    log: &events::Log,
    models: &Models,
    org: &str,
    read_per_min: u32,
    write_per_min: u32,
    actor: Actor,
) -> Result<String, BootstrapError> {
    let range = 1..=1_000_000;
    if !range.contains(&read_per_min) || !range.contains(&write_per_min) {
        return Err(BootstrapError::BadLimits);
    }
    let org = find_org(models, org)?;
    append_to_org(
        log,
        org,
        OrgLimitsSet {
            org_id: org.id.clone(),
            read_per_min,
            write_per_min,
        }
        .into(),
        actor,
    )
    .await
}

/// Changes an organization's fleet hygiene settings: remove devices idle longer than
/// `device_idle_removal_days` (`None`: never), and ephemeral devices offline longer than
/// `ephemeral_offline_secs`.
pub async fn set_settings(
    log: &events::Log,
    models: &Models,
    org: &str,
    device_idle_removal_days: Option<u32>,
    ephemeral_offline_secs: u64,
    actor: Actor,
) -> Result<String, BootstrapError> {
    if device_idle_removal_days.is_some_and(|d| !(1..=36_500).contains(&d))
        || !(1..=365 * 86_400).contains(&ephemeral_offline_secs)
    {
        return Err(BootstrapError::BadSettings);
    }
    let org = find_org(models, org)?;
    append_to_org(
        log,
        org,
        OrgSettingsChanged {
            org_id: org.id.clone(),
            device_idle_removal_days,
            ephemeral_offline_secs,
        }
        .into(),
        actor,
    )
    .await
}

/// An organization by id or name.
fn find_org<'a>(
    models: &'a Models,
    org: &str,
) -> Result<&'a projections::orgs::Org, BootstrapError> {
    models
        .orgs
        .get(org)
        .or_else(|| models.orgs.by_name(org))
        .ok_or_else(|| BootstrapError::NoSuchOrg(org.to_owned()))
}

/// Appends one event to an existing organization's stream; returns the organization's id.
async fn append_to_org(
    log: &events::Log,
    org: &projections::orgs::Org,
    event: events::Event,
    actor: Actor,
) -> Result<String, BootstrapError> {
    let stream = format!("org:{}", org.id);
    log.append(AppendRequest {
        org_id: org.id.clone(),
        actor,
        request_id: new_id("req"),
        expectations: vec![(stream.clone(), Expected::Exists)],
        events: vec![NewEvent::new(stream, event)],
        idempotency: None,
    })
    .await?;
    Ok(org.id.clone())
}
