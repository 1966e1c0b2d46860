//! `/webhooks`: the destinations an organization's events are POSTed to, signed (DESIGN §3.6).
//! Business and workforce plans.
//!
//! A webhook's secret (`whsec_…`) is returned once, when it is created or rotated; it is kept
//! encrypted outside the log. Deliveries, tests, replays and rotation are in
//! [`super::webhook_deliveries`].

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use events::Event;
use events::event::Plan;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use projections::webhooks::Webhook;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::commit::idempotency;
use super::extract::{Json, Object, Path, Query};
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use super::request_id::RequestId;
use crate::audit::types::TypeFilter;
use crate::domain::scope::{Group, Need};
use crate::domain::webhooks::{self, CreateWebhook, UpdateWebhook};
use crate::execute::execute;
use crate::mint;
use crate::state::AppState;
use crate::webhooks::secrets::Keyring;
use crate::webhooks::sign::Secret;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
}

/// An event type a webhook may subscribe to: a type the server records (`device.registered`),
/// every type of a kind (`device.*`), or `*`.
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut names: Vec<String> = vec!["*".into()];
        for (t, _) in events::Event::TYPES {
            if let Some((kind, _)) = t.split_once('.') {
                let prefix = format!("{kind}.*");
                if !names.contains(&prefix) {
                    names.push(prefix);
                }
            }
        }
        names.extend(events::Event::TYPES.iter().map(|(t, _)| (*t).to_owned()));
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(
                "An event type (`device.registered`), every type of a kind (`device.*`), or `*`",
            ))
            .into()
    }
}

impl ToSchema for EventTypeName {}

/// A new webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where to POST events: `https://…` (or `http://…`). Destinations on loopback, private,
    /// link-local or metadata addresses are refused unless the server allows them
    /// (`serve --webhook-allow-cidr`).
    #[schema(
        max_length = 2048,
        example = "https://siem.example.com/hooks/quickztna"
    )]
    pub url: String,
    /// Event types to send: exact (`device.registered`) or by prefix (`device.*`); empty or
    /// absent: every event.
    #[serde(default)]
    #[schema(value_type = Vec<EventTypeName>, max_items = 32, example = json!(["device.*", "policy.applied"]))]
    pub event_types: Vec<String>,
    /// Human-readable label (0–200 characters).
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "SIEM"
    )]
    pub description: String,
}

/// A change to a webhook; absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<EventTypeName>>, max_items = 32)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    /// `false` stops deliveries (events are kept for when it is enabled again); `true` resumes
    /// them where they stopped, including a webhook the server disabled.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A webhook (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// `wh_…`
    pub id: String,
    pub url: String,
    /// Empty: every event.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// `active`, `retrying` (a delivery is failing and will be tried again) or `disabled`.
    pub status: String,
    /// Why the server disabled it, if it did.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// When its secret was last rotated.
    pub secret_rotated_at: Option<String>,
    /// Until when the previous secret still signs too, during a rotation.
    pub previous_secret_expires_at: Option<String>,
    /// The id of the last event settled: delivered, refused by the receiver for good, or not
    /// subscribed to. A replay moves it back.
    pub last_event_id: u64,
    /// The delivery being retried, if one is.
    pub retry: Option<RetryView>,
}

/// A delivery that failed and will be tried again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryView {
    pub event_id: u64,
    pub tries: u32,
    pub failing_since: String,
    pub next_retry_at: String,
}

/// A new webhook: the only time its secret is shown. (No `Debug`: it holds the secret.)
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreatedView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret (`whsec_…`). Shown exactly once; `null` when this answers a repeated
    /// request with the same `Idempotency-Key`.
    pub secret: Option<String>,
    /// Set when the secret is not shown, saying why.
    pub note: Option<String>,
}

/// List parameters of `GET /webhooks`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; keys `enabled` (true, false).
    pub filter: Option<String>,
    /// `field:asc|desc`; field `created_at` (default).
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "webhooks",
    filter_keys: &["enabled"],
    sort_fields: &["created_at"],
    default_sort: "created_at",
};

/// The caller's scope, then its plan: webhooks are part of the business and workforce plans
/// (the seed page's "Webhooks").
pub fn authorize(state: &AppState, principal: &Principal, need: Need) -> Result<(), Problem> {
    principal.require(need)?;
    let models = state.models().load();
    let plan = models
        .state
        .org(&principal.org_id)
        .settings()
        .map(|o| o.plan);
    match plan {
        Some(Plan::Business | Plan::Workforce) => Ok(()),
        _ => Err(Problem::plan_required(
            "webhooks are part of the business and workforce plans",
        )),
    }
}

pub fn view(state: &AppState, w: &Webhook) -> WebhookView {
    let standing = state.webhooks().standing(&w.id);
    let retry = standing.as_ref().and_then(|(_, r)| r.clone());
    let status = if !w.enabled {
        "disabled"
    } else if retry.is_some() {
        "retrying"
    } else {
        "active"
    };
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        event_types: split_types(&w.event_types),
        description: w.description.clone(),
        enabled: w.enabled,
        status: status.into(),
        disabled_reason: w.disabled_reason.clone(),
        created_at: events::format_time(w.created_at),
        updated_at: events::format_time(w.updated_at),
        secret_rotated_at: w.rotated_at.map(events::format_time),
        previous_secret_expires_at: w
            .previous_valid_until
            .filter(|t| *t > events::now_micros())
            .map(events::format_time),
        last_event_id: standing.map_or(w.created_seq, |(cursor, _)| cursor),
        retry: retry.map(|r| RetryView {
            event_id: r.event_id,
            tries: r.tries,
            failing_since: events::format_time(r.first_failed_at),
            next_retry_at: events::format_time(r.next_at),
        }),
    }
}

fn split_types(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The canonical filter of a list of types (empty: every event).
fn parse_types(types: &[String]) -> Result<String, Problem> {
    if types.is_empty() {
        return Ok(String::new());
    }
    if let Some(bad) = types.iter().find(|t| t.contains(',')) {
        return Err(Problem::invalid_argument(format!(
            "field 'event_types': '{}' is not one type; give each as its own string",
            crate::domain::text::echo(bad)
        )));
    }
    let filter = TypeFilter::parse(&types.join(","))
        .map_err(|e| Problem::invalid_argument(format!("field 'event_types': {e}")))?;
    Ok(if filter.is_all() {
        String::new()
    } else {
        filter.canonical()
    })
}

/// A destination URL the server may deliver to, or a 422 saying why not.
async fn check_url(state: &AppState, url: &str) -> Result<String, Problem> {
    state
        .webhooks()
        .egress()
        .check_url(url)
        .await
        .map(|u| u.to_string())
        .map_err(|e| Problem::unprocessable(format!("field 'url': {e}")))
}

/// Create a webhook.
///
/// The response includes the signing secret, exactly once. The webhook receives the events
/// recorded after it, each as a signed POST. Supports `Idempotency-Key`.
#[utoipa::path(
    post, path = "/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Retry-safe key: a repeat with the same body returns the original result (without the secret)")),
    responses(
        (status = 201, description = "Webhook created (or, with header `Idempotent-Replayed: true`, the result of an earlier request with the same Idempotency-Key, without the secret)", body = WebhookCreatedView,
            headers(
                ("Location" = String, description = "The webhook: `/api/v1/webhooks/{id}`"),
                ("Cache-Control" = String, description = "`no-store`: the answer holds the secret"),
            )),
        (status = 403, description = "The token lacks `webhooks:write`, or (`plan_required`) the organization's plan has no webhooks", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The URL is not a destination the server may reach", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn create_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(Object(body)): Json<Object<CreateWebhookRequest>>,
) -> Result<impl IntoResponse, Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    let idem = idempotency(&headers, "POST", "/api/v1/webhooks", &body)?;
    let event_types = parse_types(&body.event_types)?;
    crate::domain::text::check_text("description", &body.description, 0, 200)?;
    let url = check_url(&state, &body.url).await?;
    // One creation at a time, so the per-organization cap holds under concurrent requests.
    let creating = state.webhooks().creating(&principal.org_id);
    let _creating = creating.lock().await;
    let id = mint::id("wh");
    let secret = Secret::generate();
    // The secret is stored before the event, so no delivery loop ever finds a webhook
    // without one; if the append fails, the orphan file is removed (or harmless).
    let ring = Keyring {
        current: secret.clone(),
        previous: None,
    };
    store_secret(&state, &id, ring).await?;
    let cmd = CreateWebhook {
        webhook_id: id.clone(),
        url,
        event_types,
        description: body.description.clone(),
    };
    let outcome = execute(
        &state,
        principal.command(&request_id).idempotent(idem),
        |org| webhooks::create(org, cmd.clone()),
    )
    .await;
    let replayed = match outcome {
        Ok(o) => {
            let appended = o
                .appended()
                .ok_or_else(|| Problem::internal("creating a webhook appended nothing"))?;
            appended.replayed.then_some(appended.first)
        }
        // Durable, but the read models were slow to show it: the webhook exists and its
        // secret must reach the caller, or no receiver could ever verify it.
        Err(crate::execute::ExecuteError::NotApplied { failed: None })
            if state
                .models()
                .wait_for(
                    state.log().head(),
                    state.settings().read_your_writes_timeout,
                )
                .await =>
        {
            None
        }
        Err(e) => {
            // Not appended: the secret is nobody's. (Durable but never shown: the webhook's
            // deliveries fail visibly until its secret is rotated.)
            if !matches!(e, crate::execute::ExecuteError::NotApplied { .. }) {
                let _ = state.webhooks().secrets().remove(&id);
            }
            return Err(e.into());
        }
    };
    let (id, secret, note) = if let Some(first) = replayed {
        let _ = state.webhooks().secrets().remove(&id);
        let original = state
            .log()
            .get(first)
            .map_err(Problem::internal)?
            .and_then(|r| match &r.event {
                Event::WebhookCreated(e) => Some(e.webhook_id.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Problem::conflict("this Idempotency-Key was used for another kind of request")
            })?;
        let note = "repeat of an earlier request with the same Idempotency-Key: the secret was shown then and is not shown again";
        (original, None, Some(note.to_owned()))
    } else {
        (id, Some(secret.expose().to_owned()), None)
    };
    let models = state.models().load();
    let w = models
        .state
        .org(&principal.org_id)
        .webhook(&id)
        .ok_or_else(|| {
            Problem::conflict(format!(
                "this Idempotency-Key created webhook '{id}', which has been removed since"
            ))
        })?;
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/webhooks/{id}")) {
        out.insert(header::LOCATION, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed.is_some() {
        out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    let created = WebhookCreatedView {
        webhook: view(&state, w),
        secret,
        note,
    };
    Ok((StatusCode::CREATED, out, Json(created)))
}

/// Writes a webhook's secrets (encrypted, fsynced) off the async threads.
pub async fn store_secret(state: &AppState, id: &str, ring: Keyring) -> Result<(), Problem> {
    let st = state.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || st.webhooks().secrets().put(&id, &ring))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

/// List the organization's webhooks (never their secrets).
#[utoipa::path(
    get, path = "/webhooks", tag = "webhooks",
    params(WebhookListQuery),
    responses(
        (status = 200, description = "One page of webhooks", body = Page<WebhookView>),
        (status = 403, description = "The token lacks `webhooks:read`, or (`plan_required`) the organization's plan has no webhooks", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_webhooks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<WebhookListQuery>,
) -> Result<Json<Page<WebhookView>>, Problem> {
    authorize(&state, &principal, Need::read(Group::Webhooks))?;
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
        if !matches!(term.value.as_str(), "true" | "false") {
            return Err(Problem::invalid_argument(format!(
                "filter '{}:{}': expected true or false",
                term.key, term.value
            )));
        }
    }
    let models = state.models().load();
    let items: Vec<&Webhook> = models
        .state
        .org(&principal.org_id)
        .webhooks()
        .filter(|w| {
            list.filter
                .matches(|key, value| key == "enabled" && w.enabled.to_string() == value)
        })
        .collect();
    Ok(Json(list.page(
        &state,
        items,
        |w| format!("{:020}", w.created_at.max(0)),
        |w| &w.id,
        |w| view(&state, w),
    )))
}

/// The webhook `id` of the caller's organization, or 404.
pub fn find<'a>(
    models: &'a projections::Models,
    principal: &'a Principal,
    id: &str,
) -> Result<&'a Webhook, Problem> {
    models
        .org(&principal.org_id)
        .webhook(id)
        .ok_or_else(|| Problem::not_found(format!("no webhook '{id}'")))
}

/// One webhook (never its secret), with where its deliveries stand.
#[utoipa::path(
    get, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)")),
    responses((status = 200, description = "The webhook", body = WebhookView)),
    security(("bearer" = []))
)]
async fn get_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    authorize(&state, &principal, Need::read(Group::Webhooks))?;
    let models = state.models().load();
    Ok(Json(view(&state, find(&models.state, &principal, &id)?)))
}

/// Change a webhook's URL, event types, description, or whether it is enabled.
///
/// Enabling a webhook the server disabled resumes its deliveries at the event it gave up on.
#[utoipa::path(
    patch, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The webhook as changed", body = WebhookView),
        (status = 422, description = "The URL is not a destination the server may reach", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn update_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(Object(body)): Json<Object<UpdateWebhookRequest>>,
) -> Result<Json<WebhookView>, Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    find(&state.models().load().state, &principal, &id)?;
    let change = UpdateWebhook {
        url: match &body.url {
            Some(u) => Some(check_url(&state, u).await?),
            None => None,
        },
        event_types: body.event_types.as_deref().map(parse_types).transpose()?,
        description: body.description.clone(),
        enabled: body.enabled,
    };
    execute(&state, principal.command(&request_id), |org| {
        webhooks::update(org, &id, change.clone())
    })
    .await?;
    let models = state.models().load();
    Ok(Json(view(&state, find(&models.state, &principal, &id)?)))
}

/// Remove a webhook: deliveries stop and its secret is erased.
#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "The webhook changed while it was being removed; try again", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    execute(&state, principal.command(&request_id), |org| {
        webhooks::remove(org, &id)
    })
    .await?;
    // Its secret is erased now, not when its delivery loop next wakes.
    crate::webhooks::Webhooks::forget_off_thread(&state, &id).await;
    Ok(StatusCode::NO_CONTENT)
}
