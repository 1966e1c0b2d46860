//! `/sso`: the organization's single sign-on settings.
//!
//! - `PUT /sso/oidc` (`users:write`) points the organization at its OpenID provider. The issuer
//!   is discovered first (a `422` names what failed), so a typo never reaches the log. The
//!   event (`org.oidc_configured`) has the issuer and client id; the client secret goes to
//!   `<data-dir>/secrets/oidc-<org>` (0600) and is never answered back.
//! - `GET /sso` (`users:read`): the provider, the redirect URI to register there, and the
//!   SSO-domain rules.
//! - `DELETE /sso/domains/{domain}` (`users:write`) ends a domain rule (people who joined by it
//!   stay). Rules are added with `POST /users` and a `domain`.

use axum::Extension;
use axum::extract::State;
use events::event::OrgOidcConfigured;
use events::stream::Stream;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Object, Path};
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::Decision;
use crate::domain::directory::remove_domain;
use crate::domain::scope::{Group, Need};
use crate::domain::text::check_text;
use crate::sso::oidc::{Provider, RelyingParty, http_client};
use crate::sso::web::redirect_uri;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_sso))
        .routes(routes!(set_oidc))
        .routes(routes!(delete_domain))
}

/// The organization's OpenID provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OidcView {
    pub issuer: String,
    pub client_id: String,
    /// The redirect URI to register at the provider: `<public-url>/sso/callback`.
    pub redirect_uri: String,
}

/// An SSO-domain rule: people whose verified email is in `domain` join with `role` when they
/// first sign in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DomainRule {
    pub domain: String,
    /// `admin`, `member` or `auditor`.
    pub role: String,
}

/// The organization's single sign-on settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SsoView {
    /// `null` until an OpenID provider is configured.
    pub oidc: Option<OidcView>,
    pub domains: Vec<DomainRule>,
}

/// An OpenID provider to sign people in with.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcRequest {
    /// The issuer, exactly as the provider's discovery document spells it: e.g.
    /// `https://login.microsoftonline.com/<tenant id>/v2.0` (never `/common`) or
    /// `https://<org>.okta.com`. `https://` (plain `http://` only on this machine's loopback).
    #[schema(min_length = 8, max_length = 512, example = "https://acme.okta.com")]
    pub issuer: String,
    #[schema(min_length = 1, max_length = 255)]
    pub client_id: String,
    /// Stored on the server only (mode 0600), never in the event log or an answer.
    #[schema(min_length = 1, max_length = 1024)]
    pub client_secret: String,
}

fn view(state: &AppState, org_id: &str) -> SsoView {
    let models = state.models().load();
    let org = models.state.org(org_id);
    SsoView {
        oidc: org.oidc().map(|c| OidcView {
            issuer: c.issuer.clone(),
            client_id: c.client_id.clone(),
            redirect_uri: redirect_uri(state),
        }),
        domains: org
            .sso_domains()
            .map(|(domain, role)| DomainRule {
                domain: domain.clone(),
                role: role.clone(),
            })
            .collect(),
    }
}

/// The organization's single sign-on settings.
#[utoipa::path(
    get, path = "/sso", tag = "sso",
    responses((status = 200, description = "The settings", body = SsoView)),
    security(("bearer" = []))
)]
async fn get_sso(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<SsoView>, Problem> {
    principal.require(Need::read(Group::Users))?;
    Ok(Json(view(&state, &principal.org_id)))
}

/// Checks the issuer before anything goes on the network: `https://`, or `http://` on this
/// machine's loopback only (a local test provider). The server never fetches other schemes.
pub fn check_issuer(issuer: &str) -> Result<(), Problem> {
    check_text("issuer", issuer, 8, 512)?;
    let url = url::Url::parse(issuer)
        .map_err(|e| Problem::invalid_argument(format!("field 'issuer': not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let ok = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => loopback,
        _ => false,
    };
    if !ok || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Problem::invalid_argument(
            "field 'issuer' must be an https:// URL without query or fragment (http:// only \
             on the loopback)",
        ));
    }
    Ok(())
}

/// Configure the OpenID provider people sign in with.
///
/// The issuer is discovered before anything is recorded: a provider that cannot be reached,
/// or whose discovery document names another issuer, answers `422`. Replaces any earlier
/// provider; pending sign-ins with the old one fail.
#[utoipa::path(
    put, path = "/sso/oidc", tag = "sso",
    request_body = OidcRequest,
    responses(
        (status = 200, description = "Configured", body = SsoView),
        (status = 422, description = "Discovery of the issuer failed", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn set_oidc(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Json(Object(body)): Json<Object<OidcRequest>>,
) -> Result<Json<SsoView>, Problem> {
    principal.require(Need::write(Group::Users))?;
    check_issuer(&body.issuer)?;
    check_text("client_id", &body.client_id, 1, 255)?;
    if body.client_secret.is_empty() || body.client_secret.len() > 1024 {
        return Err(Problem::invalid_argument(
            "field 'client_secret': 1 to 1024 characters",
        ));
    }
    let org_id = principal.org_id.clone();
    let party = RelyingParty {
        issuer: body.issuer.clone(),
        client_id: body.client_id.clone(),
        client_secret: body.client_secret.clone(),
        redirect_uri: redirect_uri(&state),
    };
    let provider = Provider::discover(http_client(), party)
        .await
        .map_err(|e| Problem::unprocessable(format!("the issuer cannot be used: {e}")))?;
    super::commit::ensure_writable(&state)?;
    let data_dir = state.settings().data_dir.clone();
    let (dir, org, secret) = (data_dir, org_id.clone(), body.client_secret.clone());
    tokio::task::spawn_blocking(move || {
        crate::sso::secrets::write_client_secret(&dir, &org, &secret)
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    let event = OrgOidcConfigured {
        org_id: org_id.clone(),
        issuer: body.issuer,
        client_id: body.client_id,
    };
    crate::directory::execute(&state, principal.command(&request_id), |org| {
        Ok(Decision::none().event(Stream::org(org.id()), event.clone()))
    })
    .await?;
    state.sso().remember(&org_id, std::sync::Arc::new(provider));
    Ok(Json(view(&state, &org_id)))
}

/// End an SSO-domain rule.
///
/// People who joined by it stay in the organization.
#[utoipa::path(
    delete, path = "/sso/domains/{domain}", tag = "sso",
    params(("domain" = String, Path, description = "The email domain, e.g. `example.com`")),
    responses((status = 204, description = "Removed")),
    security(("bearer" = []))
)]
async fn delete_domain(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(domain): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Users))?;
    crate::directory::execute(&state, principal.command(&request_id), |org| {
        remove_domain(org, &domain)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
