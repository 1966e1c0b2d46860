//! The one error type at the HTTP edge: RFC 7807 Problem Details.
//!
//! Every 4xx/5xx response the API sends is an `application/problem+json` body with `type`,
//! `title`, `status`, `detail`, `instance` and `request_id`. Handlers return [`Problem`]; its
//! [`IntoResponse`] writes the body with an empty `instance` and `request_id` and stores a clone of
//! itself in the response extensions, so that the request-context middleware
//! (`super::request_id::request_context`), which knows the path and the request id, re-renders
//! the body with both filled in.
//!
//! The `type` is a stable URL per error class, `https://quickztna.com/docs/api/#errors-<code>`;
//! the `title` is fixed per class; the `detail` says what went wrong with this request.
//! A 5xx never carries its cause: [`Problem::internal`] logs it and tells the client to quote the
//! request id instead.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::text::is_invisible;

/// Prefix of every problem `type`; the error code is appended.
pub const TYPE_PREFIX: &str = "https://quickztna.com/docs/api/#errors-";

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An API error, ready to become a response.
///
/// Status per constructor (the documented contract of each error class):
/// `invalid_argument` 400, `unauthenticated` 401, `permission_denied` 403, `plan_required` 403,
/// `not_found` 404, `method_not_allowed` 405, `conflict` 409, `cursor_expired` 410,
/// `precondition_failed` 412,
/// `payload_too_large` 413, `unsupported_media_type` 415, `unprocessable_entity` 422,
/// `rate_limited` 429, `internal` 500, `unavailable` 503.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// The stable error class; becomes the `type` URL's fragment.
    pub code: &'static str,
    /// Human-readable summary of the class (the same for every problem with this code).
    pub title: String,
    /// What went wrong with this particular request. Never a 5xx cause.
    pub detail: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`, rate-limit headers).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Every problem found in a document the request carried (a policy that does not lint).
    pub problems: Option<Box<serde_json::Value>>,
}

/// The JSON body of an error response (RFC 7807 plus `request_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "https://quickztna.com/docs/api/#errors-invalid_argument",
    "title": "Invalid argument",
    "status": 400,
    "detail": "Field 'hostname' must match pattern [a-z0-9-]+",
    "instance": "/api/v1/devices",
    "request_id": "01HXY7W3ZQ5N8V0K2C4M6P8R9T"
}))]
pub struct ProblemBody {
    /// Stable URL identifying the error class.
    #[serde(rename = "type")]
    pub r#type: String,
    /// Human-readable summary of the error class.
    pub title: String,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// Specifics for this request.
    pub detail: String,
    /// The request path (without the query string).
    pub instance: String,
    /// The correlation id to quote in support tickets (also in `X-Request-ID`).
    pub request_id: String,
    /// When the request carried a document with problems (a policy that does not lint):
    /// every one of them, each with a JSON pointer, line, column, rule and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub problems: Option<serde_json::Value>,
}

/// Longest `detail`, in characters. Details quote the request (a field, a filter, a serde error
/// around the offending input); a body of up to the body limit must not come back whole.
pub const DETAIL_MAX_CHARS: usize = 512;

/// `detail` without control or invisible characters (escaped, so a quoted input cannot rewrite
/// a terminal line or hide text in a log viewer), cut to [`DETAIL_MAX_CHARS`].
fn bounded(detail: String) -> String {
    let clean = detail.chars().all(|c| !c.is_control() && !is_invisible(c));
    if clean && detail.len() <= DETAIL_MAX_CHARS {
        return detail;
    }
    let mut out = String::with_capacity(DETAIL_MAX_CHARS + 3);
    for (n, c) in detail.chars().enumerate() {
        if n >= DETAIL_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

impl Problem {
    /// A problem of class `code`; the title comes from the class table.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: title_for(code, status).to_owned(),
            detail: bounded(detail.into()),
            headers: Vec::new(),
            problems: None,
        }
    }

    /// 400: the request is malformed or a field value is invalid.
    pub fn invalid_argument(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", detail)
    }

    /// 401: missing, invalid or expired credentials. Carries the `WWW-Authenticate` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="quickztna", error="invalid_token""#),
        )
    }

    /// 403: authenticated, but the token lacks the scope for this call.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", detail)
    }

    /// 410: a cursor or event id whose following events are past the organization's retention.
    pub fn cursor_expired(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "cursor_expired", detail)
    }

    /// 403: the organization's plan does not include this feature.
    pub fn plan_required(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "plan_required", detail)
    }

    /// 404: the resource does not exist (or belongs to another organization).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 405: the path exists but not with this method. Add an `Allow` header with `with_header`.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail)
    }

    /// 409: the operation conflicts with the resource's current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 412: an `If-Match` precondition did not hold.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            detail,
        )
    }

    /// 413: the request body exceeds the server's limit.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    /// 415: the body is not in a media type this endpoint accepts.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    /// 422: syntactically valid, semantically rejected (e.g. a policy that does not lint).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            detail,
        )
    }

    /// 429: the organization's rate limit is exhausted; `Retry-After` says for how long.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let unit = if retry_after_secs == 1 {
            "second"
        } else {
            "seconds"
        };
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "rate limit exceeded for this organization; retry after {retry_after_secs} {unit}"
            ),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// 500: a server-side bug. The cause is logged here (inside the request's span, so the log
    /// line carries the request id) and never sent to the client.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server hit an internal error; please file a ticket quoting the request_id",
        )
    }

    /// 503: transient unavailability (e.g. the write queue is full); retry with backoff.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// Adds (or replaces) a response header.
    /// Adds the problems found in the request's document (see [`ProblemBody::problems`]).
    pub fn with_problems(mut self, problems: serde_json::Value) -> Self {
        self.problems = Some(Box::new(problems));
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// The problem for an error status produced outside our handlers (axum's own 404/405/415,
    /// a body-limit layer's 413, a timeout's 408, …), with a detail describing the status.
    /// 5xx statuses get the generic internal detail and are logged.
    pub fn for_status(status: StatusCode) -> Self {
        let code = code_for_status(status);
        let detail = match status {
            StatusCode::BAD_REQUEST => "the request is malformed",
            StatusCode::UNAUTHORIZED => "authentication is required",
            StatusCode::FORBIDDEN => "the credentials do not allow this request",
            StatusCode::NOT_FOUND => "no route for this path",
            StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path",
            StatusCode::REQUEST_TIMEOUT => "the request took too long to arrive",
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "the request body's media type is not supported",
            StatusCode::UNPROCESSABLE_ENTITY => "the request could not be processed",
            StatusCode::TOO_MANY_REQUESTS => "too many requests",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
                "the service is temporarily unavailable; retry with exponential backoff"
            }
            StatusCode::GATEWAY_TIMEOUT => "the server took too long to answer; retry later",
            s if s.is_server_error() => {
                tracing::error!(status = s.as_u16(), "internal error without a cause");
                "the server hit an internal error; please file a ticket quoting the request_id"
            }
            s => s.canonical_reason().unwrap_or("the request failed"),
        };
        Self::new(status, code, detail)
    }

    /// The `type` URL of this problem.
    pub fn type_url(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.code)
    }

    /// The body for a request to `instance` with id `request_id`.
    pub fn body(&self, instance: &str, request_id: &str) -> ProblemBody {
        ProblemBody {
            r#type: self.type_url(),
            title: self.title.clone(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance: instance.to_owned(),
            request_id: request_id.to_owned(),
            problems: self.problems.as_deref().cloned(),
        }
    }

    /// The serialized body for a request to `instance` with id `request_id`.
    pub fn body_bytes(&self, instance: &str, request_id: &str) -> Vec<u8> {
        // A struct of strings and a number always serializes.
        serde_json::to_vec(&self.body(instance, request_id)).unwrap_or_default()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body_bytes("", "");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.extensions_mut().insert(self);
        response
    }
}

/// The fixed title of an error class; unknown codes fall back to the status's reason phrase.
fn title_for(code: &str, status: StatusCode) -> &'static str {
    match code {
        "invalid_argument" => "Invalid argument",
        "unauthenticated" => "Unauthenticated",
        "reauthentication_required" => "Re-authentication required",
        "permission_denied" => "Permission denied",
        "plan_required" => "Plan upgrade required",
        "not_found" => "Not found",
        "method_not_allowed" => "Method not allowed",
        "request_timeout" => "Request timeout",
        "conflict" => "Conflict",
        "cursor_expired" => "Cursor expired",
        "login_expired" => "Login expired",
        "precondition_failed" => "Precondition failed",
        "payload_too_large" => "Payload too large",
        "unsupported_media_type" => "Unsupported media type",
        "unprocessable_entity" => "Unprocessable entity",
        "rate_limited" => "Rate limit exceeded",
        "internal" => "Internal error",
        "unavailable" => "Service unavailable",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// The error class for a bare status (used when converting non-problem error responses).
fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_argument",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "permission_denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED => "precondition_failed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
            "unavailable"
        }
        s if s.is_server_error() => "internal",
        _ => "invalid_argument",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn render(problem: Problem) -> (Response, ProblemBody) {
        let response = problem.into_response();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        let body: ProblemBody = serde_json::from_slice(&bytes).unwrap();
        (Response::from_parts(parts, axum::body::Body::empty()), body)
    }

    #[tokio::test]
    async fn a_problem_renders_as_problem_json_with_its_class() {
        let (response, body) = render(Problem::invalid_argument("bad hostname")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            body.r#type,
            "https://quickztna.com/docs/api/#errors-invalid_argument"
        );
        assert_eq!(body.title, "Invalid argument");
        assert_eq!(body.status, 400);
        assert_eq!(body.detail, "bad hostname");
        assert_eq!(body.instance, "");
        assert_eq!(body.request_id, "");
        let stored = response.extensions().get::<Problem>().unwrap();
        assert_eq!(stored.code, "invalid_argument");
    }

    #[test]
    fn the_body_serializes_type_under_its_json_name() {
        let body = Problem::not_found("no device").body("/api/v1/devices/x", "r1");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json["type"],
            "https://quickztna.com/docs/api/#errors-not_found"
        );
        assert_eq!(json["instance"], "/api/v1/devices/x");
        assert_eq!(json["request_id"], "r1");
        assert_eq!(json.as_object().unwrap().len(), 6);
    }

    #[test]
    fn every_constructor_has_its_documented_status_code_and_title() {
        let cases = [
            (Problem::invalid_argument("d"), 400, "invalid_argument"),
            (Problem::unauthorized("d"), 401, "unauthenticated"),
            (Problem::forbidden("d"), 403, "permission_denied"),
            (Problem::plan_required("d"), 403, "plan_required"),
            (Problem::not_found("d"), 404, "not_found"),
            (Problem::method_not_allowed("d"), 405, "method_not_allowed"),
            (Problem::conflict("d"), 409, "conflict"),
            (
                Problem::precondition_failed("d"),
                412,
                "precondition_failed",
            ),
            (Problem::payload_too_large("d"), 413, "payload_too_large"),
            (
                Problem::unsupported_media_type("d"),
                415,
                "unsupported_media_type",
            ),
            (Problem::unprocessable("d"), 422, "unprocessable_entity"),
            (Problem::rate_limited(3), 429, "rate_limited"),
            (Problem::internal("boom"), 500, "internal"),
            (Problem::unavailable("d", 2), 503, "unavailable"),
        ];
        for (problem, status, code) in cases {
            assert_eq!(problem.status.as_u16(), status, "{code}");
            assert_eq!(problem.code, code);
            assert_ne!(problem.title, "Error", "{code} has a title");
            assert!(problem.type_url().ends_with(&format!("#errors-{code}")));
        }
    }

    #[test]
    fn unauthorized_carries_the_bearer_challenge() {
        let p = Problem::unauthorized("token expired");
        let (name, value) = &p.headers[0];
        assert_eq!(name, header::WWW_AUTHENTICATE);
        assert_eq!(value, r#"Bearer realm="quickztna", error="invalid_token""#);
    }

    #[tokio::test]
    async fn retry_after_is_set_for_rate_limited_and_unavailable() {
        let (response, body) = render(Problem::rate_limited(7)).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert!(body.detail.contains("7 seconds"), "{}", body.detail);
        let (response, _) = render(Problem::unavailable("queue full", 1)).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn an_internal_error_never_exposes_its_cause() {
        let p = Problem::internal("sled: corrupted page at /var/lib/secret");
        assert!(!p.detail.contains("sled"));
        assert!(p.detail.contains("request_id"));
        assert!(!p.to_string().contains("secret"));
    }

    #[test]
    fn with_header_replaces_an_existing_header_of_the_same_name() {
        let p = Problem::rate_limited(3)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("9"));
        assert_eq!(p.headers.len(), 1);
        assert_eq!(p.headers[0].1, "9");
    }

    #[test]
    fn bare_statuses_map_to_their_classes() {
        assert_eq!(
            Problem::for_status(StatusCode::METHOD_NOT_ALLOWED).code,
            "method_not_allowed"
        );
        assert_eq!(
            Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE).code,
            "payload_too_large"
        );
        assert_eq!(
            Problem::for_status(StatusCode::NOT_FOUND).detail,
            "no route for this path"
        );
        assert_eq!(
            Problem::for_status(StatusCode::REQUEST_TIMEOUT).title,
            "Request timeout"
        );
        let teapot = Problem::for_status(StatusCode::IM_A_TEAPOT);
        assert_eq!(teapot.status, StatusCode::IM_A_TEAPOT);
        let internal = Problem::for_status(StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(internal.code, "internal");
        assert!(internal.detail.contains("request_id"));
    }
}
