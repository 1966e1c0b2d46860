//! Creating organizations and their owner tokens: `quickztna init`, and `serve` on an empty
//! data dir.

use events::event::{OrgCreated, OrgLimitsSet, OrgSettingsChanged, Plan};
use events::stream::Stream;
use events::{Actor, Expected};
use projections::Models;

use crate::domain::Decision;
use crate::domain::expiry::{Expiry, Lifetime};
use crate::domain::scope::Scopes;
use crate::domain::secret;
use crate::domain::tokens::{self, CreateToken, Issuer};
use crate::execute::{Command, ExecuteError, execute_across_orgs};
use crate::mint;
use crate::state::AppState;

/// The default rate limits of the seed page.
pub const DEFAULT_READ_PER_MIN: u32 = 600;
pub const DEFAULT_WRITE_PER_MIN: u32 = 60;

/// Device registrations a minute by plan, unless `org set-limits --register-per-min` says
/// otherwise. A budget apart from the admins' writes, sized so that a rollout of the plan's
/// fleets takes minutes (10,000 servers on workforce: about eight), and agents wait out
/// `Retry-After` beyond it.
pub fn default_register_per_min(plan: Plan) -> u32 {
    match plan {
        Plan::Free => 120,
        Plan::Business => 600,
        Plan::Workforce => 1200,
    }
}

/// An organization's device registrations a minute: its own setting, else its plan's.
pub fn register_per_min(org: &projections::orgs::Org) -> u32 {
    org.register_per_min
        .unwrap_or_else(|| default_register_per_min(org.plan))
}

/// Rate limits to set; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub read_per_min: Option<u32>,
    pub write_per_min: Option<u32>,
    pub register_per_min: Option<u32>,
}

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
    Refused(String),
    #[error("{0}")]
    Write(String),
}

pub fn valid_org_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Creates an organization and its owner token (scope `write`, 12 months) in one append.
pub async fn create_org(
    state: &AppState,
    name: &str,
    plan: Plan,
    actor: Actor,
) -> Result<CreatedOrg, BootstrapError> {
    if !valid_org_name(name) {
        return Err(BootstrapError::BadName);
    }
    let org_id = mint::id("org");
    let token_id = mint::id("tok");
    let secret = mint::secret("qz_");
    let now = events::now_micros();
    let token = owner_token(&token_id, &secret, format!("owner token of {name}"), now);
    let org = Stream::org(&org_id);
    let created = OrgCreated {
        org_id: org_id.clone(),
        name: name.to_owned(),
        plan,
        read_per_min: DEFAULT_READ_PER_MIN,
        write_per_min: DEFAULT_WRITE_PER_MIN,
    };
    run(state, &org_id, actor, |models| {
        if models.orgs.by_name(name).is_some() {
            return Err(BootstrapError::NameTaken(name.to_owned()));
        }
        Ok(
            tokens::create(models.org(&org_id), Issuer::Console, token.clone(), now)
                .map_err(|e| BootstrapError::Refused(e.to_string()))?
                .expect(org.clone(), Expected::NoStream)
                .event(org.clone(), created.clone()),
        )
    })
    .await?;
    Ok(CreatedOrg {
        org_id,
        token: secret.value,
    })
}

/// Issues another owner token for an existing organization (when the first one was lost).
pub async fn issue_owner_token(
    state: &AppState,
    org: &str,
    actor: Actor,
) -> Result<CreatedOrg, BootstrapError> {
    let org = find_org(&state.models().load().state, org)?.clone();
    let token_id = mint::id("tok");
    let secret = mint::secret("qz_");
    let now = events::now_micros();
    let description = format!("owner token of {} (issued at the console)", org.name);
    let token = owner_token(&token_id, &secret, description, now);
    run(state, &org.id, actor, |models| {
        tokens::create(models.org(&org.id), Issuer::Console, token.clone(), now)
            .map_err(|e| BootstrapError::Refused(e.to_string()))
    })
    .await?;
    Ok(CreatedOrg {
        org_id: org.id,
        token: secret.value,
    })
}

/// Changes an organization's read and write limits ("contact support and we raise your
/// limits"), keeping its registrations' budget.
pub async fn set_limits(
    state: &AppState,
    org: &str,
    read_per_min: u32,
    write_per_min: u32,
    actor: Actor,
) -> Result<String, BootstrapError> {
    let limits = Limits {
        read_per_min: Some(read_per_min),
        write_per_min: Some(write_per_min),
        register_per_min: None,
    };
    change_limits(state, org, limits, actor)
        .await
        .map(|set| set.org_id)
}

/// Changes the limits given in `limits` and keeps the others; returns the limits now in force
/// (`register_per_min` is `None` while the plan's default applies).
pub async fn change_limits(
    state: &AppState,
    org: &str,
    limits: Limits,
    actor: Actor,
) -> Result<OrgLimitsSet, BootstrapError> {
    let range = 1..=1_000_000;
    let given = [
        limits.read_per_min,
        limits.write_per_min,
        limits.register_per_min,
    ];
    if given.iter().flatten().any(|n| !range.contains(n)) {
        return Err(BootstrapError::BadLimits);
    }
    let org_id = find_org(&state.models().load().state, org)?.id.clone();
    let stream = Stream::org(&org_id);
    let mut set = None;
    run(state, &org_id, actor, |models| {
        let current = find_org(models, &org_id)?;
        let event = OrgLimitsSet {
            org_id: org_id.clone(),
            read_per_min: limits.read_per_min.unwrap_or(current.read_per_min),
            write_per_min: limits.write_per_min.unwrap_or(current.write_per_min),
            register_per_min: limits.register_per_min.or(current.register_per_min),
        };
        set = Some(event.clone());
        Ok(Decision::none()
            .expect(stream.clone(), Expected::Exists)
            .event(stream.clone(), event))
    })
    .await?;
    set.ok_or_else(|| BootstrapError::Write("the limits were not decided".into()))
}

/// Changes an organization's fleet hygiene settings: remove devices idle longer than
/// `device_idle_removal_days` (`None`: never), and ephemeral devices offline longer than
/// `ephemeral_offline_secs`.
pub async fn set_settings(
    state: &AppState,
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
    change_org(state, org, actor, |org_id| {
        OrgSettingsChanged {
            org_id,
            device_idle_removal_days,
            ephemeral_offline_secs,
        }
        .into()
    })
    .await
}

/// Sets how long a workforce organization's audit log keeps events; refuses other plans (their
/// retention is fixed) and days outside the workforce range, naming why. Decided against the
/// organization as it is when appended (`run` re-reads the read models), so a plan change
/// racing it cannot slip a choice past the plan check.
pub async fn set_retention(
    state: &AppState,
    org: &str,
    days: u32,
    actor: Actor,
) -> Result<String, BootstrapError> {
    let org_id = find_org(&state.models().load().state, org)?.id.clone();
    let stream = Stream::org(&org_id);
    run(state, &org_id, actor, |models| {
        let current = find_org(models, &org_id)?;
        let days = crate::domain::retention::check_retention_choice(current.plan, days)
            .map_err(|why| BootstrapError::Refused(why.to_string()))?;
        Ok(Decision::none()
            .expect(stream.clone(), Expected::Exists)
            .event(
                stream.clone(),
                events::event::OrgRetentionSet {
                    org_id: org_id.clone(),
                    days,
                },
            ))
    })
    .await?;
    Ok(org_id)
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

fn owner_scopes() -> Scopes {
    Scopes::parse(&["write"]).expect("write is a scope")
}

/// An owner token's creation: scope `write`, a minute short of the longest expiry so that it
/// is still valid when the append lands.
fn owner_token(
    token_id: &str,
    secret: &secret::Secret,
    description: String,
    now: i64,
) -> CreateToken {
    CreateToken {
        token_id: token_id.to_owned(),
        prefix: secret.display_prefix.clone(),
        secret_hash: secret.hash,
        scopes: owner_scopes(),
        description,
        expires_at: Expiry::latest(Lifetime::Token, now) - 60 * 1_000_000,
        expires_by_default: false,
    }
}

/// Appends `event` (built for the organization's id) to an existing organization's stream;
/// returns the organization's id.
async fn change_org(
    state: &AppState,
    org: &str,
    actor: Actor,
    event: impl Fn(String) -> events::Event,
) -> Result<String, BootstrapError> {
    let org_id = find_org(&state.models().load().state, org)?.id.clone();
    let stream = Stream::org(&org_id);
    run(state, &org_id, actor, |_| {
        Ok(Decision::none()
            .expect(stream.clone(), Expected::Exists)
            .event(stream.clone(), event(org_id.clone())))
    })
    .await?;
    Ok(org_id)
}

/// Executes a decision of the console or the server itself, with a request id of its own.
async fn run(
    state: &AppState,
    org_id: &str,
    actor: Actor,
    decide: impl FnMut(&Models) -> Result<Decision, BootstrapError>,
) -> Result<(), BootstrapError> {
    execute_across_orgs(state, Command::new(org_id, actor, mint::id("req")), decide)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            ExecuteError::Rejected(e) => e,
            other => BootstrapError::Write(other.to_string()),
        })
}
