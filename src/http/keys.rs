//! `/keys`: pre-auth keys, with which devices join (`quickztna up --auth-key …`).
//!
//! A key is shown once, at creation; afterwards only its id and prefix. Lists show active keys
//! unless the filter names a `status`.

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use events::Event;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use projections::keys::Key;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::commit::idempotency;
use super::extract::{self, Json, Object, Path, Query};
use super::filter::Filter;
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::devices::{Tag, parse_tags};
use crate::domain::expiry::{Expiry, Lifetime};
use crate::domain::keys::{self, CreateKey};
use crate::domain::scope::{Group, Need};
use crate::execute::execute;
use crate::mint;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, revoke_key))
}

/// Keys last this long unless the request says otherwise.
const DEFAULT_LIFETIME: &str = "1h";

/// A tag: `tag:` followed by 1–63 of `a-z`, `0-9`, `-`.
pub struct TagName;

impl utoipa::PartialSchema for TagName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^tag:[a-z0-9-]{1,63}$"))
            .min_length(Some(5))
            .max_length(Some(67))
            .description(Some("A tag: `tag:` followed by 1–63 of a-z, 0-9 and '-'"))
            .examples([serde_json::json!("tag:production")])
            .into()
    }
}

impl ToSchema for TagName {}

/// A request to issue a pre-auth key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Whether more than one device may join with it (default false: single use).
    #[serde(default)]
    pub reusable: bool,
    /// Whether devices joining with it are removed automatically once offline for a while.
    #[serde(default)]
    pub ephemeral: bool,
    /// Tags every device joining with it gets (sorted and deduplicated; at most 64).
    #[serde(default)]
    #[schema(value_type = Vec<TagName>, max_items = 64, example = json!(["tag:production"]))]
    pub tags: Vec<String>,
    /// The user who owns the devices joining with it (an email or user id, 1–254 characters).
    /// Needs a token that may also write users (`users:write` or `write`), as reassigning a
    /// device's owner does.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 254,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$",
        example = "alice@example.com"
    )]
    pub owner: Option<String>,
    /// Lifetime from now: `30s`, `15m`, `12h`, `90d`… (any positive duration up to 90 days).
    /// Default 1 hour.
    #[serde(default)]
    #[schema(example = "12h", pattern = "^[0-9]{1,12}[smhdw]?$")]
    pub expires_in: Option<String>,
    /// Absolute expiry (RFC 3339), instead of `expires_in`; at most 90 days ahead.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Human-readable label (0–200 characters).
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "web fleet rollout"
    )]
    pub description: String,
    /// Most devices that may join with a reusable key (unlimited when null). A single-use key
    /// accepts only null or 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_uses: Option<u32>,
}

/// A pre-auth key as listed (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// `key_…`
    pub id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub reusable: bool,
    pub ephemeral: bool,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
    pub description: String,
    pub max_uses: Option<u32>,
    /// Devices that joined with it.
    pub uses: u32,
    pub created_at: String,
    /// `active`, `used` (single-use, spent), `exhausted` (max_uses reached), `expired` or
    /// `revoked`.
    pub status: String,
}

/// A newly issued pre-auth key: the only time the key is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyCreatedView {
    pub id: String,
    /// The key (`qzk_…`), for `quickztna up --auth-key`. Shown exactly once; `null` when this
    /// answers a repeated request with the same `Idempotency-Key`.
    pub key: Option<String>,
    pub prefix: String,
    pub reusable: bool,
    pub ephemeral: bool,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub expires_at: String,
    pub description: String,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub created_at: String,
    pub status: String,
    /// Set when the key is not shown, saying why.
    pub note: Option<String>,
}

/// List parameters of `GET /keys`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `status` (active, used,
    /// exhausted, expired, revoked; without a `status` term only active keys are listed),
    /// `tag` (`tag:production` or `production`), `reusable` and `ephemeral` (true, false).
    pub filter: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `expires_at`.
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "keys",
    filter_keys: &["status", "tag", "reusable", "ephemeral"],
    sort_fields: &["created_at", "expires_at"],
    default_sort: "created_at",
};
const STATUSES: &[&str] = &["active", "used", "exhausted", "expired", "revoked"];

fn view(k: &Key, now: i64) -> KeyView {
    KeyView {
        id: k.id.clone(),
        prefix: k.prefix.clone(),
        reusable: k.reusable,
        ephemeral: k.ephemeral,
        tags: k.tags.clone(),
        owner: k.owner.clone(),
        expires_at: events::format_time(k.expires_at),
        description: k.description.clone(),
        max_uses: k.max_uses,
        uses: k.uses,
        created_at: events::format_time(k.created_at),
        status: k.status(now).to_owned(),
    }
}

fn created(v: KeyView, key: Option<String>, note: Option<String>) -> KeyCreatedView {
    KeyCreatedView {
        id: v.id,
        key,
        prefix: v.prefix,
        reusable: v.reusable,
        ephemeral: v.ephemeral,
        tags: v.tags,
        owner: v.owner,
        expires_at: v.expires_at,
        description: v.description,
        max_uses: v.max_uses,
        uses: v.uses,
        created_at: v.created_at,
        status: v.status,
        note,
    }
}

fn parse_expiry(body: &CreateKeyRequest, now: i64) -> Result<i64, Problem> {
    extract::parse_expiry(
        &body.expires_in,
        &body.expires_at,
        DEFAULT_LIFETIME,
        now,
        |d| Expiry::check_lifetime(Lifetime::PreAuthKey, d).map_err(Problem::from),
    )
}

/// Create a pre-auth key.
///
/// The response includes the key, exactly once; only its SHA-256 is stored. Supports
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/keys", tag = "keys",
    request_body = CreateKeyRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Retry-safe key: a repeat with the same body returns the original result (without the key)")),
    responses(
        (status = 201, description = "Key issued (or, with header `Idempotent-Replayed: true`, the result of an earlier request with the same Idempotency-Key, without the key)", body = KeyCreatedView),
    ),
    security(("bearer" = []))
)]
async fn create_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(Object(body)): Json<Object<CreateKeyRequest>>,
) -> Result<impl IntoResponse, Problem> {
    principal.require(Need::write(Group::Keys))?;
    let idem = idempotency(&headers, "POST", "/api/v1/keys", &body)?;
    let now = events::now_micros();
    let tags = parse_tags("tags", &body.tags)?;
    if !tags.is_empty() {
        let rules = super::tag_owners::TagRules::load(&state, &principal.org_id).await?;
        let added: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
        let models = state.models().load();
        rules.check(models.state.org(&principal.org_id), &principal, &[], &added)?;
    }
    let expires_at = parse_expiry(&body, now)?;
    let key_id = mint::id("key");
    let secret = mint::secret("qzk_");
    let cmd = CreateKey {
        key_id: key_id.clone(),
        prefix: secret.display_prefix.clone(),
        secret_hash: secret.hash,
        reusable: body.reusable,
        ephemeral: body.ephemeral,
        tags,
        owner: body.owner.clone(),
        expires_at,
        description: body.description.clone(),
        max_uses: body.max_uses,
    };
    let appended = execute(
        &state,
        principal.command(&request_id).idempotent(idem),
        |_| keys::create(&principal.scopes, cmd.clone(), now),
    )
    .await?
    .appended()
    .ok_or_else(|| Problem::internal("issuing a key appended nothing"))?;
    let (id, key, note) = if appended.replayed {
        let original = state
            .log()
            .get(appended.first)
            .map_err(Problem::internal)?
            .and_then(|r| match &r.event {
                Event::KeyCreated(e) => Some(e.key_id.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Problem::conflict("this Idempotency-Key was used for another kind of request")
            })?;
        let note = "repeat of an earlier request with the same Idempotency-Key: the key was issued then and is not shown again";
        (original, None, Some(note.to_owned()))
    } else {
        (key_id, Some(secret.value), None)
    };
    let models = state.models().load();
    let k = models
        .state
        .org(&principal.org_id)
        .key(&id)
        .ok_or_else(|| Problem::internal("created key missing from the read model"))?;
    if appended.replayed && k.revoked_at.is_some() {
        // Answering 201 would point at a key that no longer exists (GET answers 404).
        return Err(Problem::conflict(format!(
            "this Idempotency-Key created pre-auth key '{id}', which has been revoked since"
        )));
    }
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/keys/{id}")) {
        out.insert(header::LOCATION, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if appended.replayed {
        out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((
        StatusCode::CREATED,
        out,
        Json(created(view(k, now), key, note)),
    ))
}

/// Checks the values of the filter terms this endpoint interprets.
fn check_terms(filter: &Filter) -> Result<(), Problem> {
    for term in filter.clauses.iter().flatten() {
        let ok = match term.key.as_str() {
            "status" => STATUSES.contains(&term.value.as_str()),
            "reusable" | "ephemeral" => matches!(term.value.as_str(), "true" | "false"),
            "tag" => Tag::parse_lenient(&term.value).is_ok(),
            _ => true,
        };
        if !ok {
            let expected = match term.key.as_str() {
                "status" => format!("one of {}", STATUSES.join(", ")),
                "tag" => "a tag such as tag:production or production".to_owned(),
                _ => "true or false".to_owned(),
            };
            return Err(Problem::invalid_argument(format!(
                "filter '{}:{}': expected {expected}",
                term.key, term.value
            )));
        }
    }
    Ok(())
}

fn matches_term(k: &Key, now: i64, key: &str, value: &str) -> bool {
    match key {
        "status" => k.status(now) == value,
        "tag" => Tag::parse_lenient(value).is_ok_and(|t| k.tags.iter().any(|x| x == t.as_str())),
        "reusable" => k.reusable.to_string() == value,
        "ephemeral" => k.ephemeral.to_string() == value,
        _ => false,
    }
}

/// List pre-auth keys: active ones unless the filter names a `status` (never the keys
/// themselves).
#[utoipa::path(
    get, path = "/keys", tag = "keys",
    params(KeyListQuery),
    responses((status = 200, description = "One page of pre-auth keys", body = Page<KeyView>)),
    security(("bearer" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<KeyListQuery>,
) -> Result<Json<Page<KeyView>>, Problem> {
    principal.require(Need::read(Group::Keys))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &q.filter,
        &q.sort,
    )?;
    check_terms(&list.filter)?;
    let only_active = !list
        .filter
        .clauses
        .iter()
        .flatten()
        .any(|t| t.key == "status");
    let now = events::now_micros();
    let models = state.models().load();
    let items: Vec<&Key> = models
        .state
        .org(&principal.org_id)
        .keys()
        .filter(|k| !only_active || k.status(now) == "active")
        .filter(|k| {
            list.filter
                .matches(|key, value| matches_term(k, now, key, value))
        })
        .collect();
    let field = list.sort.field.as_str();
    let sort_key = |k: &&Key| match field {
        "expires_at" => format!("{:020}", k.expires_at.max(0)),
        _ => format!("{:020}", k.created_at.max(0)),
    };
    Ok(Json(list.page(
        &state,
        items,
        sort_key,
        |k| &k.id,
        |k| view(k, now),
    )))
}

/// One pre-auth key (never the key itself).
///
/// A revoked key answers 404, as anything deleted does; `GET /keys?filter=status:revoked` still
/// lists it.
#[utoipa::path(
    get, path = "/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses((status = 200, description = "The key", body = KeyView)),
    security(("bearer" = []))
)]
async fn get_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, Problem> {
    principal.require(Need::read(Group::Keys))?;
    let models = state.models().load();
    match models.state.org(&principal.org_id).key(&id) {
        Some(k) if k.revoked_at.is_none() => Ok(Json(view(k, events::now_micros()))),
        Some(_) => Err(Problem::not_found(format!(
            "pre-auth key '{id}' was revoked (it is listed with ?filter=status:revoked)"
        ))),
        _ => Err(Problem::not_found(format!("no pre-auth key '{id}'"))),
    }
}

/// Revoke a pre-auth key: no device can join with it any more (devices that joined stay).
/// Repeating it answers 204 again.
#[utoipa::path(
    delete, path = "/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses((status = 204, description = "Revoked (or already revoked)")),
    security(("bearer" = []))
)]
async fn revoke_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Keys))?;
    execute(&state, principal.command(&request_id), |org| {
        keys::revoke(org, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
