//! `/policy/history`: every version of the policy ever applied, newest first, each with who
//! applied it, when, why, and (for one version) its text — what an auditor replays and what a
//! rollback `PUT`s again.

use axum::Extension;
use axum::extract::State;
use projections::policies::PolicyVersion;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Principal;
use super::event_view::ActorView;
use super::extract::{Json, Path, Query};
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

/// One version of the policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersionView {
    pub version: u64,
    /// `yaml` or `json`: how it was sent.
    pub format: String,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// Who applied it.
    pub actor: ActorView,
    /// Why (`X-Change-Reason` or `reason`), if they said.
    pub reason: Option<String>,
    /// The version it restored, if it was a rollback.
    pub rollback_of: Option<u64>,
    pub request_id: String,
    /// The audit log id of its `policy.applied` event.
    pub event_id: u64,
    /// Size of the text in bytes.
    pub size: usize,
    /// Whether it is the version in force.
    pub current: bool,
}

/// One version with its text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersionDetail {
    #[serde(flatten)]
    pub version: PolicyVersionView,
    /// The policy exactly as it was sent.
    pub text: String,
}

fn view(v: &PolicyVersion, current: u64) -> PolicyVersionView {
    PolicyVersionView {
        version: v.version,
        format: v.format.clone(),
        applied_at: events::format_time(v.applied_at),
        actor: ActorView {
            kind: v.actor.kind.as_str().to_owned(),
            id: v.actor.id.clone(),
            display: v.actor.description.clone(),
        },
        reason: v.reason.clone(),
        rollback_of: v.rollback_of,
        request_id: v.request_id.clone(),
        event_id: v.seq,
        size: v.text.len(),
        current: v.version == current,
    }
}

/// Parameters of `GET /policy/history`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "policy_history",
    filter_keys: &[],
    sort_fields: &["version"],
    default_sort: "version:desc",
};

/// The policy's versions, newest first.
#[utoipa::path(
    get, path = "/policy/history", tag = "policy",
    params(HistoryQuery),
    responses((status = 200, description = "One page of versions", body = Page<PolicyVersionView>)),
    security(("bearer" = []))
)]
pub async fn list_history(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Page<PolicyVersionView>>, Problem> {
    principal.require(Need::read(Group::Policy))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &None,
        &None,
    )?;
    let models = state.models().load();
    let policy = models.state.org(&principal.org_id).policy();
    let current = policy.current().map_or(0, |v| v.version);
    let items: Vec<(String, &PolicyVersion)> = policy
        .versions
        .iter()
        .map(|v| (format!("{:020}", v.version), v.as_ref()))
        .collect();
    Ok(Json(list.page(
        &state,
        items,
        |(k, _)| k.clone(),
        |(k, _)| k.as_str(),
        |(_, v)| view(v, current),
    )))
}

/// One version of the policy, with its text.
#[utoipa::path(
    get, path = "/policy/history/{version}", tag = "policy",
    params(("version" = u64, Path, description = "The version number (1 is the first)")),
    responses((status = 200, description = "The version", body = PolicyVersionDetail)),
    security(("bearer" = []))
)]
pub async fn get_version(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(version): Path<u64>,
) -> Result<Json<PolicyVersionDetail>, Problem> {
    principal.require(Need::read(Group::Policy))?;
    let models = state.models().load();
    let policy = models.state.org(&principal.org_id).policy();
    let current = policy.current().map_or(0, |v| v.version);
    let v = policy
        .version(version)
        .ok_or_else(|| Problem::not_found(format!("no policy version {version}")))?;
    Ok(Json(PolicyVersionDetail {
        version: view(v, current),
        text: v.text.clone(),
    }))
}
