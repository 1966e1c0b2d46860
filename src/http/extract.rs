//! Extractors whose rejections are [`Problem`]s.
//!
//! [`Json`], [`Query`] and [`Path`] wrap axum's extractors of the same names, so a handler never
//! answers bad input with axum's plain-text rejections: a JSON syntax error, a wrong type, a
//! missing or unknown field, an unparsable query or path parameter all become
//! `400 invalid_argument` with serde's precise message (field path, line and column); a missing
//! or wrong `Content-Type` becomes `415`, an over-long body `413`.

use axum::extract::rejection::{
    BytesRejection, FailedToBufferBody, JsonRejection, PathRejection, QueryRejection,
};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// A JSON request body (rejections become problems) and a JSON response body.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

/// Query-string parameters (rejections become `400 invalid_argument`).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

/// Path parameters (rejections become `400 invalid_argument` naming the parameter; a
/// route/type mismatch, which is a bug in the server, becomes `500 internal`).
///
/// A malformed id is a malformed request, so it is a 400 rather than a 404, as the API overview
/// says ("400 Bad Request — malformed request, invalid field values").
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                // axum does not name the parameter of a single-value `Path<T>`; the route does.
                let only_key = RawPathParams::from_request_parts(parts, state)
                    .await
                    .ok()
                    .and_then(|raw| {
                        let mut keys = raw.iter().map(|(key, _)| key.to_owned());
                        keys.next().filter(|_| keys.next().is_none())
                    });
                Err(path_problem(rejection, only_key))
            }
        }
    }
}

/// A request body that must be a JSON object. serde lets a struct be read from an array too
/// (`[]` is a valid `{}` when every field has a default, `["a", "b"]` fills fields in order);
/// `Json<Object<T>>` refuses anything but an object, naming what it got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(OnlyMaps(std::marker::PhantomData))
            .map(Object)
    }
}

/// For a nested optional struct field (`#[serde(default, deserialize_with = ...)]`): absent,
/// `null` or a JSON object — never an array, which serde would otherwise read field by field.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|o| o.0))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(err) => {
                Problem::internal(format!("serializing a response body: {err}")).into_response()
            }
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => {
                Problem::invalid_argument(format!("invalid request body: {}", cause(&err)))
            }
            JsonRejection::JsonSyntaxError(err) => {
                let cause = cause(&err);
                if cause.starts_with("EOF while parsing a value at line 1 column 0") {
                    Problem::invalid_argument("the request body is empty; expected a JSON document")
                } else {
                    Problem::invalid_argument(format!("request body is not valid JSON: {cause}"))
                }
            }
            JsonRejection::MissingJsonContentType(_) => Problem::unsupported_media_type(
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(err) => Problem::from(err),
            other => Problem::invalid_argument(format!("invalid request body: {other}")),
        }
    }
}

impl From<BytesRejection> for Problem {
    fn from(rejection: BytesRejection) -> Self {
        match rejection {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                Problem::payload_too_large("the request body is larger than the server accepts")
            }
            BytesRejection::FailedToBufferBody(err) => Problem::invalid_argument(format!(
                "failed to read the request body: {}",
                cause(&err)
            )),
            other => Problem::invalid_argument(format!("failed to read the request body: {other}")),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        match rejection {
            QueryRejection::FailedToDeserializeQueryString(err) => {
                Problem::invalid_argument(format!("invalid query string: {}", cause(&err)))
            }
            other => Problem::invalid_argument(format!("invalid query string: {other}")),
        }
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        path_problem(rejection, None)
    }
}

/// The problem for a path rejection; `only_key` names the route's parameter when it has one.
fn path_problem(rejection: PathRejection, only_key: Option<String>) -> Problem {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(err) => match err.into_kind() {
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => Problem::invalid_argument(format!(
                "path parameter `{key}` has an invalid value `{value}` (expected {})",
                describe_type(expected_type)
            )),
            ErrorKind::ParseErrorAtIndex {
                index,
                value,
                expected_type,
            } => Problem::invalid_argument(format!(
                "path segment {} has an invalid value `{value}` (expected {})",
                index + 1,
                describe_type(expected_type)
            )),
            ErrorKind::ParseError {
                value,
                expected_type,
            } => {
                let name = only_key.map(|k| format!(" `{k}`")).unwrap_or_default();
                Problem::invalid_argument(format!(
                    "path parameter{name} has an invalid value `{value}` (expected {})",
                    describe_type(expected_type)
                ))
            }
            ErrorKind::DeserializeError {
                key,
                value,
                message,
            } => Problem::invalid_argument(format!(
                "path parameter `{key}` has an invalid value `{value}`: {message}"
            )),
            ErrorKind::InvalidUtf8InPathParam { key } => {
                Problem::invalid_argument(format!("path parameter `{key}` is not valid UTF-8"))
            }
            ErrorKind::Message(message) => {
                Problem::invalid_argument(format!("invalid path parameter: {message}"))
            }
            // The handler's `Path<T>` does not fit its route: a server bug, not bad input.
            other => Problem::internal(format!("path extractor does not fit the route: {other}")),
        },
        other => Problem::internal(format!("path extractor failed: {other}")),
    }
}

/// The innermost message of an axum rejection, without axum's generic prefix (e.g. "Failed to
/// deserialize the JSON body into the target type: "): serde's own text, with the field path,
/// line and column when it has them.
fn cause(err: &dyn std::error::Error) -> String {
    match err.source() {
        Some(source) => source.to_string(),
        None => err.to_string(),
    }
}

/// "u64" → "a non-negative integer", for path-parameter messages; other types by their last
/// path segment ("a value of type `Ulid`").
fn describe_type(rust_type: &str) -> String {
    match rust_type {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" => "`true` or `false`".to_owned(),
        other => format!(
            "a value of type `{}`",
            other.rsplit("::").next().unwrap_or(other)
        ),
    }
}

/// Parses a secret's expiry from `expires_in` (a duration such as `90d`; `default` when neither
/// field is given) or `expires_at` (RFC 3339) into microseconds since the epoch. `check_in`
/// bounds the relative form, whose range each resource sets (the absolute form is bounded by
/// the resource's decision, which allows for clock slack).
pub fn parse_expiry(
    expires_in: &Option<String>,
    expires_at: &Option<String>,
    default: &str,
    now: i64,
    check_in: impl Fn(std::time::Duration) -> Result<(), Problem>,
) -> Result<i64, Problem> {
    match (expires_in, expires_at) {
        (Some(_), Some(_)) => Err(Problem::invalid_argument(
            "give either 'expires_in' or 'expires_at', not both",
        )),
        (None, Some(at)) => at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_microsecond())
            .map_err(|_| Problem::invalid_argument("field 'expires_at' must be an RFC 3339 time")),
        (relative, None) => {
            let d = crate::domain::duration::parse(relative.as_deref().unwrap_or(default))
                .map_err(|e| Problem::invalid_argument(format!("field 'expires_in': {e}")))?;
            check_in(d)?;
            let micros = i64::try_from(d.as_micros())
                .map_err(|_| Problem::invalid_argument("field 'expires_in' is too large"))?;
            Ok(now.saturating_add(micros))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::problem::ProblemBody;
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use http::{Request, StatusCode};
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct NewDevice {
        hostname: String,
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    struct ListParams {
        limit: Option<u32>,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/devices",
                post(|Json(d): Json<NewDevice>| async move { Json(d) }),
            )
            .route(
                "/list",
                get(|Query(p): Query<ListParams>| async move { format!("{:?}", p.limit) }),
            )
            .route(
                "/devices/{id}",
                get(|Path(id): Path<u64>| async move { id.to_string() }),
            )
            .route(
                "/bad/{a}/{b}",
                get(|Path(id): Path<u64>| async move { id.to_string() }),
            )
            .layer(DefaultBodyLimit::max(64))
    }

    async fn send(req: Request<Body>) -> (StatusCode, String, String) {
        let response = app().oneshot(req).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn post_json(body: &'static str) -> (StatusCode, ProblemBody) {
        let (status, content_type, body) = send(
            Request::post("/devices")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
        assert_eq!(content_type, "application/problem+json", "{body}");
        (status, serde_json::from_str(&body).unwrap())
    }

    async fn get_problem(uri: &str) -> (StatusCode, ProblemBody) {
        let (status, content_type, body) =
            send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(content_type, "application/problem+json", "{body}");
        (status, serde_json::from_str(&body).unwrap())
    }

    #[tokio::test]
    async fn a_valid_body_round_trips_as_application_json() {
        let (status, content_type, body) = send(
            Request::post("/devices")
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Body::from(r#"{"hostname":"a","tags":[]}"#))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body, r#"{"hostname":"a","tags":[]}"#);
    }

    #[tokio::test]
    async fn a_json_syntax_error_is_invalid_argument_with_line_and_column() {
        let (status, p) = post_json(r#"{"hostname": }"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(p.r#type.ends_with("#errors-invalid_argument"));
        assert_eq!(
            p.detail,
            "request body is not valid JSON: hostname: expected value at line 1 column 14"
        );
    }

    #[tokio::test]
    async fn an_empty_body_says_so() {
        let (status, p) = post_json("").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "the request body is empty; expected a JSON document"
        );
    }

    #[tokio::test]
    async fn a_truncated_body_is_a_syntax_error() {
        let (status, p) = post_json(r#"{"hostname": "a""#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            p.detail.contains("EOF while parsing an object"),
            "{}",
            p.detail
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_invalid_argument() {
        let (status, content_type, body) = send(
            Request::post("/devices")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(&b"{\"hostname\":\"\xff\",\"tags\":[]}"[..]))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, "application/problem+json");
        let p: ProblemBody = serde_json::from_str(&body).unwrap();
        assert!(p.detail.contains("line 1 column"), "{}", p.detail);
    }

    #[tokio::test]
    async fn a_wrong_type_names_the_field() {
        let (status, p) = post_json(r#"{"hostname": 5, "tags": []}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "invalid request body: hostname: invalid type: integer `5`, expected a string at line 1 column 14"
        );
        let (_, p) = post_json(r#"{"hostname": "a", "tags": [1]}"#).await;
        assert!(
            p.detail
                .starts_with("invalid request body: tags[0]: invalid type")
        );
    }

    #[tokio::test]
    async fn a_missing_field_is_named() {
        let (status, p) = post_json(r#"{"hostname": "a"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "invalid request body: missing field `tags` at line 1 column 17"
        );
    }

    #[tokio::test]
    async fn an_unknown_field_lists_the_expected_ones() {
        let (status, p) = post_json(r#"{"hostname":"a","tags":[],"foo":1}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            p.detail
                .contains("unknown field `foo`, expected `hostname` or `tags`"),
            "{}",
            p.detail
        );
    }

    #[tokio::test]
    async fn a_missing_or_wrong_content_type_is_415() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut req = Request::post("/devices");
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let (status, ct, body) = send(
                req.body(Body::from(r#"{"hostname":"a","tags":[]}"#))
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(ct, "application/problem+json");
            assert!(body.contains("unsupported_media_type"));
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let big = format!(r#"{{"hostname":"{}","tags":[]}}"#, "a".repeat(100));
        let (status, ct, body) = send(
            Request::post("/devices")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ct, "application/problem+json");
        assert!(body.contains("payload_too_large"));
    }

    #[tokio::test]
    async fn a_bad_query_parameter_is_named() {
        let (status, p) = get_problem("/list?limit=ten").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "invalid query string: limit: invalid digit found in string"
        );
    }

    #[tokio::test]
    async fn a_bad_path_parameter_is_invalid_argument() {
        let (status, p) = get_problem("/devices/abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "path parameter `id` has an invalid value `abc` (expected a non-negative integer)"
        );
    }

    #[tokio::test]
    async fn a_path_extractor_that_does_not_fit_its_route_is_internal() {
        let (status, p) = get_problem("/bad/1/2").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.detail.contains("Wrong number"));
    }
}
