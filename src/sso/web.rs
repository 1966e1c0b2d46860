//! The browser's side of single sign-on, outside `/api/v1` (people, not programs, use it):
//!
//! - `GET /sso/login?org=<id or name>[&invitation=<code>]`, `?device=<login id>` or
//!   `?cli=<login id>`: starts a
//!   sign-in (PKCE S256, `state`, `nonce`, kept server-side for ten minutes) and answers `303`
//!   to the organization's identity provider.
//! - `GET /sso/callback?code&state`: the one redirect URI (`<public-url>/sso/callback`). It
//!   uses the `state` once, redeems the code, verifies the ID token, and records the sign-in
//!   (see [`crate::domain::directory::sign_in`]) in one append through the directory executor.
//! - `POST /sso/device`: the person who signed in for a device (or the CLI) confirms it; it then
//!   joins as theirs (or the CLI gets their session), collected by the waiting client (see
//!   [`crate::http::machine_login`], [`crate::http::cli_login`]).
//!
//! Refusals are problems (RFC 7807) like everywhere else; successes are small HTML pages.

use axum::extract::{Form, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use events::{Actor, ActorKind};
use http::{HeaderValue, header};
use serde::Deserialize;

use super::oidc::{Identity, RelyingParty};
use super::{BrowserLogin, DeviceProgress, Purpose};
use crate::domain::directory::sign_in::{SignIn, sign_in};
use crate::domain::secret;
use crate::http::problem::Problem;
use crate::http::request_id::RequestId;
use crate::mint;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/login", get(login))
        .route("/sso/callback", get(callback))
        .route("/sso/device", post(confirm_device))
}

/// The redirect URI to register at the identity provider.
pub fn redirect_uri(state: &AppState) -> String {
    format!("{}/sso/callback", state.public_url())
}

/// Whether the organization has an OpenID provider configured.
pub fn configured(state: &AppState, org_id: &str) -> bool {
    state.models().load().state.org(org_id).oidc().is_some()
}

/// The organization's relying-party settings: the configuration from the log, the secret
/// from its file.
pub fn relying_party(state: &AppState, org_id: &str) -> Result<RelyingParty, Problem> {
    let config = state
        .models()
        .load()
        .state
        .org(org_id)
        .oidc()
        .cloned()
        .ok_or_else(|| {
            Problem::unprocessable("the organization has no single sign-on configured")
        })?;
    let secret = super::secrets::read_client_secret(&state.settings().data_dir, org_id)
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::internal("the OIDC client secret file is missing"))?;
    Ok(RelyingParty {
        issuer: config.issuer,
        client_id: config.client_id,
        client_secret: secret,
        redirect_uri: redirect_uri(state),
    })
}

fn provider_down(e: impl std::fmt::Display) -> Problem {
    tracing::warn!(error = %e, "the identity provider cannot be used");
    Problem::unavailable(format!("the identity provider cannot be used: {e}"), 30)
}

fn login_gone() -> Problem {
    Problem::new(
        http::StatusCode::GONE,
        "login_expired",
        "this sign-in expired or was already used; start again",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginQuery {
    org: Option<String>,
    invitation: Option<String>,
    device: Option<String>,
    /// A CLI's sign-in (`quickztna login --sso`); the same waiting logins as devices.
    cli: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    client: Option<axum::Extension<crate::http::auth::ClientAddress>>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, Problem> {
    let (org_id, purpose) = match (q.device.as_ref().or(q.cli.as_ref()), &q.org) {
        (Some(login_id), _) => {
            let org_id = state
                .sso()
                .devices
                .with(login_id, |l| {
                    matches!(l.progress, DeviceProgress::Waiting).then(|| l.org_id.clone())
                })
                .flatten()
                .ok_or_else(login_gone)?;
            let purpose = Purpose::Device {
                login_id: login_id.clone(),
            };
            (org_id, purpose)
        }
        (None, Some(org)) => {
            let models = state.models().load();
            let orgs = &models.state.orgs;
            let org = orgs
                .get(org)
                .or_else(|| orgs.by_name(org))
                .ok_or_else(|| Problem::not_found("no such organization"))?;
            let invitation = q
                .invitation
                .clone()
                .filter(|c| !c.is_empty() && c.len() <= 256);
            (org.id.clone(), Purpose::SignIn { invitation })
        }
        (None, None) => {
            return Err(Problem::invalid_argument(
                "name the organization (?org=…) or the device sign-in (?device=…)",
            ));
        }
    };
    let party = relying_party(&state, &org_id)?;
    let provider = state
        .sso()
        .provider(&org_id, party)
        .await
        .map_err(provider_down)?;
    let auth = provider.authorize();
    let pending = BrowserLogin {
        org_id,
        pkce_verifier: auth.pkce_verifier,
        nonce: auth.nonce,
        purpose,
    };
    state
        .sso()
        .logins
        .insert(
            &client.map_or_else(|| "unknown".to_owned(), |c| c.0.0),
            auth.state,
            pending,
        )
        .map_err(|_| Problem::unavailable("too many sign-ins in progress; retry shortly", 30))?;
    let mut resp = Redirect::to(&auth.url).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    // `iss` (RFC 9207) and anything else a provider adds are ignored: the token's own `iss`
    // is checked exactly.
}

async fn callback(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Problem> {
    let pending = q
        .state
        .as_deref()
        .and_then(|s| state.sso().logins.take(s))
        .ok_or_else(|| {
            Problem::invalid_argument(
                "unknown, expired or already used sign-in state; start the sign-in again",
            )
        })?;
    let refuse_device = |why: &str| {
        if let Purpose::Device { login_id } = &pending.purpose {
            // Only a login nobody has signed in for yet: a second browser at the same link must
            // not undo one that is being confirmed or is done.
            state.sso().devices.with(login_id, |l| {
                if matches!(l.progress, DeviceProgress::Waiting) {
                    l.progress = DeviceProgress::Refused(why.to_owned());
                }
            });
        }
    };
    if let Some(error) = &q.error {
        let why = format!(
            "the identity provider did not sign you in ({})",
            crate::domain::text::echo(error)
        );
        refuse_device(&why);
        return Err(Problem::forbidden(why));
    }
    let code = q
        .code
        .as_deref()
        .ok_or_else(|| Problem::invalid_argument("the callback has no code"))?;
    let party = relying_party(&state, &pending.org_id)?;
    let provider = state
        .sso()
        .provider(&pending.org_id, party)
        .await
        .map_err(provider_down)?;
    let identity = match provider
        .finish(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::info!(org_id = %pending.org_id, error = %e, "sign-in refused");
            let why = format!("the sign-in could not be verified: {e}");
            refuse_device(&why);
            return Err(Problem::forbidden(why));
        }
    };
    let invitation = match &pending.purpose {
        Purpose::SignIn { invitation } => invitation.as_deref().map(secret::hash),
        Purpose::Device { .. } => None,
    };
    let user_id =
        match record_sign_in(&state, &pending.org_id, &request_id, identity, invitation).await {
            Ok(user_id) => user_id,
            Err(problem) => {
                refuse_device(&problem.detail);
                return Err(problem);
            }
        };
    match &pending.purpose {
        Purpose::SignIn { .. } => Ok(page(
            "Signed in",
            "<p>You are signed in. You can close this window.</p>".into(),
        )),
        Purpose::Device { login_id } => {
            super::device::confirmation_page(&state, login_id, &user_id)
        }
    }
}

/// Records the sign-in of `identity` and answers the user it resolved to.
async fn record_sign_in(
    state: &AppState,
    org_id: &str,
    request_id: &RequestId,
    identity: Identity,
    invitation: Option<[u8; 32]>,
) -> Result<String, Problem> {
    let groups = identity.groups.clone();
    let new_group_ids = groups.iter().flatten().map(|_| mint::id("grp")).collect();
    let cmd = SignIn {
        issuer: identity.issuer,
        subject: identity.subject,
        email: identity.email,
        email_verified: identity.email_verified,
        name: identity.name.or(identity.preferred_username),
        groups,
        invitation,
        new_user_id: mint::id("usr"),
        new_group_ids,
        now: events::now_micros(),
    };
    // The actor is the person: resolved once on the current read model for the record, and
    // decided again by the executor.
    let (who, known_email) = {
        let models = state.models().load();
        let org = models.state.org(org_id);
        let who = sign_in(org, &cmd).map_err(Problem::from)?;
        let email = org.user(&who.user_id).map(|u| u.profile.email.clone());
        (who, email)
    };
    // Named by the directory's address (or, for someone joining now, the verified one they
    // join with), never by an unverified claim a person can set to anything.
    let description = known_email
        .filter(|e| !e.is_empty())
        .or_else(|| cmd.email.clone().filter(|_| cmd.email_verified))
        .unwrap_or_else(|| cmd.subject.clone());
    let actor = Actor {
        kind: ActorKind::User,
        id: who.user_id.clone(),
        description,
    };
    let mut resolved = None;
    crate::directory::execute(
        state,
        crate::execute::Command::new(org_id.to_owned(), actor, request_id.0.clone()),
        |org| {
            let signed = sign_in(org, &cmd)?;
            resolved = Some(signed.user_id);
            Ok(signed.decision)
        },
    )
    .await?;
    resolved.ok_or_else(|| Problem::internal("the sign-in decided nobody"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmForm {
    login: String,
    confirm: String,
}

async fn confirm_device(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, Problem> {
    super::device::confirm(&state, &request_id, &form.login, &form.confirm).await
}

/// A minimal page (the server has no web UI of its own).
pub(super) fn page(title: &str, body: String) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · QuickZTNA</title>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut resp = Html(html).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing of ours needs framing; a confirmation page must not be clickjacked.
    resp.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    resp
}

/// Escapes text for HTML.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
