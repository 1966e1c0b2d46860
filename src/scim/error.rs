//! The SCIM error response (RFC 7644 §3.12).
//!
//! Identity providers parse SCIM errors, not RFC 7807 problems: Entra and Okta show `detail` in
//! their provisioning logs and branch on `status` and `scimType`. Handlers under `/scim/v2` return
//! [`ScimError`]; errors made elsewhere for a SCIM path (authentication, rate limits, axum's own
//! 404/405/413) arrive as [`Problem`]s, and the request frame re-renders them with
//! [`body_for_problem`] so that a SCIM client never sees a problem body. The request id stays in
//! the `X-Request-ID` header: the SCIM error schema has no field for it.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::http::problem::Problem;

/// The media type of every SCIM body.
pub const SCIM_JSON: &str = "application/scim+json";

/// The schema URN of an error body.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Where SCIM lives; requests under it get SCIM errors.
pub const SCIM_PREFIX: &str = "/scim/v2";

/// Whether `path` (the request's original path) is a SCIM endpoint.
pub fn is_scim_path(path: &str) -> bool {
    path.strip_prefix(SCIM_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `scimType` values RFC 7644 §3.12 defines that we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
        }
    }
}

/// A SCIM error, ready to become a response.
#[derive(Debug, Clone)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<ScimType>,
    /// What went wrong with this request; never a 5xx cause.
    pub detail: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`, `Location`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        // The problem type bounds and cleans details that quote the request; reuse it.
        let detail = Problem::new(status, "scim", detail.into()).detail;
        ScimError {
            status,
            scim_type,
            detail,
            headers: Vec::new(),
        }
    }

    /// 400 with a `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// 400 `invalidValue`: a value of the wrong type, or one we refuse.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 `invalidSyntax`: the body is not the JSON the operation takes.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 404: no such resource in the caller's organization, or no such endpoint.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 409 `uniqueness`: another resource already has this `userName`, `externalId`, ….
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some(ScimType::Uniqueness), detail)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        body(self.status, self.scim_type, &self.detail)
    }
}

fn body(status: StatusCode, scim_type: Option<ScimType>, detail: &str) -> serde_json::Value {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = t.as_str().into();
    }
    body
}

impl From<Problem> for ScimError {
    fn from(problem: Problem) -> Self {
        ScimError {
            status: problem.status,
            scim_type: scim_type_of(&problem),
            detail: problem.detail,
            headers: problem.headers,
        }
    }
}

fn scim_type_of(problem: &Problem) -> Option<ScimType> {
    match problem.status {
        StatusCode::BAD_REQUEST => Some(ScimType::InvalidSyntax),
        _ => None,
    }
}

/// The SCIM error body for a problem made outside the SCIM handlers, for a SCIM path.
pub fn body_for_problem(problem: &Problem) -> Vec<u8> {
    let body = body(problem.status, scim_type_of(problem), &problem.detail);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Whether a response already carries a SCIM body (the frame leaves those alone).
pub fn is_scim_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SCIM_JSON))
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_error_schema_and_a_string_status() {
        let e = ScimError::uniqueness("userName 'a' is taken");
        assert_eq!(
            e.body(),
            json!({
                "schemas": [ERROR_SCHEMA],
                "status": "409",
                "scimType": "uniqueness",
                "detail": "userName 'a' is taken",
            })
        );
        let from: ScimError = Problem::rate_limited(3).into();
        assert_eq!(from.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(from.headers.iter().any(|(n, _)| n == header::RETRY_AFTER));
        assert_eq!(from.body()["status"], "429");
    }

    #[test]
    fn scim_paths() {
        assert!(is_scim_path("/scim/v2"));
        assert!(is_scim_path("/scim/v2/Users/x"));
        assert!(!is_scim_path("/scim/v20"));
        assert!(!is_scim_path("/api/v1/scim/v2"));
    }
}
