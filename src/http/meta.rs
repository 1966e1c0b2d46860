//! Health, version and the OpenAPI document: unauthenticated.

use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Json;
use super::problem::{PROBLEM_JSON, Problem};
use super::request_id::RequestId;
use crate::state::AppState;

/// `/version` and `/openapi.json`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(openapi_json))
}

/// `/health`, apart from the other public routes so that it can have a bucket of its own.
pub fn health_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Serves the document at `/api/openapi.json` too (the seed page's canonical address).
pub fn openapi_routes(doc: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    let json = serde_json::to_vec_pretty(&*doc).unwrap_or_default();
    // Every app built in this process generates the same document.
    let _ = DOCUMENT.set(json.into());
    Router::new().route("/api/openapi.json", get(openapi_json))
}

static DOCUMENT: OnceLock<axum::body::Bytes> = OnceLock::new();

/// The service's health. It says whether writes are accepted and why not, never where the
/// log is: the global log position would let one tenant watch another's write volume.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `starting` / `degraded` with a 503.
    pub status: String,
    pub log: LogHealth,
    pub projections: ProjectionHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogHealth {
    /// False after an I/O error or a panic in the writer: the log refuses writes until the
    /// server is restarted.
    pub writable: bool,
    /// Why the log stopped accepting writes, if it did.
    pub failure: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionHealth {
    /// False while replaying the log at start-up.
    pub caught_up: bool,
    /// True after a panic or a read error while applying an event: the read models have
    /// stopped, and writes are refused until the server is restarted.
    pub failed: bool,
    /// Why the read models stopped (the projection, the event's type, the panic), if they did.
    pub failure: Option<String>,
}

/// Service health: the event log and the read models. 503 while catching up or degraded.
#[utoipa::path(
    get, path = "/health", tag = "meta",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Starting (read models catching up) or degraded (the event log or the read models have failed; writes answer 503 until restart). The problem body also carries `health_status` (`starting` or `degraded`), `reason` (why it is degraded, also in `detail`), and `log` and `projections` as in `Health`", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn health(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    let models = state.models();
    let log = LogHealth {
        writable: !state.log().is_failed(),
        failure: state.log().failure(),
    };
    let chains = state.chains();
    let projections = ProjectionHealth {
        caught_up: models.caught_up() && chains.caught_up(),
        failed: models.failed() || chains.failed() || state.peers().failure().is_some(),
        failure: models
            .failure()
            .or_else(|| chains.failure())
            .or_else(|| state.peers().failure()),
    };
    let reason = degraded_reason(&log, &projections);
    if reason.is_none() && projections.caught_up {
        return Json(Health {
            status: "ok".into(),
            log,
            projections,
        })
        .into_response();
    }
    let (status, detail) = match &reason {
        Some(why) => ("degraded", why.clone()),
        None => (
            "starting",
            "the read models are catching up with the event log".to_owned(),
        ),
    };
    let retry_after = if reason.is_some() { 30 } else { 1 };
    let problem = Problem::unavailable(detail, retry_after);
    let mut body =
        serde_json::to_value(problem.body("/api/v1/health", &request_id.0)).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut body {
        map.insert("health_status".into(), status.into());
        if let Some(why) = reason {
            map.insert("reason".into(), why.into());
        }
        map.insert("log".into(), serde_json::to_value(&log).unwrap_or_default());
        map.insert(
            "projections".into(),
            serde_json::to_value(&projections).unwrap_or_default(),
        );
    }
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// Why the server is degraded, if it is: every failure, the log's first. Operators need the
/// cause where they look first, and a failure that stops all writes is not a secret.
fn degraded_reason(log: &LogHealth, projections: &ProjectionHealth) -> Option<String> {
    let log_reason = match (&log.failure, log.writable) {
        (Some(why), _) => Some(format!("the event log has failed: {why}")),
        (None, false) => Some("the event log has failed".to_owned()),
        (None, true) => None,
    };
    let projection_reason = match (&projections.failure, projections.failed) {
        (Some(why), _) => Some(format!("the read models have failed: {why}")),
        (None, true) => Some("the read models have failed".to_owned()),
        (None, false) => None,
    };
    let reasons: Vec<String> = [log_reason, projection_reason]
        .into_iter()
        .flatten()
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The service's version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// The server's release, e.g. `0.1.0`.
    pub version: String,
    /// The API's major version in the URL path.
    pub api_version: String,
    /// The event log's record format.
    pub log_format: u8,
}

/// Service version.
#[utoipa::path(get, path = "/version", tag = "meta", responses((status = 200, description = "Version", body = Version)))]
async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: "v1".into(),
        log_format: events::codec::FORMAT_V1,
    })
}

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    match DOCUMENT.get() {
        Some(doc) => {
            let mut resp = doc.clone().into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        None => Problem::unavailable("the document is being generated", 1).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_every_failure_the_log_first() {
        let log = |failure: Option<&str>| LogHealth {
            writable: failure.is_none(),
            failure: failure.map(str::to_owned),
        };
        let models = |failure: Option<&str>| ProjectionHealth {
            caught_up: true,
            failed: failure.is_some(),
            failure: failure.map(str::to_owned),
        };
        assert_eq!(degraded_reason(&log(None), &models(None)), None);
        assert_eq!(
            degraded_reason(&log(Some("commit failed: EIO")), &models(None)).as_deref(),
            Some("the event log has failed: commit failed: EIO")
        );
        assert_eq!(
            degraded_reason(&log(Some("EIO")), &models(Some("panic"))).as_deref(),
            Some("the event log has failed: EIO; the read models have failed: panic")
        );
    }
}
