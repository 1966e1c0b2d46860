//! `/devices`: the organization's devices — list, inspect, rename, tag, reassign, force
//! re-authentication, remove.
//!
//! Devices are created only by joining with a pre-auth key (`POST /machine/register`). A removed
//! device stays in the read model as a tombstone for the retention window (30 days): GET and
//! list answer as if it never existed (404), a repeated DELETE answers 204 again. Once retention
//! purges it, it is unknown like any other id.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use events::Event;
use events::stream::Stream;
use http::{StatusCode, header};
use projections::devices::Device;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::device_list::{self, Cond};
use super::event_view::EventView;
use super::extract::{Json, Object, Path, Query};
use super::filter::Term;
use super::keys::TagName;
use super::list::{ListSpec, Listing};
use super::page_cache::PageKey;
use super::pagination::Page;
use super::problem::Problem;
use super::request_id::RequestId;
use super::tag_owners::TagRules;
use crate::domain::Rejection;
use crate::domain::devices::{
    self, Hostname, Tag, Update, check_text, decide_expire_key, decide_tag, decide_untag,
    decide_update, parse_tags,
};
use crate::domain::scope::{Group, Need};
use crate::execute::execute;
use crate::heartbeats::Seen;
use crate::state::AppState;
use projections::OrgView;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(get_device, patch_device, remove_device))
        .routes(routes!(add_tags))
        .routes(routes!(remove_tag))
        .routes(routes!(expire_key))
}

/// A device counts as online when it sent a heartbeat this recently.
pub const ONLINE_WITHIN_MICROS: i64 = 120 * 1_000_000;
/// Events shown in a device's detail.
const RECENT_EVENTS: u64 = 20;

/// The overlay addresses of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Addresses {
    /// From 100.64.0.0/10.
    #[schema(example = "100.64.0.1")]
    pub ipv4: String,
    /// From the organization's ULA /48.
    #[schema(example = "fd12:3456:789a::1")]
    pub ipv6: String,
}

/// What the device last reported about itself (`null`: never reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostureView {
    pub disk_encrypted: Option<bool>,
    pub firewall: Option<bool>,
    pub client_version: Option<String>,
}

/// A device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// `dev_…`
    pub id: String,
    pub hostname: String,
    /// `linux`, `macos`, `windows`, …
    pub os: String,
    /// The latest reported (by heartbeat, else at registration).
    pub os_version: String,
    /// Sorted.
    pub tags: Vec<String>,
    /// The user who owns it (an email or user id), if any.
    pub owner: Option<String>,
    /// Removed automatically once offline for a while.
    pub ephemeral: bool,
    pub addresses: Addresses,
    /// The pre-auth key it joined with.
    pub key_id: String,
    /// When its authentication expires (RFC 3339); `null` for devices that do not expire
    /// (tagged ones).
    pub key_expires_at: Option<String>,
    /// True once its authentication was force-expired or has run out: it must re-authenticate.
    pub key_expired: bool,
    pub created_at: String,
    /// Last heartbeat (RFC 3339); `null` if it never sent one.
    pub last_seen: Option<String>,
    /// Whether it sent a heartbeat in the last 2 minutes.
    pub online: bool,
    pub posture: PostureView,
}

/// A device this device may reach, or that may reach it, under the access policy and posture
/// (default deny: none until a policy allows some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Peer {
    pub id: String,
    pub hostname: String,
    pub public_key: String,
    pub addresses: Addresses,
    pub tags: Vec<String>,
    /// What this device may open to the peer; empty when only the peer may connect.
    pub ports: Vec<PeerPorts>,
    /// Whether the peer may connect to this device (so its key must be accepted).
    pub inbound: bool,
}

/// A device's standing with the posture requirements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Compliance {
    /// False while it fails a required signal (or has not reported under requirements).
    pub compliant: bool,
    /// Whether posture keeps it out of every peer map now.
    pub blocked: bool,
    /// The signals it fails, as last recorded.
    pub failing: Vec<String>,
}

/// Ports of one protocol a device may reach on a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerPorts {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// `22`, `8000-8100`, or `*` (every port; always `*` for icmp).
    pub ports: String,
}

/// A device with its peers and recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceView,
    /// Devices this one may reach, or that may reach it, under the current policy and posture
    /// (none until a policy allows any).
    pub peers: Vec<Peer>,
    /// Where it stands with the organization's posture requirements (signal by signal:
    /// `GET /devices/{id}/posture`).
    pub compliance: Compliance,
    /// The device's last 20 events, newest first: its audit history, in the audit log's shape.
    pub recent_events: Vec<EventView>,
}

/// The view of a device at `now`, with what its heartbeats reported.
pub fn view(d: &Device, seen: Option<Seen>, now: i64) -> DeviceView {
    let seen = seen.unwrap_or_default();
    let ever_seen = seen.last_seen > 0;
    DeviceView {
        id: d.id.clone(),
        hostname: d.hostname.clone(),
        os: d.os.clone(),
        os_version: seen.os_version.unwrap_or_else(|| d.os_version.clone()),
        tags: d.tags.clone(),
        owner: d.owner.clone(),
        ephemeral: d.ephemeral,
        addresses: Addresses {
            ipv4: d.ipv4.clone(),
            ipv6: d.ipv6.clone(),
        },
        key_id: d.key_id.clone(),
        key_expires_at: d.key_expires_at.map(events::format_time),
        key_expired: d.key_expired || d.key_expires_at.is_some_and(|t| t <= now),
        created_at: events::format_time(d.created_at),
        last_seen: ever_seen.then(|| events::format_time(seen.last_seen)),
        online: ever_seen && now.saturating_sub(seen.last_seen) <= ONLINE_WITHIN_MICROS,
        posture: PostureView {
            disk_encrypted: seen.disk_encrypted,
            firewall: seen.firewall,
            client_version: seen.client_version,
        },
    }
}

/// The view of a device now.
pub fn current_view(state: &AppState, d: &Device) -> DeviceView {
    view(d, state.heartbeats().get(&d.id), events::now_micros())
}

/// List parameters of `GET /devices`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `tag` (`tag:production` or
    /// `tag:tag:production`), `os`, `owner`, `hostname` (exact, or a prefix ending in `*`),
    /// `ephemeral` (true, false), `last_seen_before` and `last_seen_after` (RFC 3339, strict; a
    /// device that never sent a heartbeat counts as last seen when it registered).
    pub filter: Option<String>,
    /// `field:asc|desc`; fields `created_at` (default), `hostname`, `last_seen`.
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "devices",
    filter_keys: &[
        "tag",
        "os",
        "owner",
        "hostname",
        "last_seen_before",
        "last_seen_after",
        "ephemeral",
    ],
    sort_fields: &["created_at", "hostname", "last_seen"],
    default_sort: "created_at",
};

/// List the organization's devices.
///
/// Filter with `tag:`, `os:`, `owner:`, `hostname:`, `ephemeral:`, `last_seen_before:` and
/// `last_seen_after:`; `+` or space = AND, `,` = OR (`tag:production+os:linux`,
/// `tag:production,tag:staging`).
#[utoipa::path(
    get, path = "/devices", tag = "devices",
    params(DeviceListQuery),
    responses((status = 200, description = "One page of devices", body = Page<DeviceView>)),
    security(("bearer" = []))
)]
async fn list_devices(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<DeviceListQuery>,
) -> Result<Response, Problem> {
    principal.require(Need::read(Group::Devices))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &q.filter,
        &q.sort,
    )?;
    let mut conds: Vec<Vec<Cond>> = list
        .filter
        .clauses
        .iter()
        .map(|clause| clause.iter().map(Cond::parse).collect())
        .collect::<Result<_, _>>()?;
    // A member lists their own devices only: one more AND clause, part of the cache key too.
    let only = principal.only_devices_of();
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    if let Some(user_id) = only {
        // Theirs: owned by their id, or by their email (see `OrgView::devices_of`).
        let mut own = vec![Cond::parse(&Term {
            key: "owner".into(),
            value: user_id.to_owned(),
        })?];
        if let Some(u) = org.user(user_id).filter(|u| !u.profile.email.is_empty()) {
            own.push(Cond::parse(&Term {
                key: "owner".into(),
                value: u.profile.email.clone(),
            })?);
        }
        conds.push(own);
    }
    let now = events::now_micros();
    let key = PageKey {
        org_id: principal.org_id.clone(),
        version: org.version(),
        heartbeats: state.heartbeats().generation(),
        query: match only {
            Some(user_id) => format!("{}|owner={user_id}", list.normalized()),
            None => list.normalized(),
        },
    };
    let body = match state.pages().get(&key, now) {
        Some(body) => body,
        None => {
            let (body, valid_until) = device_list::render(&state, org, &list, &conds, now)?;
            state.pages().put(key, body.clone(), valid_until);
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What a device id that is not in the organization's view answers.
fn no_device(id: &str) -> Problem {
    Problem::not_found(format!("no device '{id}'"))
}

/// The device's audit history: its last events within the audit log's retention, newest
/// first, from the same index as `GET /audit-log?subject=`.
async fn recent_events(
    state: &AppState,
    org_id: &str,
    d: &Device,
) -> Result<Vec<EventView>, Problem> {
    let stream = Stream::device(&d.id).to_string();
    crate::audit::page::history(state, org_id, &stream, RECENT_EVENTS as usize).await
}

/// One device, with its peers, posture state and recent history.
#[utoipa::path(
    get, path = "/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    responses((status = 200, description = "The device", body = DeviceDetail)),
    security(("bearer" = []))
)]
async fn get_device(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<DeviceDetail>, Problem> {
    principal.require(Need::read(Group::Devices))?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let d = org
        .live_device(&id)
        .filter(|d| principal.may_manage(org, d))
        .ok_or_else(|| no_device(&id))?;
    let device = current_view(&state, d);
    let recent_events = recent_events(&state, &principal.org_id, d).await?;
    let compliance = super::posture::compliance(org, d);
    let (peers, _) = super::peer_view::peers_of(&state, &principal.org_id, &d.id).await;
    Ok(Json(DeviceDetail {
        device,
        peers,
        compliance,
        recent_events,
    }))
}

/// Changes to a device; fields left out stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDeviceRequest {
    /// New hostname: 1–63 of `a-z`, `0-9`, `-`.
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9-]{1,63}$",
        min_length = 1,
        max_length = 63,
        example = "web-01"
    )]
    pub hostname: Option<String>,
    /// The complete new tag list (replaces the current one).
    #[serde(default)]
    #[schema(value_type = Option<Vec<TagName>>, max_items = 64)]
    pub tags: Option<Vec<String>>,
    /// New owner (an email or user id, 1–254 characters), or `null` for none. Needs a token
    /// that may also write users (`users:write` or `write`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 254, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub owner: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`, via `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Changes a live device of the caller's organization by the events `decide` returns (see
/// [`devices::change`]).
async fn mutate(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    decide: impl Fn(&Device) -> Vec<Event>,
) -> Result<(), Problem> {
    mutate_checked(state, principal, request_id, id, |_, _| Ok(()), decide).await
}

/// [`mutate`], with `check` run on the device as it is when the change is decided (the tag
/// ownership rules need the tags it has then, not when the request arrived).
async fn mutate_checked(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    check: impl Fn(OrgView<'_>, &Device) -> Result<(), Rejection>,
    decide: impl Fn(&Device) -> Vec<Event>,
) -> Result<(), Problem> {
    execute(state, principal.command(request_id), |org| {
        guard(principal, org, id)?;
        if let Some(d) = org.live_device(id) {
            check(org, d)?;
        }
        devices::change(org, id, &decide)
    })
    .await?;
    Ok(())
}

/// Refuses, as not found, a device the caller may not manage (another member's, for a
/// person with the `member` role). Checked inside the decision, on the view it decides on.
fn guard(principal: &Principal, org: OrgView<'_>, id: &str) -> Result<(), Rejection> {
    match org.device(id) {
        Some(d) if !principal.may_manage(org, d) => {
            Err(Rejection::NotFound(format!("no device '{id}'")))
        }
        _ => Ok(()),
    }
}

fn answer(state: &AppState, principal: &Principal, id: &str) -> Result<Json<DeviceView>, Problem> {
    let models = state.models().load();
    let d = models
        .state
        .org(&principal.org_id)
        .live_device(id)
        .ok_or_else(|| no_device(id))?;
    Ok(Json(current_view(state, d)))
}

/// Rename, re-tag or reassign a device.
///
/// `tags` replaces the whole list (the difference is recorded as `device.tagged` /
/// `device.untagged`); changing `owner` needs `users:write` as well as `devices:write`.
#[utoipa::path(
    patch, path = "/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    request_body = PatchDeviceRequest,
    responses((status = 200, description = "The device after the change", body = DeviceView)),
    security(("bearer" = []))
)]
async fn patch_device(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(Object(body)): Json<Object<PatchDeviceRequest>>,
) -> Result<Json<DeviceView>, Problem> {
    principal.require(Need::write(Group::Devices))?;
    if body.owner.is_some() {
        principal.require(Need::write(Group::Users)).map_err(|_| {
            Problem::forbidden(
                "changing a device's owner needs a token that may also write users (users:write or write)",
            )
        })?;
    }
    let hostname = match &body.hostname {
        Some(h) => Some(
            Hostname::parse(h)
                .map_err(|e| Problem::invalid_argument(format!("field 'hostname': {e}")))?,
        ),
        None => None,
    };
    let tags = match &body.tags {
        Some(t) => Some(parse_tags("tags", t)?),
        None => None,
    };
    let rules = match &tags {
        Some(_) => Some(TagRules::load(&state, &principal.org_id).await?),
        None => None,
    };
    let wanted: Option<Vec<String>> = tags
        .as_ref()
        .map(|t| t.iter().map(|t| t.as_str().to_owned()).collect());
    if let Some(Some(owner)) = &body.owner {
        check_text("owner", owner, 1, 254)?;
    }
    let update = Update {
        hostname,
        tags,
        owner: body.owner.clone(),
    };
    let check = |org: OrgView<'_>, d: &Device| match (&rules, &wanted) {
        (Some(rules), Some(after)) => rules.check(org, &principal, &d.tags, after),
        _ => Ok(()),
    };
    mutate_checked(&state, &principal, &request_id, &id, check, |d| {
        decide_update(d, update.clone())
    })
    .await?;
    answer(&state, &principal, &id)
}

/// Remove a device: it leaves the network and its credential stops working at once.
///
/// Idempotent: repeating it for a device removed within the last 30 days answers 204 again;
/// ids that never existed in this organization, or that retention purged, answer 404.
#[utoipa::path(
    delete, path = "/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    responses((status = 204, description = "Removed (or removed before)")),
    security(("bearer" = []))
)]
async fn remove_device(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Devices))?;
    execute(&state, principal.command(&request_id), |org| {
        guard(&principal, org, &id)?;
        devices::remove(org, &id, "api")
    })
    .await?;
    state.heartbeats().forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Tags to add to a device.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTagsRequest {
    /// Added to the device's tags; ones it has already are ignored.
    #[schema(value_type = Vec<TagName>, max_items = 64, example = json!(["tag:production"]))]
    pub tags: Vec<String>,
}

/// Add tags to a device (recorded as `device.tagged`; nothing is recorded if it had them all).
#[utoipa::path(
    post, path = "/devices/{id}/tags", tag = "devices",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    request_body = AddTagsRequest,
    responses((status = 200, description = "The device after the change", body = DeviceView)),
    security(("bearer" = []))
)]
async fn add_tags(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(Object(body)): Json<Object<AddTagsRequest>>,
) -> Result<Json<DeviceView>, Problem> {
    principal.require(Need::write(Group::Devices))?;
    let tags: Vec<String> = parse_tags("tags", &body.tags)?
        .into_iter()
        .map(Tag::into_string)
        .collect();
    let rules = TagRules::load(&state, &principal.org_id).await?;
    let check = |org: OrgView<'_>, d: &Device| {
        let mut after = d.tags.clone();
        after.extend(tags.iter().filter(|t| !d.tags.contains(t)).cloned());
        rules.check(org, &principal, &d.tags, &after)
    };
    mutate_checked(&state, &principal, &request_id, &id, check, |d| {
        decide_tag(d, &tags).map(Event::from).into_iter().collect()
    })
    .await?;
    answer(&state, &principal, &id)
}

/// Remove a tag from a device.
///
/// The path segment is the full tag (`tag:production`, the colon may be percent-encoded);
/// `production` alone is accepted too. Idempotent: 204 also when the device does not carry it.
#[utoipa::path(
    delete, path = "/devices/{id}/tags/{tag}", tag = "devices",
    params(
        ("id" = String, Path, description = "Device id (`dev_…`)"),
        ("tag" = String, Path, description = "The tag, e.g. `tag:production`", pattern = "^(tag:)?[a-z0-9-]{1,63}$"),
    ),
    responses((status = 204, description = "The device does not carry the tag (any more)")),
    security(("bearer" = []))
)]
async fn remove_tag(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    principal.require(Need::write(Group::Devices))?;
    let tag = Tag::parse_lenient(&tag)
        .map_err(|e| Problem::invalid_argument(format!("path parameter `tag`: {e}")))?;
    let rules = TagRules::load(&state, &principal.org_id).await?;
    let check = |org: OrgView<'_>, d: &Device| {
        let after: Vec<String> = d
            .tags
            .iter()
            .filter(|t| *t != tag.as_str())
            .cloned()
            .collect();
        rules.check(org, &principal, &d.tags, &after)
    };
    mutate_checked(&state, &principal, &request_id, &id, check, |d| {
        decide_untag(d, &tag).map(Event::from).into_iter().collect()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Force-expire a device's authentication: its credential stops working and it must join
/// again with a valid pre-auth key (`quickztna up`).
#[utoipa::path(
    post, path = "/devices/{id}/expire-key", tag = "devices",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    responses((status = 200, description = "The device, with `key_expired` true", body = DeviceView)),
    security(("bearer" = []))
)]
async fn expire_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, Problem> {
    principal.require(Need::write(Group::Devices))?;
    mutate(&state, &principal, &request_id, &id, |d| {
        decide_expire_key(d).map(Event::from).into_iter().collect()
    })
    .await?;
    answer(&state, &principal, &id)
}
