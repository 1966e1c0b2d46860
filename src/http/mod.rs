//! The HTTP API: one router per resource, merged under `/api/v1`, inside the request frame.
//!
//! Layers, outermost first: request context (request id, tracing span, problem rendering) →
//! body deadline → body limit → authentication and rate limits (for `/api/v1` resources and
//! `/scim/v2`, see [`crate::scim`]) → the handler.

pub mod audit_log;
pub mod audit_verify;
pub mod auth;
pub mod cli_login;
pub mod commit;
pub mod deadline;
pub mod device_list;
pub mod devices;
pub mod event_streams;
pub mod event_view;
pub mod events_stream;
pub mod extract;
pub mod filter;
pub mod groups;
pub mod invitations;
pub mod keys;
pub mod list;
pub mod machine;
pub mod machine_login;
pub mod meta;
pub mod node_credential;
pub mod openapi;
pub mod page_cache;
pub mod pagination;
pub mod peer_view;
pub mod policy;
pub mod policy_check;
pub mod policy_history;
pub mod posture;
pub mod problem;
pub mod ratelimit;
pub mod request_id;
pub mod sso;
pub mod tag_owners;
pub mod tokens;
pub mod users;
pub mod webhook_deliveries;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Builds the whole application.
pub fn router(state: AppState) -> Router {
    let (router, api) = api_router(state.clone()).split_for_parts();
    let api = std::sync::Arc::new(openapi::finish(api));
    let body_limit = state.settings().body_limit;
    // Outside /api/v1 (the document's second address, unknown paths) callers are anonymous.
    let outside = meta::openapi_routes(api)
        .merge(crate::sso::web::routes())
        .fallback(request_id::not_found_fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::anonymous,
        ));
    Router::new()
        .nest("/api/v1", router)
        .nest(
            crate::scim::error::SCIM_PREFIX,
            crate::scim::router(state.clone()),
        )
        .merge(outside)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            deadline::body_deadline,
        ))
        .layer(middleware::from_fn(request_id::request_context))
        .with_state(state)
}

/// What a connection past the server's cap gets, whatever it asks: `503` with `Retry-After`.
pub fn over_capacity() -> Router {
    Router::new()
        .fallback(|| async {
            problem::Problem::unavailable(
                "the server is at its connection limit; retry shortly",
                OVER_CAPACITY_RETRY_SECS,
            )
        })
        .layer(middleware::from_fn(request_id::request_context))
}

/// When a client refused at the connection cap should come back.
const OVER_CAPACITY_RETRY_SECS: u64 = 5;

/// Every `/api/v1` route, with its OpenAPI description.
pub fn api_router(state: AppState) -> OpenApiRouter<AppState> {
    let protected = OpenApiRouter::new()
        .merge(tokens::routes())
        .merge(keys::routes())
        .merge(devices::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(audit_log::routes())
        .merge(audit_verify::routes())
        .merge(events_stream::routes())
        .merge(sso::routes())
        .merge(policy::routes())
        .merge(posture::routes())
        .merge(webhooks::routes())
        .merge(webhook_deliveries::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let public = meta::routes().layer(middleware::from_fn_with_state(
        state.clone(),
        auth::anonymous,
    ));
    let health =
        meta::health_routes().layer(middleware::from_fn_with_state(state.clone(), auth::health));
    // The device agent's routes bring their own authentication (pre-auth key, node credential).
    OpenApiRouter::with_openapi(openapi::base())
        .merge(protected)
        .merge(machine::routes(state.clone()))
        .merge(machine_login::routes(state.clone()))
        .merge(node_credential::routes(state))
        .merge(public)
        .merge(health)
}
