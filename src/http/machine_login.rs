//! `POST /machine/login`: a device joins by its owner's sign-in instead of a pre-auth key (what
//! `quickztna up` does without `--auth-key`, like `tailscale up`).
//!
//! 1. The agent sends its name, OS, public key and a random poll secret; it gets a login id and
//!    a sign-in link (`<public-url>/sso/login?device=<login id>`), which it prints.
//! 2. A person opens the link, signs in at the organization's identity provider, and confirms
//!    the device on the page the server then shows (see [`crate::sso::web`]).
//! 3. Meanwhile the agent polls `POST /machine/login/{login_id}` with the poll secret as its
//!    bearer: `202` while waiting, then once `200` with the device and its node credential (as
//!    `POST /machine/register` answers), `403` if the person was refused, `410` once the login
//!    expired, `401` for a login the server does not know (collected, or forgotten in a
//!    restart) or a wrong secret. The link alone never yields the credential.
//!
//! Both are anonymous, charged to the client's address in a bucket of their own.

use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{client_bucket, default_limit, presented_secret_hash, wait_caught_up};
use super::extract::{Json, Object};
use super::problem::{Problem, ProblemBody};
use super::ratelimit::Class;
use crate::domain::devices::{Hostname, check_text};
use crate::domain::public_key::PublicKey;
use crate::domain::secret;
use crate::sso::pending::LOGIN_TTL;
use crate::sso::{DeviceLogin, DeviceProgress, DeviceRequest, Wants};
use crate::state::AppState;

/// How often the agent should poll.
pub const POLL_INTERVAL_SECS: u64 = 2;
/// Polls (and new logins) a minute from one address: a poll every [`POLL_INTERVAL_SECS`] with
/// room for a few agents behind one NAT.
const LOGIN_PER_MIN: u32 = 300;

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    // The CLI's sign-in (`/sso/cli-login`) shares the mechanics and the rate limit.
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(poll))
        .merge(super::cli_login::routes())
        .layer(middleware::from_fn_with_state(state, limit))
}

async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    if !wait_caught_up(&state).await {
        return Problem::unavailable("the server is still loading its read models", 1)
            .into_response();
    }
    let bucket = client_bucket(&state, &req, "machine-login");
    let address = super::auth::ClientAddress(client_bucket(&state, &req, "client"));
    req.extensions_mut().insert(address);
    let decision = state
        .limiter()
        .check(&bucket, class, LOGIN_PER_MIN.max(default_limit(class)));
    let mut resp = if decision.allowed {
        next.run(req).await
    } else {
        Problem::rate_limited(decision.retry_after).into_response()
    };
    decision.apply_headers(resp.headers_mut());
    resp
}

/// A device asking to join by its owner's sign-in.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The organization's id or name; may be left out when the server has one organization.
    #[schema(max_length = 64, example = "acme")]
    pub org: Option<String>,
    /// As in `POST /machine/register`.
    #[schema(pattern = "^[A-Za-z0-9-]{1,63}$", min_length = 1, max_length = 63)]
    pub hostname: String,
    #[schema(min_length = 1, max_length = 32, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub os: String,
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub os_version: String,
    #[schema(
        min_length = 44,
        max_length = 44,
        pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
    )]
    pub public_key: String,
    /// A random secret of the agent's (32 to 256 characters) that it polls with.
    #[schema(min_length = 32, max_length = 256)]
    pub poll_secret: String,
}

/// Where the person signs in, and how the agent waits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginStarted {
    pub login_id: String,
    /// The link to open in a browser.
    pub auth_url: String,
    /// Seconds until the login expires.
    pub expires_in_secs: u64,
    /// Seconds between polls.
    pub poll_interval_secs: u64,
}

/// Still waiting for the person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginWaiting {
    /// `waiting`: nobody signed in yet; `confirming`: someone signed in and is confirming.
    pub status: String,
    pub poll_interval_secs: u64,
}

fn login_gone() -> Problem {
    Problem::new(
        StatusCode::GONE,
        "login_expired",
        "this sign-in expired or was already used; start again",
    )
}

/// Start joining by sign-in.
///
/// Needs no credential. Answers the sign-in link to show the person who owns the device; the
/// device then polls `POST /machine/login/{login_id}` with its `poll_secret`.
#[utoipa::path(
    post, path = "/machine/login", tag = "machine",
    request_body = LoginRequest,
    responses(
        (status = 202, description = "Waiting for the owner to sign in", body = LoginStarted),
        (status = 404, description = "No such organization", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The organization has no single sign-on configured", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn start(
    State(state): State<AppState>,
    client: Option<axum::Extension<super::auth::ClientAddress>>,
    Json(Object(body)): Json<Object<LoginRequest>>,
) -> Result<Response, Problem> {
    let hostname = Hostname::normalize(&body.hostname)
        .map_err(|e| Problem::invalid_argument(format!("field 'hostname': {e}")))?;
    check_text("os", &body.os, 1, 32)?;
    check_text("os_version", &body.os_version, 0, 64)?;
    let public_key = PublicKey::parse(&body.public_key).map_err(Problem::invalid_argument)?;
    let org_id = resolve_org(&state, body.org.as_deref())?;
    let wants = Wants::Device(DeviceRequest {
        hostname: hostname.into_string(),
        os: body.os,
        os_version: body.os_version,
        public_key: public_key.into_string(),
    });
    begin(
        &state,
        &client_of(client),
        org_id,
        wants,
        &body.poll_secret,
        "device",
    )
}

/// The organization a login names (id or name), or the server's only one; it must have single
/// sign-on configured.
pub(super) fn resolve_org(state: &AppState, org: Option<&str>) -> Result<String, Problem> {
    let org_id = {
        let models = state.models().load();
        let orgs = &models.state.orgs;
        let found = match org {
            Some(o) => orgs.get(o).or_else(|| orgs.by_name(o)),
            None if orgs.by_id.len() == 1 => orgs.by_id.values().next(),
            None => {
                return Err(Problem::invalid_argument(
                    "field 'org': this server has several organizations; name one",
                ));
            }
        };
        found
            .ok_or_else(|| Problem::not_found("no such organization"))?
            .id
            .clone()
    };
    if !crate::sso::web::configured(state, &org_id) {
        return Err(Problem::unprocessable(
            "the organization has no single sign-on configured (devices join with a pre-auth \
             key: `quickztna up --auth-key KEY`)",
        ));
    }
    Ok(org_id)
}

/// The client address the rate-limit layer recorded (a fixed key if none: tests of the bare
/// router).
pub(super) fn client_of(client: Option<axum::Extension<super::auth::ClientAddress>>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |c| c.0.0)
}

/// Parks a login for `wants` and answers its link (`<public-url>/sso/login?<param>=<id>`).
pub(super) fn begin(
    state: &AppState,
    client: &str,
    org_id: String,
    wants: Wants,
    poll_secret: &str,
    param: &str,
) -> Result<Response, Problem> {
    if !(32..=256).contains(&poll_secret.len()) {
        return Err(Problem::invalid_argument(
            "field 'poll_secret': 32 to 256 characters",
        ));
    }
    // The id is in a link people see and share: as unguessable as a secret.
    let login_id = crate::mint::secret("login_").value;
    let login = DeviceLogin {
        org_id,
        wants,
        poll_hash: secret::hash(poll_secret),
        progress: DeviceProgress::Waiting,
    };
    state
        .sso()
        .devices
        .insert(client, login_id.clone(), login)
        .map_err(|_| Problem::unavailable("too many sign-ins in progress; retry shortly", 30))?;
    let auth_url = format!("{}/sso/login?{param}={login_id}", state.public_url());
    let body = LoginStarted {
        login_id,
        auth_url,
        expires_in_secs: LOGIN_TTL.as_secs(),
        poll_interval_secs: POLL_INTERVAL_SECS,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Wait for the owner's sign-in.
///
/// Authenticated with the `poll_secret` of `POST /machine/login` as the bearer. The `200`
/// answer (the device and its node credential) is given once; after it the login is unknown
/// (`401`).
#[utoipa::path(
    post, path = "/machine/login/{login_id}", tag = "machine",
    params(("login_id" = String, Path, description = "From `POST /machine/login`")),
    responses(
        (status = 200, description = "The device joined", body = super::machine::RegisterResponse),
        (status = 202, description = "Still waiting", body = LoginWaiting),
        (status = 401, description = "Unknown sign-in, or not its poll secret", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The person who signed in was refused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "The sign-in expired", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("poll" = []))
)]
async fn poll(
    State(state): State<AppState>,
    Path(login_id): Path<String>,
    presented: PollSecret,
) -> Result<Response, Problem> {
    collect(&state, &login_id, &presented)
}

/// What a poll answers: still waiting (`202`), the result once (`200`), refused (`403`),
/// expired (`410`), or `401` for a login the server does not know or a wrong secret.
pub(super) fn collect(
    state: &AppState,
    login_id: &str,
    presented: &PollSecret,
) -> Result<Response, Problem> {
    let login_id = login_id.to_owned();
    let logins = &state.sso().devices;
    // An unknown login and a wrong secret answer alike: the id alone tells nothing. A login
    // the server forgot (expired and dropped, or a restart) answers 401 too; the agent starts
    // again on either.
    let unknown = || Problem::unauthorized("unknown sign-in, or not its poll secret");
    let (progress, expired) = logins
        .peek(&login_id, |l, expired| {
            secret::equal(&l.poll_hash, &presented.0).then(|| (l.progress.clone(), expired))
        })
        .flatten()
        .ok_or_else(unknown)?;
    // A device that joined just before the link expired still gets its credential: it is
    // registered, and without the credential it could never authenticate.
    if expired && !matches!(progress, DeviceProgress::Joined(_)) {
        logins.remove(&login_id);
        return Err(login_gone());
    }
    let waiting = |status: &str| {
        let body = LoginWaiting {
            status: status.into(),
            poll_interval_secs: POLL_INTERVAL_SECS,
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    match progress {
        DeviceProgress::Waiting => Ok(waiting("waiting")),
        DeviceProgress::Confirming { .. } | DeviceProgress::Registering => {
            Ok(waiting("confirming"))
        }
        DeviceProgress::Joined(answer) => {
            logins.take(&login_id);
            let mut resp = Json(answer).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        DeviceProgress::Refused(why) => {
            logins.take(&login_id);
            Err(Problem::forbidden(why))
        }
    }
}

/// The SHA-256 of the bearer a poll presented.
#[derive(Debug, Clone, Copy)]
pub(super) struct PollSecret([u8; 32]);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PollSecret {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        presented_secret_hash(&parts.headers, "poll secret", "poll_secret").map(PollSecret)
    }
}
