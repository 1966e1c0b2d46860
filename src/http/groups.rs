//! `/groups`: the groups synced from the identity provider (SCIM, or the `groups` claim of an
//! OpenID sign-in), and their members.
//!
//! Read-only here, as the identity provider is the source of truth: every write on `/groups…`
//! answers `405` with a problem that says where to change it.

use axum::Extension;
use axum::extract::State;
use projections::directory::Group as DirectoryGroup;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Path, Query};
use super::filter::Filter;
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use super::users::{UserView, time_key, view as user_view};
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups))
        .routes(routes!(get_group))
        .routes(routes!(group_members))
}

/// A group from the identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// `grp_…`
    pub id: String,
    pub display_name: String,
    /// The identity provider's id for the group (SCIM `externalId`).
    pub external_id: Option<String>,
    /// `scim` (pushed by the identity provider) or `oidc` (named by sign-ins' `groups` claim).
    pub source: String,
    pub member_count: usize,
    pub created_at: String,
    pub updated_at: String,
}

fn view(g: &DirectoryGroup) -> GroupView {
    GroupView {
        id: g.id.clone(),
        display_name: g.display_name.clone(),
        external_id: g.external_id.clone(),
        source: g.source.clone(),
        member_count: g.members.len(),
        created_at: events::format_time(g.created_at),
        updated_at: events::format_time(g.updated_at),
    }
}

/// List parameters of `GET /groups`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GroupListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `name` (exact,
    /// case-insensitive), `source` (scim, oidc), `member` (a user id).
    pub filter: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `display_name`.
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "groups",
    filter_keys: &["name", "source", "member"],
    sort_fields: &["created_at", "display_name"],
    default_sort: "created_at",
};

fn check_terms(filter: &Filter) -> Result<(), Problem> {
    match filter
        .clauses
        .iter()
        .flatten()
        .find(|t| t.key == "source" && !matches!(t.value.as_str(), "scim" | "oidc"))
    {
        Some(t) => Err(Problem::invalid_argument(format!(
            "filter 'source:{}': expected scim or oidc",
            crate::domain::text::echo(&t.value)
        ))),
        None => Ok(()),
    }
}

fn matches_term(g: &DirectoryGroup, key: &str, value: &str) -> bool {
    match key {
        "name" => g.display_name.to_lowercase() == value.to_lowercase(),
        "source" => g.source == value,
        "member" => g.members.contains(value),
        _ => false,
    }
}

/// List the groups synced from the identity provider.
#[utoipa::path(
    get, path = "/groups", tag = "groups",
    params(GroupListQuery),
    responses((status = 200, description = "One page of groups", body = Page<GroupView>)),
    security(("bearer" = []))
)]
async fn list_groups(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<GroupListQuery>,
) -> Result<Json<Page<GroupView>>, Problem> {
    principal.require(Need::read(Group::Users))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &q.filter,
        &q.sort,
    )?;
    check_terms(&list.filter)?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let items: Vec<&DirectoryGroup> = org
        .groups()
        .filter(|g| {
            list.filter
                .matches(|key, value| matches_term(g, key, value))
        })
        .collect();
    let by_name = list.sort.field == "display_name";
    let sort_key = |g: &&DirectoryGroup| {
        if by_name {
            g.display_name.to_lowercase()
        } else {
            time_key(g.created_at)
        }
    };
    Ok(Json(list.page(&state, items, sort_key, |g| &g.id, view)))
}

fn no_group(id: &str) -> Problem {
    Problem::not_found(format!("no group '{}'", crate::domain::text::echo(id)))
}

/// One group.
#[utoipa::path(
    get, path = "/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id (`grp_…`)")),
    responses((status = 200, description = "The group", body = GroupView)),
    security(("bearer" = []))
)]
async fn get_group(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<GroupView>, Problem> {
    principal.require(Need::read(Group::Users))?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    org.group(&id)
        .map(|g| Json(view(g)))
        .ok_or_else(|| no_group(&id))
}

/// List parameters of `GET /groups/{id}/members`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const MEMBERS_SPEC: ListSpec = ListSpec {
    resource: "group_members",
    filter_keys: &[],
    sort_fields: &["id"],
    default_sort: "id",
};

/// The users in a group, in user id order.
#[utoipa::path(
    get, path = "/groups/{id}/members", tag = "groups",
    params(("id" = String, Path, description = "Group id (`grp_…`)"), MembersQuery),
    responses((status = 200, description = "One page of the group's members", body = Page<UserView>)),
    security(("bearer" = []))
)]
async fn group_members(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<Page<UserView>>, Problem> {
    principal.require(Need::read(Group::Users))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &MEMBERS_SPEC,
        &q.limit,
        &q.cursor,
        &None,
        &None,
    )?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    if org.group(&id).is_none() {
        return Err(no_group(&id));
    }
    let members: Vec<_> = org.members(&id).collect();
    Ok(Json(list.page(
        &state,
        members,
        |u| u.id.clone(),
        |u| &u.id,
        |u| user_view(org, u),
    )))
}

/// Why every write on `/groups…` answers 405 (the request frame puts it in the problem):
/// the identity provider is the source of truth.
pub const READ_ONLY: &str = "groups are read-only here: the source of truth is your identity \
     provider (Microsoft Entra, Okta, Google Workspace, …). Change the group or its members \
     there; the change reaches QuickZTNA within seconds through SCIM (/scim/v2), or at the \
     member's next single sign-on.";

/// Whether `path` (as requested) is under `/api/v1/groups`.
pub fn is_groups_path(path: &str) -> bool {
    path == "/api/v1/groups" || path.starts_with("/api/v1/groups/")
}
