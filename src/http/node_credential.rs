//! `POST /machine/rotate`: a device exchanges its node credential for a new one.
//!
//! Authenticated with the current credential (see [`super::machine::node_auth`]). The new
//! credential is generated here, at the edge, shown once in the answer, and only its SHA-256
//! is recorded (`device.credential_rotated`); the old credential stops working with that
//! event. The agent calls it on a schedule (`quickztna up --rotate-credential-every`).
//!
//! [`owner_refusal`] is the check every node credential passes besides its own validity: a
//! device whose owner (a user of the directory) is deactivated gets `reauthentication_required`
//! until the owner is reactivated, or signs in again.

use axum::Extension;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use events::{Actor, ActorKind};
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::commit::problem;
use super::extract::Json;
use super::machine::{Node, node_auth, reauthentication_required};
use super::problem::{Problem, ProblemBody};
use super::request_id::RequestId;
use crate::domain::devices;
use crate::execute::{Command, execute};
use crate::mint;
use crate::state::AppState;

/// Why a device may not authenticate because of its owner: they are deactivated (by SCIM or
/// the users API). Devices whose owner is not in the directory (a pre-auth key's free-text
/// owner) are not affected.
pub fn owner_refusal(
    org: projections::OrgView<'_>,
    device: &projections::devices::Device,
) -> Option<&'static str> {
    match org.owner_of(device) {
        Some(user) if !user.active => Some("the device's owner was deactivated"),
        _ => None,
    }
}

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate))
        .layer(middleware::from_fn_with_state(state, node_auth))
}

/// A device's new node credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedCredential {
    pub device_id: String,
    /// The new node credential (`qzn_…`). Shown exactly once; the one this request was made
    /// with no longer works.
    pub node_credential: String,
}

/// Exchange the node credential for a new one.
///
/// Authenticated with the current node credential, which stops working at once: use the
/// returned one from the next request on. Answers `reauthentication_required` once the
/// device was removed or its key expired, as the other machine endpoints do.
#[utoipa::path(
    post, path = "/machine/rotate", tag = "machine",
    responses(
        (status = 200, description = "The new credential; the old one no longer works", body = RotatedCredential),
        (status = 401, description = "The node credential is invalid, or the device must re-authenticate", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("node" = []))
)]
async fn rotate(
    State(state): State<AppState>,
    Extension(node): Extension<Node>,
    Extension(request_id): Extension<RequestId>,
) -> Result<Response, Problem> {
    let hostname = {
        let models = state.models().load();
        models
            .state
            .org(&node.org_id)
            .live_device(&node.device_id)
            .map(|d| d.hostname.clone())
            .ok_or_else(|| reauthentication_required(devices::REMOVED))?
    };
    let credential = mint::secret("qzn_");
    let actor = Actor {
        kind: ActorKind::Device,
        id: node.device_id.clone(),
        description: hostname,
    };
    let device_id = node.device_id.clone();
    execute(
        &state,
        Command::new(node.org_id.clone(), actor, request_id.0.clone()),
        |org| devices::rotate_credential(org, &device_id, credential.hash, events::now_micros()),
    )
    .await
    // Removed or expired since it authenticated: what the credential itself would answer.
    .map_err(|e| {
        problem(e, |_| {
            reauthentication_required("the device was removed or its key expired")
        })
    })?;
    let body = RotatedCredential {
        device_id: node.device_id,
        node_credential: credential.value,
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
