//! `/users`: the organization's people — invited by the API, provisioned by the identity
//! provider (SCIM) or joined by signing in (SSO) — with their devices and groups.
//!
//! Deleting a user removes every device they own in the same append; `POST /users` (invite, or
//! an SSO-domain rule) lives in [`super::invitations`].

use axum::Extension;
use axum::extract::State;
use http::StatusCode;
use projections::OrgView;
use projections::directory::User;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::devices::{DeviceView, current_view};
use super::extract::{Json, Path, Query};
use super::filter::Filter;
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::directory::{self, Role};
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, super::invitations::create_user))
        .routes(routes!(get_user, remove_user))
        .routes(routes!(user_devices))
}

/// A group as a user's membership names it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupRef {
    /// `grp_…`
    pub id: String,
    pub display_name: String,
}

/// A person of the organization.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// `usr_…`
    pub id: String,
    /// Where invitations go; what SSO matches a verified email against (empty if unknown).
    pub email: String,
    /// The login name the identity provider matches on (SCIM `userName`).
    pub user_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The identity provider's id for the person (SCIM `externalId`).
    pub external_id: Option<String>,
    /// `admin`, `member` or `auditor`.
    pub role: String,
    /// `pending` (invited, never signed in), `active` or `deactivated`.
    pub status: String,
    /// How they joined: `invite`, `scim`, `sso` or `api`.
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
    /// The groups they are in (from the identity provider).
    pub groups: Vec<GroupRef>,
}

/// A person with their devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    /// How many live devices they own.
    pub device_count: usize,
    /// Their devices, oldest first: the first [`DETAIL_DEVICES`] (`GET /users/{id}/devices`
    /// pages through all of them).
    pub devices: Vec<DeviceView>,
}

/// Devices a user's detail shows inline.
pub const DETAIL_DEVICES: usize = 200;

pub fn view(org: OrgView<'_>, u: &User) -> UserView {
    UserView {
        id: u.id.clone(),
        email: u.profile.email.clone(),
        user_name: u.profile.user_name.clone(),
        display_name: u.profile.display_name.clone(),
        given_name: u.profile.given_name.clone(),
        family_name: u.profile.family_name.clone(),
        external_id: u.profile.external_id.clone(),
        role: u.role.clone(),
        status: u.status().to_owned(),
        source: u.source.clone(),
        created_at: events::format_time(u.created_at),
        updated_at: events::format_time(u.updated_at),
        last_sign_in_at: u.last_sign_in_at.map(events::format_time),
        groups: org
            .groups_of(&u.id)
            .map(|g| GroupRef {
                id: g.id.clone(),
                display_name: g.display_name.clone(),
            })
            .collect(),
    }
}

/// List parameters of `GET /users`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `email` (exact,
    /// case-insensitive), `role` (admin, member, auditor), `status` (pending, active,
    /// deactivated), `group` (a group id or display name, case-insensitive).
    pub filter: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `email`, `display_name`.
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "users",
    filter_keys: &["email", "role", "status", "group"],
    sort_fields: &["created_at", "email", "display_name"],
    default_sort: "created_at",
};
const STATUSES: &[&str] = &["pending", "active", "deactivated"];

fn check_terms(filter: &Filter) -> Result<(), Problem> {
    for term in filter.clauses.iter().flatten() {
        let bad = match term.key.as_str() {
            "role" => Role::parse(&term.value)
                .err()
                .map(|_| "one of admin, member, auditor"),
            "status" => (!STATUSES.contains(&term.value.as_str()))
                .then_some("one of pending, active, deactivated"),
            _ => None,
        };
        if let Some(expected) = bad {
            return Err(Problem::invalid_argument(format!(
                "filter '{}:{}': expected {expected}",
                term.key,
                crate::domain::text::echo(&term.value)
            )));
        }
    }
    Ok(())
}

fn matches_term(org: OrgView<'_>, u: &User, key: &str, v: &str) -> bool {
    match key {
        "email" => u.profile.email.eq_ignore_ascii_case(v),
        "role" => u.role == v,
        "status" => u.status() == v,
        "group" => org
            .groups_of(&u.id)
            .any(|g| g.id == v || g.display_name.to_lowercase() == v.to_lowercase()),
        _ => false,
    }
}

/// Zero-padded, so that times sort as strings.
pub fn time_key(t: i64) -> String {
    format!("{:020}", t.max(0))
}

/// List the organization's users.
#[utoipa::path(
    get, path = "/users", tag = "users",
    params(UserListQuery),
    responses((status = 200, description = "One page of users", body = Page<UserView>)),
    security(("bearer" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<UserListQuery>,
) -> Result<Json<Page<UserView>>, Problem> {
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
    let items: Vec<&User> = org
        .users()
        .filter(|u| {
            list.filter
                .matches(|key, value| matches_term(org, u, key, value))
        })
        .collect();
    let field = list.sort.field.clone();
    let sort_key = |u: &&User| match field.as_str() {
        "email" => u.profile.email.to_lowercase(),
        "display_name" => u.profile.display_name.to_lowercase(),
        _ => time_key(u.created_at),
    };
    Ok(Json(list.page(
        &state,
        items,
        sort_key,
        |u| &u.id,
        |u| view(org, u),
    )))
}

fn no_user(id: &str) -> Problem {
    Problem::not_found(format!("no user '{}'", crate::domain::text::echo(id)))
}

/// One user, with their devices and group memberships.
#[utoipa::path(
    get, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id (`usr_…`)")),
    responses((status = 200, description = "The user", body = UserDetail)),
    security(("bearer" = []))
)]
async fn get_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<UserDetail>, Problem> {
    principal.require(Need::read(Group::Users))?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let user = org.user(&id).ok_or_else(|| no_user(&id))?;
    let devices = org.devices_of(user);
    Ok(Json(UserDetail {
        user: view(org, user),
        device_count: devices.len(),
        devices: devices
            .into_iter()
            .take(DETAIL_DEVICES)
            .map(|d| current_view(&state, d))
            .collect(),
    }))
}

/// List parameters of `GET /users/{id}/devices`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserDevicesQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `hostname`.
    pub sort: Option<String>,
}

const DEVICES_SPEC: ListSpec = ListSpec {
    resource: "user_devices",
    filter_keys: &[],
    sort_fields: &["created_at", "hostname"],
    default_sort: "created_at",
};

/// The devices this user owns.
#[utoipa::path(
    get, path = "/users/{id}/devices", tag = "users",
    params(("id" = String, Path, description = "User id (`usr_…`)"), UserDevicesQuery),
    responses((status = 200, description = "One page of the user's devices", body = Page<DeviceView>)),
    security(("bearer" = []))
)]
async fn user_devices(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<UserDevicesQuery>,
) -> Result<Json<Page<DeviceView>>, Problem> {
    principal.require(Need::read(Group::Users))?;
    principal.require(Need::read(Group::Devices))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &DEVICES_SPEC,
        &q.limit,
        &q.cursor,
        &Some(String::new()),
        &q.sort,
    )?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let user = org.user(&id).ok_or_else(|| no_user(&id))?;
    let field = list.sort.field.clone();
    let sort_key = |d: &&projections::devices::Device| match field.as_str() {
        "hostname" => format!("{}\u{0}{}", d.hostname, d.id),
        _ => time_key(d.created_at),
    };
    Ok(Json(list.page(
        &state,
        org.devices_of(user),
        sort_key,
        |d| &d.id,
        |d| current_view(&state, d),
    )))
}

/// Remove a user and every device they own, in one atomic operation: the devices' node
/// credentials stop working at once, and the user leaves their groups. Their history stays in
/// the audit log.
#[utoipa::path(
    delete, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id (`usr_…`)")),
    responses((status = 204, description = "Removed, with their devices")),
    security(("bearer" = []))
)]
async fn remove_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Users))?;
    crate::directory::execute(&state, principal.command(&request_id), |org| {
        directory::users::remove_user(org, &id, "api")
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
