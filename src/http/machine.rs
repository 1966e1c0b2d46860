//! `/machine`: the device agent's API (what `quickztna up` talks to).
//!
//! - `POST /machine/register` needs no bearer: the pre-auth key in the body is the credential.
//!   It answers the device and its node credential (`qzn_…`, shown once, stored as SHA-256).
//!   A registration whose key would admit a device is charged to the organization's
//!   registrations budget (by plan, apart from the API's writes); any other is charged to the
//!   client's address (a bucket of its own, so a misconfigured fleet retrying with a dead key
//!   does not lock the address out of the rest of the API), so key guessing is throttled.
//! - `POST /machine/heartbeat` and `GET /machine/netmap` need the node credential, run
//!   [`node_auth`] and are limited per device (so does `POST /machine/rotate`, in
//!   [`super::node_credential`]). Node credentials work nowhere else, and API tokens do not
//!   work here. Heartbeats are not events (see [`crate::heartbeats`]).
//!
//! Registrations of one organization are decided one at a time (each takes the next address);
//! the decision also expects the organization's address allocator and the key's stream
//! unchanged, so a single-use key admits one device even against other writers.

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use events::{Actor, ActorKind};
use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{client_bucket, default_limit, presented_secret_hash, wait_caught_up};
use super::commit::problem;
use super::devices::{DeviceView, Peer, current_view};
use super::extract::{Json, Object};
use super::problem::{Problem, ProblemBody};
use super::ratelimit::Class;
use super::request_id::RequestId;
use crate::bootstrap::register_per_min;
use crate::domain::devices::{
    self, Hostname, KeyRefusal, Register, RegisterRefusal, check_key, check_text, credential_valid,
};
use crate::domain::public_key::PublicKey;
use crate::domain::secret;
use crate::execute::{Command, execute};
use crate::heartbeats::Report;
use crate::mint;
use crate::state::AppState;

/// How often the agent should send a heartbeat.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 30;
/// Requests per minute (per class) one device may make with its node credential.
pub const NODE_PER_MIN: u32 = 120;

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    let node = OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(netmap))
        .layer(middleware::from_fn_with_state(state.clone(), node_auth));
    let register = OpenApiRouter::new()
        .routes(routes!(register))
        .layer(middleware::from_fn_with_state(state, register_limit));
    register.merge(node)
}

/// The device a node credential belongs to, for the handlers behind [`node_auth`].
#[derive(Debug, Clone)]
pub struct Node {
    pub device_id: String,
    pub org_id: String,
}

/// A device asking to join.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The pre-auth key (`qzk_…`).
    #[schema(min_length = 1, max_length = 256, example = "qzk_…")]
    pub auth_key: String,
    /// 1–63 of letters, digits and `-`; stored lower-cased.
    #[schema(
        pattern = "^[A-Za-z0-9-]{1,63}$",
        min_length = 1,
        max_length = 63,
        example = "web-01"
    )]
    pub hostname: String,
    /// The operating system: `linux`, `macos`, `windows`, … (1–32 characters).
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$",
        example = "linux"
    )]
    pub os: String,
    /// The OS version (0–64 characters).
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "6.1.0"
    )]
    pub os_version: String,
    /// The device's public (WireGuard) key: 32 bytes in base64, as `wg pubkey` prints. Unique
    /// among the organization's devices that can still authenticate.
    #[schema(
        min_length = 44,
        max_length = 44,
        pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$",
        example = "mGqY6tY3Xr2p0nQm1hJ2yX4i0bXyq1cVjU3X9QqgV0A="
    )]
    pub public_key: String,
}

/// A device that joined, and its node credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    pub device: DeviceView,
    /// The node credential (`qzn_…`) for heartbeats and the netmap. Shown exactly once.
    pub node_credential: String,
}

/// The only field of a registration the rate limiter reads.
#[derive(Deserialize)]
struct KeyOnly {
    auth_key: String,
}

/// Charges a registration whose key would admit a device to its organization's registrations
/// budget; anything else (an unknown, revoked, expired or used-up key, a body without one) to
/// the client's address. The budget is apart from the API's writes, so neither a fleet rollout
/// nor a key that leaked after its revocation (the seed's onboarding pattern puts it in every
/// server's user-data) can starve the admins. The body is buffered, read and handed on.
async fn register_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    if !wait_caught_up(&state).await {
        return Problem::unavailable("the server is still loading its read models", 1)
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, state.settings().body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::payload_too_large(
                "the request body is larger than the server accepts",
            )
            .into_response();
        }
    };
    let now = events::now_micros();
    let budget = serde_json::from_slice::<KeyOnly>(&bytes)
        .ok()
        .filter(|k| k.auth_key.len() <= 256)
        .and_then(|k| {
            let hash = secret::hash(&k.auth_key);
            let models = state.models().load();
            let key = models
                .state
                .keys
                .by_secret_hash(&hash)
                .filter(|key| secret::equal(&key.secret_hash, &hash))?;
            check_key(key, now).ok()?;
            let org = models.state.orgs.get(&key.org_id)?;
            Some((format!("register:{}", org.id), register_per_min(org)))
        });
    let req = Request::from_parts(parts, Body::from(bytes));
    let decision = match budget {
        Some((bucket, per_min)) => state.limiter().check(&bucket, class, per_min),
        None => state.limiter().check(
            &client_bucket(&state, &req, "register"),
            class,
            default_limit(class),
        ),
    };
    let mut resp = if decision.allowed {
        next.run(req).await
    } else {
        Problem::rate_limited(decision.retry_after).into_response()
    };
    decision.apply_headers(resp.headers_mut());
    resp
}

fn key_problem(why: KeyRefusal) -> Problem {
    match why {
        KeyRefusal::Revoked => Problem::unauthorized("pre-auth key was revoked"),
        KeyRefusal::Expired => Problem::unauthorized("pre-auth key has expired"),
        KeyRefusal::Used => Problem::forbidden("pre-auth key was already used"),
        KeyRefusal::Exhausted => Problem::forbidden("pre-auth key is exhausted"),
    }
}

/// Join the network with a pre-auth key.
///
/// Needs no bearer token: the pre-auth key is the credential. The device gets the key's tags,
/// owner and ephemeral flag, the organization's next overlay addresses and a node credential,
/// which is shown only in this response.
#[utoipa::path(
    post, path = "/machine/register", tag = "machine",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The device joined", body = RegisterResponse),
        (status = 401, description = "The pre-auth key is invalid, revoked or expired", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The pre-auth key was already used (single use) or is exhausted (max uses)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Another device of the organization that can still authenticate holds this public key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(Object(body)): Json<Object<RegisterRequest>>,
) -> Result<Response, Problem> {
    let hostname = Hostname::normalize(&body.hostname)
        .map_err(|e| Problem::invalid_argument(format!("field 'hostname': {e}")))?;
    check_text("os", &body.os, 1, 32)?;
    check_text("os_version", &body.os_version, 0, 64)?;
    let public_key = PublicKey::parse(&body.public_key).map_err(Problem::invalid_argument)?;
    let invalid = || Problem::unauthorized("pre-auth key is invalid");
    if body.auth_key.is_empty() || body.auth_key.len() > 256 {
        return Err(invalid());
    }
    let hash = secret::hash(&body.auth_key);
    let (key_id, org_id, key_tags) = {
        let models = state.models().load();
        let key = models
            .state
            .keys
            .by_secret_hash(&hash)
            .filter(|k| secret::equal(&k.secret_hash, &hash))
            .ok_or_else(invalid)?;
        (key.id.clone(), key.org_id.clone(), key.tags.clone())
    };
    // A key made before the policy listed its tags' owners must not keep minting devices with
    // tags the policy no longer lists.
    if !key_tags.is_empty() {
        let rules = super::tag_owners::TagRules::load(&state, &org_id).await?;
        if let Some(tag) = key_tags.iter().find(|t| !rules.listed(t)) {
            return Err(Problem::forbidden(format!(
                "this pre-auth key tags devices '{tag}', which the policy's tag_owners no longer list; create a key with listed tags"
            )));
        }
    }
    let device_id = mint::id("dev");
    let credential = mint::secret("qzn_");
    let cmd = Register {
        device_id: device_id.clone(),
        hostname: hostname.clone(),
        os: body.os.clone(),
        os_version: body.os_version.clone(),
        public_key,
        credential_hash: credential.hash,
    };

    super::commit::ensure_writable(&state)?;
    let lock = state.registration_lock(&org_id);
    let _one_at_a_time = lock.lock().await;
    let actor = Actor {
        kind: ActorKind::Device,
        id: device_id.clone(),
        description: hostname.as_str().to_owned(),
    };
    execute(
        &state,
        Command::new(org_id.clone(), actor, request_id.0.clone()),
        |org| devices::register(org, &key_id, cmd.clone(), events::now_micros()),
    )
    .await
    .map_err(|e| {
        problem(e, |why| match why {
            RegisterRefusal::Key(k) => key_problem(k),
            RegisterRefusal::AddressesExhausted => {
                Problem::unprocessable("the organization has used up its overlay address space")
            }
            RegisterRefusal::DeviceCap { plan, cap } => Problem::plan_required(format!(
                "the organization has {cap} devices, the most its {} plan allows; remove \
                 devices before registering more",
                plan.as_str()
            )),
            RegisterRefusal::PublicKeyInUse { device_id } => Problem::conflict(format!(
                "public key already in use by device {device_id}; each device needs its own \
                 key (remove that device first, or expire its key)"
            )),
            RegisterRefusal::OwnerGone { why } => Problem::forbidden(format!(
                "{why}: this pre-auth key admits nobody (revoke it, and create one for a \
                 current user)"
            )),
        })
    })?;
    let models = state.models().load();
    let device = models
        .state
        .org(&org_id)
        .device(&device_id)
        .ok_or_else(|| Problem::internal("registered device missing from the read model"))?;
    let body = RegisterResponse {
        device: current_view(&state, device),
        node_credential: credential.value,
    };
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The problem for a credential that once worked but no longer does, saying why (the caller
/// proved it holds the credential, so the reason is its own business).
pub fn reauthentication_required(why: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "reauthentication_required", why).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="quickztna-node", error="invalid_token""#),
    )
}

fn resolve_node(state: &AppState, req: &Request) -> Result<Node, Problem> {
    let hash = presented_secret_hash(req.headers(), "node credential", "node credential")?;
    let models = state.models().load();
    let device = models
        .state
        .devices
        .by_credential_hash(&hash)
        .filter(|d| secret::equal(&d.credential_hash, &hash))
        .ok_or_else(|| {
            Problem::unauthorized(
                "the node credential is invalid (API tokens do not work on /machine endpoints)",
            )
        })?;
    if let Err(why) = credential_valid(device, events::now_micros()) {
        tracing::info!(device_id = %device.id, why, "node credential refused");
        return Err(reauthentication_required(why));
    }
    let org = models.state.org(&device.org_id);
    if let Some(why) = super::node_credential::owner_refusal(org, device) {
        tracing::info!(device_id = %device.id, why, "node credential refused");
        return Err(reauthentication_required(why));
    }
    Ok(Node {
        device_id: device.id.clone(),
        org_id: device.org_id.clone(),
    })
}

/// Authenticates a node credential and charges the device's own rate limit.
pub async fn node_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    if !wait_caught_up(&state).await {
        return Problem::unavailable("the server is still loading its read models", 1)
            .into_response();
    }
    let node = match resolve_node(&state, &req) {
        Ok(n) => n,
        Err(problem) => {
            let bucket = client_bucket(&state, &req, "node");
            let decision = if req.headers().contains_key(AUTHORIZATION) {
                state.limiter().check(&bucket, class, default_limit(class))
            } else {
                state.limiter().peek(&bucket, class, default_limit(class))
            };
            let mut resp = if decision.allowed {
                problem.into_response()
            } else {
                Problem::rate_limited(decision.retry_after).into_response()
            };
            decision.apply_headers(resp.headers_mut());
            return resp;
        }
    };
    let decision =
        state
            .limiter()
            .check(&format!("device:{}", node.device_id), class, NODE_PER_MIN);
    if !decision.allowed {
        let mut resp = Problem::rate_limited(decision.retry_after).into_response();
        decision.apply_headers(resp.headers_mut());
        return resp;
    }
    req.extensions_mut().insert(node);
    let mut resp = next.run(req).await;
    decision.apply_headers(resp.headers_mut());
    resp
}

/// Posture signals a device reports about itself.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostureReport {
    pub disk_encrypted: Option<bool>,
    /// Whether a host firewall is active.
    pub firewall: Option<bool>,
    /// Whether the screen locks itself when idle.
    pub screen_lock: Option<bool>,
}

/// A heartbeat: the device is alive, and this is its state. Fields left out keep their last
/// reported value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The OS version now (0–64 characters).
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub os_version: Option<String>,
    /// The agent's version (0–64 characters).
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "0.1.0"
    )]
    pub client_version: Option<String>,
    #[serde(default, deserialize_with = "super::extract::optional_object")]
    pub posture: Option<PostureReport>,
}

/// What the agent needs to know after a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub device_id: String,
    /// The organization sequence number of the last change affecting this device's peers:
    /// fetch the netmap again when it moves.
    pub peer_map_version: u64,
    /// When the device must re-authenticate (RFC 3339), `null` if never.
    pub key_expires_at: Option<String>,
    /// Seconds until the next heartbeat is due.
    pub heartbeat_interval_secs: u64,
}

/// Report that the device is alive, with its posture signals.
#[utoipa::path(
    post, path = "/machine/heartbeat", tag = "machine",
    request_body = HeartbeatRequest,
    responses((status = 200, description = "Recorded", body = HeartbeatResponse)),
    security(("node" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    Extension(node): Extension<Node>,
    Json(Object(body)): Json<Object<HeartbeatRequest>>,
) -> Result<Json<HeartbeatResponse>, Problem> {
    if let Some(v) = &body.os_version {
        check_text("os_version", v, 0, 64)?;
    }
    if let Some(v) = &body.client_version {
        check_text("client_version", v, 0, 64)?;
    }
    let posture = body.posture.unwrap_or_default();
    let now = events::now_micros();
    state.heartbeats().record(
        &node.org_id,
        &node.device_id,
        now,
        Report {
            os_version: body.os_version,
            client_version: body.client_version,
            disk_encrypted: posture.disk_encrypted,
            firewall: posture.firewall,
            screen_lock: posture.screen_lock,
        },
    );
    let models = state.models().load();
    let device = models
        .state
        .org(&node.org_id)
        .device(&node.device_id)
        .ok_or_else(|| reauthentication_required(devices::REMOVED))?;
    Ok(Json(HeartbeatResponse {
        device_id: device.id.clone(),
        peer_map_version: state.peers().version(&node.org_id, &device.id),
        key_expires_at: device.key_expires_at.map(events::format_time),
        heartbeat_interval_secs: HEARTBEAT_INTERVAL_SECS,
    }))
}

/// The device's network map.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetMap {
    /// The device itself.
    pub device: DeviceView,
    /// The devices it may reach under the current policy and posture (default deny: none
    /// until a policy allows some).
    pub peers: Vec<Peer>,
    /// See the heartbeat's `peer_map_version`.
    pub peer_map_version: u64,
}

/// The peers this device may reach.
#[utoipa::path(
    get, path = "/machine/netmap", tag = "machine",
    responses((status = 200, description = "The device's network map", body = NetMap)),
    security(("node" = []))
)]
async fn netmap(
    State(state): State<AppState>,
    Extension(node): Extension<Node>,
) -> Result<Json<NetMap>, Problem> {
    let models = state.models().load();
    let device = models
        .state
        .org(&node.org_id)
        .live_device(&node.device_id)
        .ok_or_else(|| reauthentication_required(devices::REMOVED))?;
    let device = current_view(&state, device);
    drop(models);
    let (peers, version) = super::peer_view::peers_of(&state, &node.org_id, &node.device_id).await;
    Ok(Json(NetMap {
        device,
        peers,
        peer_map_version: version,
    }))
}
