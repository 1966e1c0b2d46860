//! `/posture/config` and `/devices/{id}/posture`: the signals every device must show (OS
//! minimum versions, disk encryption, firewall, screen lock, client version), what happens to
//! a device that does not (`block`: out of every peer map until it complies; `warn`: events
//! only), and each device's standing, signal by signal, since when.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use events::event::{OsMinimum, PostureRequirements};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Object, Path, Query};
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::posture::{self, SIGNALS};
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config, put_config))
        .routes(routes!(device_posture))
}

/// The organization's posture requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostureConfig {
    /// Per operating system (`linux`, `macos`, `windows`…), the lowest version allowed; a
    /// device of an OS not listed passes.
    #[serde(default)]
    #[schema(example = json!({"linux": "6.1", "macos": "14.0"}))]
    pub min_os_version: BTreeMap<String, String>,
    /// The lowest agent version allowed.
    #[serde(default)]
    #[schema(example = "1.4.0")]
    pub min_client_version: Option<String>,
    #[serde(default)]
    pub disk_encrypted: bool,
    #[serde(default)]
    pub firewall: bool,
    #[serde(default)]
    pub screen_lock: bool,
    /// `block` (a failing device leaves every peer map until it complies) or `warn` (events
    /// only). Default `warn`.
    #[serde(default)]
    #[schema(example = "block")]
    pub action: Option<String>,
}

impl PostureConfig {
    fn requirements(&self) -> PostureRequirements {
        PostureRequirements {
            min_os_version: self
                .min_os_version
                .iter()
                .map(|(os, version)| OsMinimum {
                    os: os.clone(),
                    version: version.clone(),
                })
                .collect(),
            min_client_version: self.min_client_version.clone(),
            disk_encrypted: self.disk_encrypted,
            firewall: self.firewall,
            screen_lock: self.screen_lock,
            action: self.action.clone().unwrap_or_else(|| "warn".into()),
        }
    }

    fn of(r: &PostureRequirements) -> PostureConfig {
        PostureConfig {
            min_os_version: r
                .min_os_version
                .iter()
                .map(|m| (m.os.clone(), m.version.clone()))
                .collect(),
            min_client_version: r.min_client_version.clone(),
            disk_encrypted: r.disk_encrypted,
            firewall: r.firewall,
            screen_lock: r.screen_lock,
            action: Some(r.action.clone()),
        }
    }
}

/// The requirements, and where the fleet stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostureConfigView {
    pub config: PostureConfig,
    /// When they last changed (RFC 3339); `null`: never set (nothing required).
    pub updated_at: Option<String>,
    /// Devices in violation now.
    pub violating: Vec<NonCompliant>,
}

/// A device that fails (or, in a dry run, would fail) the requirements.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NonCompliant {
    pub device_id: String,
    pub hostname: String,
    /// The signals it fails, e.g. `disk_encrypted`, `min_os_version`.
    pub failing: Vec<String>,
}

fn config_view(org: projections::OrgView<'_>) -> PostureConfigView {
    let p = org.posture();
    PostureConfigView {
        config: p
            .requirements
            .as_ref()
            .map(PostureConfig::of)
            .unwrap_or_default(),
        updated_at: p
            .requirements
            .as_ref()
            .map(|_| events::format_time(p.configured_at)),
        violating: org
            .devices()
            .filter_map(|d| {
                let dp = org.device_posture(&d.id)?;
                dp.violating().then(|| NonCompliant {
                    device_id: d.id.clone(),
                    hostname: d.hostname.clone(),
                    failing: dp.failing.clone(),
                })
            })
            .collect(),
    }
}

/// Where `d` stands with the organization's requirements.
pub fn compliance(
    org: projections::OrgView<'_>,
    d: &projections::devices::Device,
) -> super::devices::Compliance {
    let p = org.device_posture(&d.id);
    let reported = p.and_then(|p| p.signals.as_ref());
    let failing = match &org.posture().requirements {
        Some(r) => posture::failing(r, d, reported),
        None => Vec::new(),
    };
    super::devices::Compliance {
        compliant: failing.is_empty(),
        blocked: crate::peers::fleet::is_blocked(org, d),
        failing,
    }
}

/// The posture requirements.
#[utoipa::path(
    get, path = "/posture/config", tag = "posture",
    responses((status = 200, description = "The requirements and the devices failing them", body = PostureConfigView)),
    security(("bearer" = []))
)]
async fn get_config(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<PostureConfigView>, Problem> {
    principal.require(Need::read(Group::Posture))?;
    let models = state.models().load();
    Ok(Json(config_view(models.state.org(&principal.org_id))))
}

/// Parameters of `PUT /posture/config`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// `true`: list the devices that would fall out of compliance; change nothing.
    pub dry_run: Option<bool>,
}

/// The outcome of `PUT /posture/config`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PutResult {
    pub dry_run: bool,
    /// Whether anything changed (false for a dry run or the same requirements again).
    pub applied: bool,
    pub config: PostureConfig,
    /// With these requirements, the devices that fail them (devices that never reported
    /// count as failing every required signal).
    pub violating: Vec<NonCompliant>,
}

/// Set the posture requirements, or with `dry_run=true` see who would fall out of compliance.
#[utoipa::path(
    put, path = "/posture/config", tag = "posture",
    params(PutQuery),
    request_body = PostureConfig,
    responses((status = 200, description = "Set (or, with dry_run, what it would do)", body = PutResult)),
    security(("bearer" = []))
)]
async fn put_config(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Query(q): Query<PutQuery>,
    Json(Object(body)): Json<Object<PostureConfig>>,
) -> Result<Json<PutResult>, Problem> {
    let dry_run = q.dry_run.unwrap_or(false);
    principal.require(if dry_run {
        Need::read(Group::Posture)
    } else {
        Need::write(Group::Posture)
    })?;
    let requirements = body.requirements();
    posture::validate(&requirements)?;
    let would = |org: projections::OrgView<'_>| {
        posture::would_fail(org, &requirements)
            .into_iter()
            .map(|(d, failing)| NonCompliant {
                device_id: d.id.clone(),
                hostname: d.hostname.clone(),
                failing,
            })
            .collect::<Vec<_>>()
    };
    if dry_run {
        let models = state.models().load();
        return Ok(Json(PutResult {
            dry_run,
            applied: false,
            violating: would(models.state.org(&principal.org_id)),
            config: PostureConfig::of(&requirements),
        }));
    }
    let outcome = crate::execute::execute(&state, principal.command(&request_id), |org| {
        posture::configure(org, requirements.clone())
    })
    .await?;
    let models = state.models().load();
    Ok(Json(PutResult {
        dry_run,
        applied: outcome.appended().is_some(),
        violating: would(models.state.org(&principal.org_id)),
        config: PostureConfig::of(&requirements),
    }))
}

/// One signal of a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignalState {
    /// `min_os_version`, `min_client_version`, `disk_encrypted`, `firewall`, `screen_lock`.
    pub name: String,
    /// What the organization requires (`null`: nothing).
    pub required: Option<serde_json::Value>,
    /// What the device last reported (`null`: never).
    pub reported: Option<serde_json::Value>,
    pub pass: bool,
    /// Since when the reported value holds (RFC 3339), or the requirement, whichever changed
    /// last; `null` before the first report.
    pub since: Option<String>,
}

/// A device's posture.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePostureView {
    pub device_id: String,
    pub compliant: bool,
    /// Whether posture keeps it out of every peer map now.
    pub blocked: bool,
    /// Since when it has been (non-)compliant (RFC 3339); `null` before its first report.
    pub since: Option<String>,
    pub signals: Vec<SignalState>,
}

/// A device's posture, signal by signal.
#[utoipa::path(
    get, path = "/devices/{id}/posture", tag = "posture",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    responses((status = 200, description = "The device's posture", body = DevicePostureView)),
    security(("bearer" = []))
)]
async fn device_posture(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<DevicePostureView>, Problem> {
    principal.require(Need::read(Group::Posture))?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let d = org
        .live_device(&id)
        .filter(|d| principal.may_manage(org, d))
        .ok_or_else(|| {
            Problem::not_found(format!("no device '{}'", crate::domain::text::echo(&id)))
        })?;
    let p = org.device_posture(&d.id).cloned().unwrap_or_default();
    let config = org.posture();
    let r = config.requirements.clone().unwrap_or_default();
    let failing = match &p.signals {
        Some(s) => posture::failing(&r, d, Some(s)),
        None => posture::failing(&r, d, None),
    };
    let s = p.signals.clone().unwrap_or_default();
    let os = d.os.to_lowercase();
    let required: [Option<serde_json::Value>; 5] = [
        r.min_os_version
            .iter()
            .find(|m| m.os == os)
            .map(|m| m.version.clone().into()),
        r.min_client_version.clone().map(Into::into),
        r.disk_encrypted.then_some(true.into()),
        r.firewall.then_some(true.into()),
        r.screen_lock.then_some(true.into()),
    ];
    let reported: [Option<serde_json::Value>; 5] = [
        Some(
            s.os_version
                .clone()
                .unwrap_or_else(|| d.os_version.clone())
                .into(),
        ),
        s.client_version.clone().map(Into::into),
        s.disk_encrypted.map(Into::into),
        s.firewall.map(Into::into),
        s.screen_lock.map(Into::into),
    ];
    let signals = SIGNALS
        .iter()
        .enumerate()
        .map(|(i, name)| SignalState {
            name: (*name).to_owned(),
            required: required[i].clone(),
            reported: if p.signals.is_some() {
                reported[i].clone()
            } else {
                None
            },
            pass: !failing.iter().any(|f| f == name),
            since: p
                .signals
                .as_ref()
                .map(|_| events::format_time(p.changed_at[i].max(config.configured_at))),
        })
        .collect();
    Ok(Json(DevicePostureView {
        device_id: d.id.clone(),
        compliant: failing.is_empty(),
        blocked: crate::peers::fleet::is_blocked(org, d),
        since: (p.compliance_since > 0).then(|| events::format_time(p.compliance_since)),
        signals,
    }))
}
