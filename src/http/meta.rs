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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(version))
        .routes(routes!(openapi_json))
}

/// Serves the document at `/api/openapi.json` too (the seed page's canonical address).
pub fn openapi_routes(doc: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    let json = serde_json::to_vec_pretty(&*doc).unwrap_or_default();
    // Every app built in this process generates the same document.
    let _ = DOCUMENT.set(json.into());
    Router::new().route("/api/openapi.json", get(openapi_json))
}

static DOCUMENT: OnceLock<axum::body::Bytes> = OnceLock::new();

/// The service's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `starting` / `degraded` with a 503.
    pub status: String,
    pub log: LogHealth,
    pub projections: ProjectionHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogHealth {
    /// Position of the last durable event.
    pub head: u64,
    /// False after an I/O error: the log refuses writes until restarted.
    pub writable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionHealth {
    /// Position the read models have applied.
    pub position: u64,
    /// False while replaying the log at start-up.
    pub caught_up: bool,
    pub failed: bool,
}

/// Service health: the event log and the read models. 503 while catching up or degraded.
#[utoipa::path(
    get, path = "/health", tag = "meta",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Starting (read models catching up) or degraded; the problem body also carries `log` and `projections`", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn health(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    let models = state.models();
    let log = LogHealth {
        head: state.log().head(),
        writable: !state.log().is_failed(),
    };
    let projections = ProjectionHealth {
        position: models.position(),
        caught_up: models.caught_up(),
        failed: models.failed(),
    };
    if log.writable && projections.caught_up && !projections.failed {
        return Json(Health {
            status: "ok".into(),
            log,
            projections,
        })
        .into_response();
    }
    let (status, detail) = if !log.writable || projections.failed {
        (
            "degraded",
            "the event log or the read models have failed; see the server log",
        )
    } else {
        (
            "starting",
            "the read models are catching up with the event log",
        )
    };
    let problem = Problem::unavailable(detail, 1);
    let mut body =
        serde_json::to_value(problem.body("/api/v1/health", &request_id.0)).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut body {
        map.insert("health_status".into(), status.into());
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
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
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
