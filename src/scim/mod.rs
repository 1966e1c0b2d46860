//! SCIM 2.0 (RFC 7643/7644) at `/scim/v2`: identity providers (Microsoft Entra, Okta) provision
//! users and groups here, with an API token of scope `scim`.
//!
//! SCIM speaks its own error format: handlers answer [`error::ScimError`], and the request frame
//! renders any other error under `/scim/v2` (authentication, rate limits, routing) as one too.
//! Every write goes through [`crate::directory::execute`] (one directory write at a time per
//! organization) and is recorded with the token as a `scim` actor.
//!
//! - [`filter`], [`eval`]: the filter language, parsed and evaluated.
//! - [`patch`], [`model`]: PATCH bodies, and users and groups as SCIM JSON.
//! - [`schema`], [`discovery`]: what we advertise, and its endpoints.
//! - [`query`]: list parameters, paging and `attributes`/`excludedAttributes`.
//! - [`users`], [`groups`]: the resources.

pub mod discovery;
pub mod error;
pub mod eval;
pub mod filter;
pub mod groups;
pub mod model;
pub mod patch;
pub mod query;
pub mod schema;
pub mod users;

use axum::Router;
use axum::body::Bytes;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use events::{Actor, ActorKind};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use self::error::{SCIM_JSON, SCIM_PREFIX, ScimError};
use crate::directory;
use crate::domain::scope::{Group, Need};
use crate::domain::{Decision, Rejection};
use crate::execute::{Command, ExecuteError};
use crate::http::auth::{self, Principal};
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// The `/scim/v2` routes, authenticated and rate-limited like the REST API; nest at
/// [`SCIM_PREFIX`].
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ServiceProviderConfig", get(discovery::config))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/Users", get(users::list).post(users::create))
        .route("/Users/.search", post(users::search))
        .route(
            "/Users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route("/Groups/.search", post(groups::search))
        .route(
            "/Groups/{id}",
            get(groups::get)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route("/.search", post(discovery::search_all))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state, auth::authenticate))
}

async fn not_found() -> ScimError {
    ScimError::not_found("no SCIM endpoint at this path")
}

/// Checks the token's `scim` scope (and charges the request to its quota).
pub fn require(principal: &Principal) -> Result<(), ScimError> {
    principal
        .require(Need::write(Group::Scim))
        .map_err(ScimError::from)
}

/// The command for a SCIM write: the token is the actor, as the identity provider's agent.
pub fn command(principal: &Principal, request_id: &RequestId) -> Command {
    let actor = Actor {
        kind: ActorKind::Scim,
        id: principal.token_id.clone(),
        description: principal.description.clone(),
    };
    Command::new(principal.org_id.clone(), actor, request_id.0.clone())
}

/// Runs a directory write; a rejection becomes the SCIM error for it.
pub async fn write(
    state: &AppState,
    command: Command,
    decide: impl FnMut(projections::OrgView<'_>) -> Result<Decision, Rejection>,
) -> Result<(), ScimError> {
    directory::execute(state, command, decide)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            ExecuteError::Rejected(r) => rejection(r),
            other => crate::http::commit::problem(other, |_: Rejection| {
                crate::http::problem::Problem::internal("unreachable rejection")
            })
            .into(),
        })
}

/// The SCIM error for a directory decision's refusal.
pub fn rejection(r: Rejection) -> ScimError {
    match r {
        Rejection::Invalid(d) | Rejection::Unprocessable(d) => ScimError::invalid_value(d),
        Rejection::Conflict(d) => ScimError::uniqueness(d),
        Rejection::NotFound(d) => ScimError::not_found(d),
        Rejection::Forbidden(d) => ScimError::new(StatusCode::FORBIDDEN, None, d),
    }
}

/// Both decisions in one append (a group's rename and its membership change).
pub fn merge(mut a: Decision, b: Decision) -> Decision {
    for e in b.expectations {
        if !a.expectations.contains(&e) {
            a.expectations.push(e);
        }
    }
    a.events.extend(b.events);
    a
}

/// A request body as JSON; anything else is `invalidSyntax`.
pub fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

/// A SCIM JSON response.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
        bytes,
    )
        .into_response()
}

/// The absolute URL of `/scim/v2` as the client reached it, for `meta.location` and `$ref`s.
/// The scheme is `https` only when a proxy says so (`X-Forwarded-Proto`).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{SCIM_PREFIX}")
}

/// A timestamp (microseconds) as RFC 3339, for `meta.created`/`lastModified`.
pub fn timestamp(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
