//! `POST /users`: invite a person by email, or let everyone of an email domain join by signing
//! in (an SSO-domain rule).
//!
//! An invitation is a pending user and a one-time code. With an SMTP relay configured the link
//! is emailed and not returned; without one (or when the relay fails) the response carries the
//! link for the inviter to pass on. The link opens the organization's single sign-on; the
//! first sign-in with it makes the person active.

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use events::Event;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Principal;
use super::commit::idempotency;
use super::extract::{self, Json, Object};
use super::problem::Problem;
use super::request_id::RequestId;
use super::users::{UserView, view};
use crate::domain::directory::{self, Role};
use crate::domain::scope::{Group, Need};
use crate::mail::Invitation;
use crate::mint;
use crate::state::AppState;

/// Invitations last this long unless the request says otherwise.
const DEFAULT_LIFETIME: &str = "7d";
/// The longest an invitation may wait for its first sign-in.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Invite a person (`email`), or create an SSO-domain rule (`domain`): exactly one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The person to invite.
    #[serde(default)]
    #[schema(example = "alice@example.com", max_length = 254)]
    pub email: Option<String>,
    /// An email domain whose people join automatically when they sign in with single sign-on
    /// (their email must be verified by the identity provider).
    #[serde(default)]
    #[schema(example = "example.com", max_length = 253)]
    pub domain: Option<String>,
    /// `admin`, `member` (default) or `auditor`.
    #[serde(default)]
    #[schema(example = "member")]
    pub role: Option<String>,
    /// How long an invitation stays valid: `12h`, `7d`… (default 7 days, at most 30 days).
    #[serde(default)]
    #[schema(example = "7d", pattern = "^[0-9]{1,12}[smhdw]?$")]
    pub expires_in: Option<String>,
}

/// How an invitation reaches the person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitationView {
    /// RFC 3339.
    pub expires_at: String,
    /// True when the server emailed the link (then `url` is null: only the person has it).
    pub emailed: bool,
    /// The sign-in link to pass on, shown once, when it was not emailed.
    pub url: Option<String>,
    /// Why the link was not emailed, or not shown.
    pub note: Option<String>,
}

/// An SSO-domain rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SsoDomainView {
    #[schema(example = "example.com")]
    pub domain: String,
    pub role: String,
}

/// What `POST /users` created: a pending user and their invitation, or an SSO-domain rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateUserResponse {
    pub user: Option<UserView>,
    pub invitation: Option<InvitationView>,
    pub sso_domain: Option<SsoDomainView>,
}

/// Invite a user, or create an SSO-domain rule.
///
/// With `email`: creates a pending user and an invitation, emailed when the server has an SMTP
/// relay (`serve --smtp-url`), otherwise returned as a link. With `domain`: people who sign in
/// with a verified email of that domain join automatically with `role`. Supports
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body = CreateUserRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Retry-safe key: a repeat with the same body returns the original result (without the link)")),
    responses(
        (status = 201, description = "Invited (or the SSO-domain rule set)", body = CreateUserResponse),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(Object(body)): Json<Object<CreateUserRequest>>,
) -> Result<impl IntoResponse, Problem> {
    principal.require(Need::write(Group::Users))?;
    let idem = idempotency(&headers, "POST", "/api/v1/users", &body)?;
    let role = match &body.role {
        Some(r) => Role::parse(r)?,
        None => Role::default(),
    };
    // Nobody grants more than they hold: a person with this role may do what its scopes allow.
    if !principal.scopes.covers(&role.scopes()) {
        return Err(Problem::forbidden(format!(
            "granting the role '{role}' needs a token that holds its scopes ({}): nobody grants \
             more than they hold",
            role.scopes().to_strings().join(" ")
        )));
    }
    let command = principal.command(&request_id).idempotent(idem);
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match (&body.email, &body.domain) {
        (Some(email), None) => {
            let now = events::now_micros();
            let expires_at =
                extract::parse_expiry(&body.expires_in, &None, DEFAULT_LIFETIME, now, |d| {
                    if d < std::time::Duration::from_secs(3600) || d > MAX_LIFETIME {
                        Err(Problem::invalid_argument(
                            "field 'expires_in' must be from 1 hour to 30 days",
                        ))
                    } else {
                        Ok(())
                    }
                })?;
            let user_id = mint::id("usr");
            let code = mint::secret("qzi_");
            let appended = crate::directory::execute(&state, command, |org| {
                directory::invite_user(org, &user_id, email, role, code.hash, expires_at)
            })
            .await?
            .appended()
            .ok_or_else(|| Problem::internal("an invitation appended nothing"))?;
            let (id, invitation) = if appended.replayed {
                let not_shown = InvitationView {
                    expires_at: events::format_time(expires_at),
                    emailed: false,
                    url: None,
                    note: Some(REPLAYED.to_owned()),
                };
                (replayed_user(&state, appended.first)?, not_shown)
            } else {
                let url = invitation_url(&state, &principal.org_id, &code.value);
                let inv = deliver(&state, &principal.org_id, email, role, &url, expires_at).await;
                (user_id.clone(), inv)
            };
            let models = state.models().load();
            let org = models.state.org(&principal.org_id);
            let user = org
                .user(&id)
                .ok_or_else(|| Problem::not_found(format!("user '{id}' was removed since")))?;
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/users/{id}")) {
                out.insert(header::LOCATION, v);
            }
            if appended.replayed {
                out.insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            let invitation = InvitationView {
                expires_at: events::format_time(user.invitation.map_or(expires_at, |(_, t)| t)),
                ..invitation
            };
            Ok((
                StatusCode::CREATED,
                out,
                Json(CreateUserResponse {
                    user: Some(view(org, user)),
                    invitation: Some(invitation),
                    sso_domain: None,
                }),
            ))
        }
        (None, Some(domain)) => {
            crate::directory::execute(&state, command, |org| {
                directory::add_domain(org, domain, role)
            })
            .await?;
            let domain = directory::check_domain(domain)?;
            Ok((
                StatusCode::CREATED,
                out,
                Json(CreateUserResponse {
                    user: None,
                    invitation: None,
                    sso_domain: Some(SsoDomainView {
                        domain,
                        role: role.as_str().to_owned(),
                    }),
                }),
            ))
        }
        _ => Err(Problem::invalid_argument(
            "give exactly one of 'email' (invite a person) or 'domain' (an SSO-domain rule)",
        )),
    }
}

const REPLAYED: &str = "repeat of an earlier request with the same Idempotency-Key: the \
                        invitation was made then and its link is not shown again";

/// The user an earlier request with the same idempotency key invited.
fn replayed_user(state: &AppState, position: u64) -> Result<String, Problem> {
    state
        .log()
        .get(position)
        .map_err(Problem::internal)?
        .and_then(|r| match &r.event {
            Event::UserInvited(e) => Some(e.user_id.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            Problem::conflict("this Idempotency-Key was used for another kind of request")
        })
}

/// The link that opens the organization's sign-in with the invitation's code.
pub fn invitation_url(state: &AppState, org_id: &str, code: &str) -> String {
    let mut url = format!("{}/sso/login?", state.settings().public_url);
    url.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .append_pair("org", org_id)
            .append_pair("invitation", code)
            .finish(),
    );
    url
}

/// Emails the invitation when a relay is configured; otherwise, or when it fails, the link
/// goes back to the inviter.
async fn deliver(
    state: &AppState,
    org_id: &str,
    email: &str,
    role: Role,
    url: &str,
    expires_at: i64,
) -> InvitationView {
    let shown = |note: String| InvitationView {
        expires_at: events::format_time(expires_at),
        emailed: false,
        url: Some(url.to_owned()),
        note: Some(note),
    };
    let Some(mail) = &state.settings().mail else {
        return shown("no SMTP relay is configured (serve --smtp-url): pass this link on".into());
    };
    let organization = state
        .models()
        .load()
        .state
        .org(org_id)
        .settings()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let sent = mail
        .send_invitation(&Invitation {
            to: email,
            organization: &organization,
            role: role.as_str(),
            url,
            expires_at: &events::format_time(expires_at),
        })
        .await;
    match sent {
        Ok(()) => InvitationView {
            expires_at: events::format_time(expires_at),
            emailed: true,
            url: None,
            note: None,
        },
        Err(why) => {
            tracing::warn!(error = %why, "an invitation could not be emailed; its link is returned instead");
            shown(format!(
                "the invitation could not be emailed ({why}): pass this link on"
            ))
        }
    }
}
