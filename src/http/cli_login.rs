//! `POST /sso/cli-login`: the CLI gets a person's sign-in session (`quickztna login --sso`),
//! the way a device joins by sign-in ([`super::machine_login`]): a link to open, a person who
//! signs in and confirms, a poll with a secret only the CLI knows. The answer is a session
//! (`crate::sessions`): an API token that acts for the person, with what their role allows.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Json, Object, Path};
use super::machine_login::{LoginStarted, LoginWaiting, PollSecret, begin, collect, resolve_org};
use super::problem::{Problem, ProblemBody};
use crate::sso::Wants;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_cli))
        .routes(routes!(poll_cli))
}

/// The CLI asking for a person's session.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CliLoginRequest {
    /// The organization's id or name; may be left out when the server has one organization.
    #[schema(max_length = 64, example = "acme")]
    pub org: Option<String>,
    /// A random secret of the CLI's (32 to 256 characters) that it polls with.
    #[schema(min_length = 32, max_length = 256)]
    pub poll_secret: String,
}

/// A person's sign-in session, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CliSession {
    /// The API token (`qz_…`) acting for the person.
    pub token: String,
    pub token_id: String,
    pub user_id: String,
    pub email: String,
    /// `admin`, `member` or `auditor`: what the session may do.
    pub role: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// Start a sign-in for the CLI.
///
/// Needs no credential. Answers the link the person opens; the CLI then polls
/// `POST /sso/cli-login/{login_id}` with its `poll_secret`.
#[utoipa::path(
    post, path = "/sso/cli-login", tag = "sso",
    request_body = CliLoginRequest,
    responses(
        (status = 202, description = "Waiting for the person to sign in", body = LoginStarted),
        (status = 404, description = "No such organization", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The organization has no single sign-on configured", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn start_cli(
    State(state): State<AppState>,
    client: Option<axum::Extension<super::auth::ClientAddress>>,
    Json(Object(body)): Json<Object<CliLoginRequest>>,
) -> Result<Response, Problem> {
    let org_id = resolve_org(&state, body.org.as_deref())?;
    let client = super::machine_login::client_of(client);
    begin(
        &state,
        &client,
        org_id,
        Wants::Session,
        &body.poll_secret,
        "cli",
    )
}

/// Wait for the person's sign-in.
///
/// Authenticated with the `poll_secret` of `POST /sso/cli-login` as the bearer. The `200`
/// answer (the session) is given once.
#[utoipa::path(
    post, path = "/sso/cli-login/{login_id}", tag = "sso",
    params(("login_id" = String, Path, description = "From `POST /sso/cli-login`")),
    responses(
        (status = 200, description = "Signed in", body = CliSession),
        (status = 202, description = "Still waiting", body = LoginWaiting),
        (status = 401, description = "Unknown sign-in, or not its poll secret", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The person who signed in was refused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "The sign-in expired", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("poll" = []))
)]
async fn poll_cli(
    State(state): State<AppState>,
    Path(login_id): Path<String>,
    presented: PollSecret,
) -> Result<Response, Problem> {
    collect(&state, &login_id, &presented)
}
