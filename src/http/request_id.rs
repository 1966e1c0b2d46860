//! Request context: the correlation id, the request's tracing span, the access log line, and the
//! last step that makes every error an RFC 7807 problem.
//!
//! [`request_context`] is the outermost middleware. It takes the client's `X-Request-ID` (or makes
//! a ULID), runs the request inside a `request` span carrying that id, echoes the id on every
//! response, fills in `instance` and `request_id` of problem bodies, and turns error responses
//! that were not built as problems (axum's 404/405/415, a body-limit layer's 413, a timeout's
//! 408) into problems. Under `/scim/v2` the same errors become SCIM error bodies instead
//! (`crate::scim::error`). Bodies and the `Authorization` header are never logged.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tracing::Instrument;

use super::problem::{PROBLEM_JSON, Problem};

/// The correlation header, read from requests and set on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id we accept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Largest plain-text error body we reuse as a problem's detail when converting a non-problem
/// error response (axum's own rejections are short sentences).
const MAX_REUSED_DETAIL: usize = 1024;

/// This request's correlation id, in the request extensions (also an extractor). Events
/// appended on behalf of the request record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| Problem::internal("request_context middleware is not installed"))
    }
}

/// Whether a client-supplied `X-Request-ID` is acceptable: 1–128 characters of
/// `[A-Za-z0-9._:-]` (UUIDs and ULIDs qualify).
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The path as logs may show it: a pending sign-in's id (`…/machine/login/<id>`,
/// `…/sso/cli-login/<id>`) is as good as a secret until the sign-in ends, so it is cut.
fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    for marker in ["/machine/login/", "/sso/cli-login/"] {
        if let Some(at) = path.find(marker) {
            return format!("{}{marker}…", &path[..at]).into();
        }
    }
    path.into()
}

/// The request-context middleware; install with `axum::middleware::from_fn(request_context)` as
/// the outermost layer.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // Behind `nest`, the URI seen here may be stripped; the original one is the request path.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |original| original.0.path())
        .to_owned();

    let (id, rejection) = match req.headers().get(&X_REQUEST_ID) {
        None => (new_request_id(), None),
        Some(value) => match value.to_str() {
            Ok(supplied) if is_valid_request_id(supplied) => (supplied.to_owned(), None),
            _ => (
                new_request_id(),
                Some(Problem::invalid_argument(
                    "X-Request-ID must be 1 to 128 characters from A-Z, a-z, 0-9, '.', '_', ':' \
                     and '-' (a UUID or a ULID qualifies)",
                )),
            ),
        },
    };

    let logged = loggable(&path).into_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %logged);
    async move {
        let response = match rejection {
            Some(problem) => problem.into_response(),
            None => {
                req.extensions_mut().insert(RequestId(id.clone()));
                next.run(req).await
            }
        };
        let response = finish(response, &method, &path, &id).await;
        tracing::info!(
            method = %method,
            path = %logged,
            status = response.status().as_u16(),
            latency = ?started.elapsed(),
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}

/// Fallback for unknown routes.
pub async fn not_found_fallback() -> Problem {
    Problem::not_found("no route for this path")
}

fn new_request_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Echoes the id and makes sure an error response is a complete problem.
async fn finish(response: Response, method: &Method, instance: &str, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    // SCIM clients get SCIM errors (see `crate::scim::error`): a SCIM handler's own error
    // passes through, anything else is re-rendered below.
    let scim = crate::scim::error::is_scim_path(instance);
    let scim_body = scim && crate::scim::error::is_scim_json(&parts.headers);
    let (problem, body) = match parts.extensions.get::<Problem>() {
        Some(problem) => (Some(problem.clone()), body),
        None if parts.status.as_u16() >= 400 && !is_problem_json(&parts.headers) && !scim_body => {
            let problem = convert(parts.status, &parts.headers, method, instance, body).await;
            parts.extensions.insert(problem.clone());
            (Some(problem), Body::empty())
        }
        None => (None, body),
    };
    let body = match problem {
        Some(problem) if scim => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::scim::error::SCIM_JSON),
            );
            Body::from(crate::scim::error::body_for_problem(&problem))
        }
        Some(problem) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
            Body::from(problem.body_bytes(instance, id))
        }
        None => body,
    };
    if let Ok(value) = HeaderValue::from_str(id) {
        parts.headers.insert(X_REQUEST_ID, value);
    }
    Response::from_parts(parts, body)
}

fn is_problem_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// The problem for an error response built by something other than our handlers. A short
/// plain-text 4xx body (axum's rejection messages) becomes the detail; a 5xx body never does.
async fn convert(
    status: StatusCode,
    headers: &HeaderMap,
    method: &Method,
    instance: &str,
    body: Body,
) -> Problem {
    let mut problem = Problem::for_status(status);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(str::trim).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        // A layer applied with `Router::layer` runs inside axum's method router, which adds
        // `Allow` after us; the header still reaches the client.
        problem.detail = if super::groups::is_groups_path(instance) {
            format!("method {method}: {}", super::groups::READ_ONLY)
        } else if allowed.is_empty() {
            format!(
                "method {method} is not allowed on this path; the Allow header lists those that are"
            )
        } else {
            format!("method {method} is not allowed on this path; allowed: {allowed}")
        };
    } else if status.is_client_error()
        && is_plain_text(headers)
        && let Ok(bytes) = axum::body::to_bytes(body, MAX_REUSED_DETAIL).await
        && let Ok(text) = std::str::from_utf8(&bytes)
        && !text.trim().is_empty()
    {
        problem.detail = text.trim().to_owned();
    }
    problem
}

fn is_plain_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::problem::ProblemBody;
    use axum::Router;
    use axum::body::to_bytes;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/api/v1/devices",
                get(|| async { "ok" }).post(|| async { "ok" }),
            )
            .route(
                "/api/v1/devices/{id}",
                get(|| async { Problem::not_found("no device with id 'x'") }),
            )
            .route("/api/v1/id", get(|id: RequestId| async move { id.0 }))
            .route(
                "/api/v1/boom",
                get(|| async { Problem::internal("disk on fire") }),
            )
            .route(
                "/api/v1/plain",
                get(|| async { (StatusCode::CONFLICT, "already exists") }),
            )
            .route(
                "/api/v1/crash",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "secret stack trace") }),
            )
            .route(
                "/api/v1/upload",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(8))
            .fallback(not_found_fallback)
            .layer(axum::middleware::from_fn(request_context))
    }

    async fn call(req: Request) -> (Response, String) {
        let response = app().oneshot(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        (
            Response::from_parts(parts, Body::empty()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn get_req(uri: &str) -> Request {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn request_id(response: &Response) -> String {
        response.headers()[&X_REQUEST_ID]
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn problem(response: &Response, body: &str) -> ProblemBody {
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        serde_json::from_str(body).unwrap()
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_ulid() {
        let (response, body) = call(get_req("/api/v1/id")).await;
        let id = request_id(&response);
        assert!(id.parse::<ulid::Ulid>().is_ok(), "{id}");
        assert_eq!(body, id, "the handler sees the same id");
    }

    #[tokio::test]
    async fn a_valid_client_id_is_echoed_and_visible_to_handlers() {
        for supplied in [
            "3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f",
            "01HXY7W3ZQ5N8V0K2C4M6P8R9T",
            "client.trace:42_a-b",
            &"x".repeat(128),
        ] {
            let req = Request::get("/api/v1/id")
                .header("X-Request-ID", supplied)
                .body(Body::empty())
                .unwrap();
            let (response, body) = call(req).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(request_id(&response), supplied);
            assert_eq!(body, supplied);
        }
    }

    #[tokio::test]
    async fn an_invalid_client_id_is_rejected_with_a_fresh_id() {
        for supplied in ["", "has space", "semi;colon", &"x".repeat(129), "ünïcode"] {
            let req = Request::get("/api/v1/id")
                .header(
                    "X-Request-ID",
                    HeaderValue::from_bytes(supplied.as_bytes()).unwrap(),
                )
                .body(Body::empty())
                .unwrap();
            let (response, body) = call(req).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{supplied:?}");
            let fresh = request_id(&response);
            assert!(fresh.parse::<ulid::Ulid>().is_ok());
            let p = problem(&response, &body);
            assert!(p.r#type.ends_with("#errors-invalid_argument"));
            assert!(p.detail.contains("1 to 128 characters"), "{}", p.detail);
            assert_eq!(p.request_id, fresh);
            assert_eq!(p.instance, "/api/v1/id");
        }
    }

    #[tokio::test]
    async fn a_handlers_problem_gets_the_instance_and_request_id() {
        let req = Request::get("/api/v1/devices/x?verbose=true")
            .header("X-Request-ID", "abc")
            .body(Body::empty())
            .unwrap();
        let (response, body) = call(req).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let p = problem(&response, &body);
        assert_eq!(p.instance, "/api/v1/devices/x");
        assert_eq!(p.request_id, "abc");
        assert_eq!(p.detail, "no device with id 'x'");
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_not_found_problem() {
        let (response, body) = call(get_req("/api/v1/nope")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let p = problem(&response, &body);
        assert_eq!(p.detail, "no route for this path");
        assert_eq!(p.instance, "/api/v1/nope");
        assert_eq!(p.request_id, request_id(&response));
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_405_problem_keeping_allow() {
        let req = Request::delete("/api/v1/devices")
            .body(Body::empty())
            .unwrap();
        let (response, body) = call(req).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = response.headers()[header::ALLOW].to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        let p = problem(&response, &body);
        assert!(p.r#type.ends_with("#errors-method_not_allowed"));
        assert_eq!(
            p.detail,
            "method DELETE is not allowed on this path; the Allow header lists those that are"
        );
    }

    #[tokio::test]
    async fn wrapping_the_whole_router_lets_a_405_list_the_allowed_methods() {
        let router =
            Router::new().nest("/api/v1", Router::new().route("/x", get(|| async { "ok" })));
        let app = tower::Layer::layer(&axum::middleware::from_fn(request_context), router);
        let req = Request::put("/api/v1/x").body(Body::empty()).unwrap();
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let p: ProblemBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            p.detail,
            "method PUT is not allowed on this path; allowed: GET, HEAD"
        );
        assert_eq!(p.instance, "/api/v1/x");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_problem() {
        let req = Request::post("/api/v1/upload")
            .body(Body::from("0123456789abcdef"))
            .unwrap();
        let (response, body) = call(req).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let p = problem(&response, &body);
        assert!(p.r#type.ends_with("#errors-payload_too_large"));
        assert_eq!(p.status, 413);
    }

    #[tokio::test]
    async fn a_plain_text_client_error_keeps_its_message_as_detail() {
        let (response, body) = call(get_req("/api/v1/plain")).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let p = problem(&response, &body);
        assert!(p.r#type.ends_with("#errors-conflict"));
        assert_eq!(p.detail, "already exists");
        assert!(
            response.headers().get(header::CONTENT_LENGTH).is_none()
                || response.headers()[header::CONTENT_LENGTH] == body.len().to_string().as_str()
        );
    }

    #[tokio::test]
    async fn a_server_error_never_leaks_its_body_or_cause() {
        let (response, body) = call(get_req("/api/v1/crash")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let p = problem(&response, &body);
        assert!(!body.contains("secret"));
        assert!(p.detail.contains("request_id"));

        let (response, body) = call(get_req("/api/v1/boom")).await;
        let p = problem(&response, &body);
        assert!(!body.contains("fire"));
        assert_eq!(p.request_id, request_id(&response));
    }

    #[tokio::test]
    async fn a_success_is_left_alone_apart_from_the_id_header() {
        let (response, body) = call(get_req("/api/v1/devices")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body, "ok");
        assert!(response.headers().contains_key(&X_REQUEST_ID));
        assert!(response.extensions().get::<Problem>().is_none());
    }

    #[tokio::test]
    async fn the_request_id_extractor_without_the_middleware_is_internal() {
        let app = Router::new().route("/", get(|id: RequestId| async move { id.0 }));
        let response = app.oneshot(get_req("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn request_id_validation_follows_the_documented_alphabet() {
        assert!(is_valid_request_id("a"));
        assert!(is_valid_request_id("A.b_c:d-9"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("a/b"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
    }

    #[test]
    fn pending_sign_in_ids_never_reach_the_logs() {
        assert_eq!(
            super::loggable("/api/v1/machine/login/login_AbC123"),
            "/api/v1/machine/login/…"
        );
        assert_eq!(
            super::loggable("/api/v1/sso/cli-login/login_AbC123"),
            "/api/v1/sso/cli-login/…"
        );
        assert_eq!(
            super::loggable("/api/v1/devices/dev_1"),
            "/api/v1/devices/dev_1"
        );
    }
}
