//! `/tokens`: API tokens (the dashboard's Settings → API tokens).

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use events::Event;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use projections::tokens::{Token, Tokens};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::commit::{idempotency, problem};
use super::extract::{self, Json, Path, Query};
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::{Problem, ProblemBody};
use super::request_id::RequestId;
use crate::domain::expiry::{Expiry, Lifetime};
use crate::domain::scope::{Group, Need, Scopes};
use crate::domain::tokens::{self, Caller, CreateToken, Issuer, TokenRejection};
use crate::execute::execute;
use crate::mint;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(get_token, revoke_token))
}

/// Tokens last this long unless the request says otherwise.
const DEFAULT_LIFETIME: &str = "90d";

/// A request to issue an API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token may do: `read`, `write`, or per group (`devices:read`, `devices:write`,
    /// `users:…`, `policy:…`, `keys:…`, `posture:…`, `webhooks:…`, `audit:read`, `events:read`,
    /// `tokens:write`, `scim`). A token can only grant scopes its creator holds.
    #[schema(value_type = Vec<ScopeName>, min_items = 1, example = json!(["devices:read", "audit:read"]))]
    pub scopes: Vec<String>,
    /// Human-readable label, shown in the audit log of every request the token makes (1–200
    /// characters).
    #[schema(
        example = "SIEM export job",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub description: String,
    /// Lifetime from now: `3600s`, `12h`, `90d`… (1 hour to 12 months, and never past the
    /// expiry of the token that issues it). Default 90 days, or until the issuing token
    /// expires if that comes first.
    #[serde(default)]
    #[schema(example = "90d", pattern = "^[0-9]{1,12}[smhdw]?$")]
    pub expires_in: Option<String>,
    /// Absolute expiry (RFC 3339), instead of `expires_in`.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A scope a token can carry (see the `scopes` field).
#[derive(ToSchema)]
#[allow(dead_code)] // Only documents the accepted strings in the OpenAPI document.
pub enum ScopeName {
    #[schema(rename = "read")]
    Read,
    #[schema(rename = "write")]
    Write,
    #[schema(rename = "devices:read")]
    DevicesRead,
    #[schema(rename = "devices:write")]
    DevicesWrite,
    #[schema(rename = "users:read")]
    UsersRead,
    #[schema(rename = "users:write")]
    UsersWrite,
    #[schema(rename = "policy:read")]
    PolicyRead,
    #[schema(rename = "policy:write")]
    PolicyWrite,
    #[schema(rename = "keys:read")]
    KeysRead,
    #[schema(rename = "keys:write")]
    KeysWrite,
    #[schema(rename = "posture:read")]
    PostureRead,
    #[schema(rename = "posture:write")]
    PostureWrite,
    #[schema(rename = "audit:read")]
    AuditRead,
    #[schema(rename = "events:read")]
    EventsRead,
    #[schema(rename = "webhooks:read")]
    WebhooksRead,
    #[schema(rename = "webhooks:write")]
    WebhooksWrite,
    #[schema(rename = "tokens:write")]
    TokensWrite,
    #[schema(rename = "scim")]
    Scim,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub description: String,
    /// RFC 3339.
    pub expires_at: String,
    pub created_at: String,
    /// Who created it (a token's description, or the console).
    pub created_by: String,
    /// The token that issued it (`null`: the console did). Revoking a token revokes the
    /// tokens it issued, and none expires after its parent.
    pub parent_id: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// A newly issued token: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    /// The bearer token. Shown exactly once; `null` when this answers a repeated request with
    /// the same `Idempotency-Key`.
    pub token: Option<String>,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: String,
    pub created_at: String,
    pub created_by: String,
    pub parent_id: Option<String>,
    pub revoked_at: Option<String>,
    pub status: String,
    /// Set when the secret is not shown, saying why.
    pub note: Option<String>,
}

/// List parameters shared by collection endpoints.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `status` (active, expired,
    /// revoked), `scope`.
    pub filter: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `expires_at`, `description`.
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "tokens",
    filter_keys: &["status", "scope"],
    sort_fields: &["created_at", "expires_at", "description"],
    default_sort: "created_at",
};

/// A token whose ancestor was revoked is refused as revoked, so it is shown as revoked too.
fn status_of(tokens: &Tokens, t: &Token, now: i64) -> &'static str {
    if tokens.effective_revoked_at(t).is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

fn view(tokens: &Tokens, t: &Token, now: i64) -> TokenView {
    TokenView {
        id: t.id.clone(),
        prefix: t.prefix.clone(),
        scopes: t.scopes.clone(),
        description: t.description.clone(),
        expires_at: events::format_time(t.expires_at),
        created_at: events::format_time(t.created_at),
        created_by: t.created_by.clone(),
        parent_id: t.parent.clone(),
        revoked_at: tokens.effective_revoked_at(t).map(events::format_time),
        status: status_of(tokens, t, now).to_owned(),
    }
}

fn created(v: TokenView, token: Option<String>, note: Option<String>) -> CreatedToken {
    CreatedToken {
        id: v.id,
        token,
        prefix: v.prefix,
        scopes: v.scopes,
        description: v.description,
        expires_at: v.expires_at,
        created_at: v.created_at,
        created_by: v.created_by,
        parent_id: v.parent_id,
        revoked_at: v.revoked_at,
        status: v.status,
        note,
    }
}

fn parse_expiry(body: &CreateTokenRequest, now: i64) -> Result<i64, Problem> {
    extract::parse_expiry(
        &body.expires_in,
        &body.expires_at,
        DEFAULT_LIFETIME,
        now,
        |d| Expiry::check_lifetime(Lifetime::Token, d).map_err(Problem::from),
    )
}

/// Issue an API token.
///
/// Returns the token exactly once; only its SHA-256 is stored. Supports `Idempotency-Key`.
#[utoipa::path(
    post, path = "/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Retry-safe key: a repeat with the same body returns the original result (without the secret)")),
    responses(
        (status = 201, description = "Token issued (or, with header `Idempotent-Replayed: true`, the result of an earlier request with the same Idempotency-Key, without the secret)", body = CreatedToken),
    ),
    security(("bearer" = []))
)]
async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(body): Json<CreateTokenRequest>,
) -> Result<impl IntoResponse, Problem> {
    principal.require(Need::write(Group::Tokens))?;
    let idem = idempotency(&headers, "POST", "/api/v1/tokens", &body)?;
    let now = events::now_micros();
    let scopes = Scopes::parse(&body.scopes)
        .map_err(|e| Problem::invalid_argument(format!("field 'scopes': {e}")))?;
    let expires_at = parse_expiry(&body, now)?;
    let token_id = mint::id("tok");
    let secret = mint::secret("qz_");
    let cmd = CreateToken {
        token_id: token_id.clone(),
        prefix: secret.display_prefix.clone(),
        secret_hash: secret.hash,
        scopes,
        description: body.description.clone(),
        expires_at,
        expires_by_default: body.expires_in.is_none() && body.expires_at.is_none(),
    };
    let issuer = Issuer::Token(Caller {
        token_id: &principal.token_id,
        scopes: &principal.scopes,
    });
    let appended = execute(
        &state,
        principal.command(&request_id).idempotent(idem),
        |org| tokens::create(org, issuer, cmd.clone(), now),
    )
    .await
    .map_err(|e| problem(e, rejected))?
    .appended()
    .ok_or_else(|| Problem::internal("issuing a token appended nothing"))?;
    let (id, secret_value, note, replayed) = if appended.replayed {
        let original = state
            .log()
            .get(appended.first)
            .map_err(Problem::internal)?
            .and_then(|r| match &r.event {
                Event::TokenCreated(e) => Some(e.token_id.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Problem::conflict("this Idempotency-Key was used for another kind of request")
            })?;
        let note = "repeat of an earlier request with the same Idempotency-Key: the token was issued then and is not shown again";
        (original, None, Some(note.to_owned()), true)
    } else {
        (token_id, Some(secret.value), None, false)
    };
    let models = state.models().load();
    let token = models
        .state
        .org(&principal.org_id)
        .token(&id)
        .ok_or_else(|| Problem::internal("created token missing from the read model"))?;
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tokens/{id}")) {
        out.insert(header::LOCATION, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((
        StatusCode::CREATED,
        out,
        Json(created(
            view(&models.state.tokens, token, now),
            secret_value,
            note,
        )),
    ))
}

/// List the organization's API tokens (never their secrets).
#[utoipa::path(
    get, path = "/tokens", tag = "tokens",
    params(ListQuery),
    responses((status = 200, description = "One page of tokens", body = Page<TokenView>)),
    security(("bearer" = []))
)]
async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<TokenView>>, Problem> {
    principal.require(Need::read(Group::Tokens))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &q.filter,
        &q.sort,
    )?;
    for term in list.filter.clauses.iter().flatten() {
        if term.key == "status" && !["active", "expired", "revoked"].contains(&term.value.as_str())
        {
            return Err(Problem::invalid_argument(format!(
                "filter 'status:{}': status must be active, expired or revoked",
                term.value
            )));
        }
    }
    let now = events::now_micros();
    let models = state.models().load();
    let items: Vec<&Token> = models
        .state
        .org(&principal.org_id)
        .tokens()
        .filter(|t| {
            list.filter.matches(|key, value| match key {
                "status" => status_of(&models.state.tokens, t, now) == value,
                "scope" => t.scopes.iter().any(|s| s == value),
                _ => false,
            })
        })
        .collect();
    let field = list.sort.field.as_str();
    let sort_key = |t: &&Token| match field {
        "expires_at" => format!("{:020}", t.expires_at.max(0)),
        "description" => t.description.to_lowercase(),
        _ => format!("{:020}", t.created_at.max(0)),
    };
    Ok(Json(list.page(
        &state,
        items,
        sort_key,
        |t| &t.id,
        |t| view(&models.state.tokens, t, now),
    )))
}

/// One API token.
#[utoipa::path(
    get, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "The token", body = TokenView)),
    security(("bearer" = []))
)]
async fn get_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, Problem> {
    principal.require(Need::read(Group::Tokens))?;
    let models = state.models().load();
    match models.state.org(&principal.org_id).token(&id) {
        Some(t) => Ok(Json(view(&models.state.tokens, t, events::now_micros()))),
        None => Err(Problem::not_found(format!("no token '{id}'"))),
    }
}

/// Revoke an API token, and every token it issued (and theirs), in one step.
///
/// Immediate; repeating it answers 204 again (and revokes any token issued by it that is still
/// active). A token may revoke itself, the tokens it issued and tokens whose scopes it holds
/// (403 otherwise); the organization's last active token with scope `write` cannot be revoked
/// (409), so the organization cannot be locked out of its own API.
#[utoipa::path(
    delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 403, description = "The token is not this one, was not issued by it, and holds scopes this one lacks", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It is the organization's last active owner token (scope `write`), or it issued that one", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Tokens))?;
    let caller = Caller {
        token_id: &principal.token_id,
        scopes: &principal.scopes,
    };
    let now = events::now_micros();
    execute(&state, principal.command(&request_id), |org| {
        tokens::revoke(org, caller, &id, now)
    })
    .await
    .map_err(|e| problem(e, rejected))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The problem answering a refused token command.
fn rejected(why: TokenRejection) -> Problem {
    let detail = why.to_string();
    match why {
        TokenRejection::Invalid(_) | TokenRejection::OutlivesIssuer { .. } => {
            Problem::invalid_argument(detail)
        }
        TokenRejection::ScopesNotHeld { .. } | TokenRejection::NotCovered { .. } => {
            Problem::forbidden(detail)
        }
        TokenRejection::IssuerInactive => Problem::unauthorized(detail),
        TokenRejection::NotFound(_) => Problem::not_found(detail),
        // Allowed, but not while this is the last way into the organization: resolvable by
        // issuing another owner token first, which is what 409 says.
        TokenRejection::LastOwnerToken { .. } => Problem::conflict(detail),
    }
}
