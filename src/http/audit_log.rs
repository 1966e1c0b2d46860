//! `/audit-log`: the organization's events, newest first, filtered, one at a time, with their
//! place in the organization's audit chain. Served from the log's index (see
//! [`crate::audit::page`]), never from a scan.

use axum::Extension;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::event_view::EventView;
use super::extract::{Json, Path, Query};
use super::pagination::Page;
use super::problem::Problem;
use crate::audit::page::{self, AuditQuery};
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_log))
        .routes(routes!(get_event))
}

/// One page of the audit log (most recent first unless `sort=time:asc`).
#[utoipa::path(
    get, path = "/audit-log", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of events", body = Page<EventView>),
        (status = 410, description = "`cursor_expired`: walking oldest first, the events right after the cursor are past the organization's retention; start again without a cursor", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_audit_log(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Page<EventView>>, Problem> {
    principal.require(Need::read(Group::Audit))?;
    Ok(Json(
        page::page(&state, &principal.org_id, "audit-log", &q).await?,
    ))
}

/// One event with full detail, including its audit chain link.
#[utoipa::path(
    get, path = "/audit-log/{event_id}", tag = "audit",
    params(("event_id" = String, Path, description = "The event's `event_id` (a ULID) or its `id` (the organization's sequence number)")),
    responses((status = 200, description = "The event", body = EventView)),
    security(("bearer" = []))
)]
async fn get_event(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(event_id): Path<String>,
) -> Result<Json<EventView>, Problem> {
    principal.require(Need::read(Group::Audit))?;
    Ok(Json(page::one(&state, &principal.org_id, &event_id).await?))
}

/// `GET /events` without `stream=true`: the audit log's page, for `events:read` tokens.
pub async fn events_page(
    state: &AppState,
    principal: &Principal,
    q: &AuditQuery,
) -> Result<Page<EventView>, Problem> {
    principal.require(Need::read(Group::Events))?;
    page::page(state, &principal.org_id, "events", q).await
}
