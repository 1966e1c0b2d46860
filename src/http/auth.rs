//! Bearer-token authentication and per-organization rate limits.
//!
//! Every `/api/v1` resource route runs [`authenticate`]: it finds the token by the SHA-256 of the
//! presented secret, compares the stored hash in constant time, checks expiry and revocation,
//! charges the organization's rate-limit bucket and hands the handler a [`Principal`]. Public
//! routes run [`anonymous`], which charges a bucket per client address. Either way every response
//! carries the `X-RateLimit-*` headers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;

use super::problem::Problem;
use super::ratelimit::{Class, Decision};
use crate::bootstrap::{DEFAULT_READ_PER_MIN, DEFAULT_WRITE_PER_MIN};
use crate::domain::scope::{Need, Scopes};
use crate::domain::secret;
use crate::state::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub org_id: String,
    /// The token's description: recorded as the actor of every event the request causes.
    pub description: String,
    pub scopes: Scopes,
}

impl Principal {
    /// Refuses with 403 unless the token's scopes allow `need`.
    pub fn require(&self, need: Need) -> Result<(), Problem> {
        if self.scopes.allows(need) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this token lacks the scope this endpoint needs ({need}, or read/write)"
            )))
        }
    }
}

/// Authenticates the request and charges its organization's rate limit.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    if !wait_caught_up(&state).await {
        return Problem::unavailable("the server is still loading its read models", 1)
            .into_response();
    }
    let principal = match resolve(&state, &req) {
        Ok(p) => p,
        Err(problem) => {
            // Wrong tokens are charged to the client's address, so token guessing gets
            // throttled; a request with no credentials at all guesses nothing and gets its 401.
            let decision = if req.headers().contains_key(AUTHORIZATION) {
                charge_anonymous(&state, &req, class)
            } else {
                peek_anonymous(&state, &req, class)
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
    let per_min = {
        let models = state.models().load();
        match models.state.org(&principal.org_id).settings() {
            Some(org) => match class {
                Class::Read => org.read_per_min,
                Class::Write => org.write_per_min,
            },
            None => default_limit(class),
        }
    };
    let decision = state.limiter().check(&principal.org_id, class, per_min);
    if !decision.allowed {
        let mut resp = Problem::rate_limited(decision.retry_after).into_response();
        decision.apply_headers(resp.headers_mut());
        return resp;
    }
    req.extensions_mut().insert(principal);
    let mut resp = next.run(req).await;
    decision.apply_headers(resp.headers_mut());
    resp
}

/// Rate-limits unauthenticated routes (health, version, OpenAPI) per client address.
pub async fn anonymous(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let decision = charge_anonymous(&state, &req, Class::of(req.method()));
    let mut resp = if decision.allowed {
        next.run(req).await
    } else {
        Problem::rate_limited(decision.retry_after).into_response()
    };
    decision.apply_headers(resp.headers_mut());
    resp
}

pub(super) fn default_limit(class: Class) -> u32 {
    match class {
        Class::Read => DEFAULT_READ_PER_MIN,
        Class::Write => DEFAULT_WRITE_PER_MIN,
    }
}

fn charge_anonymous(state: &AppState, req: &Request, class: Class) -> Decision {
    state
        .limiter()
        .check(&anonymous_key(req), class, default_limit(class))
}

/// The anonymous bucket's state without charging it (for the rate-limit headers).
fn peek_anonymous(state: &AppState, req: &Request, class: Class) -> Decision {
    state
        .limiter()
        .peek(&anonymous_key(req), class, default_limit(class))
}

fn anonymous_key(req: &Request) -> String {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    format!("addr:{addr}")
}

pub(super) async fn wait_caught_up(state: &AppState) -> bool {
    if state.models().caught_up() {
        return true;
    }
    let head = state.log().head();
    state.models().wait_for(head, Duration::from_secs(5)).await
}

/// The SHA-256 of the secret in `Authorization: Bearer <secret>`, for looking it up by hash.
/// `credential` and `placeholder` name the secret in the 401s ("bearer token", "token").
pub(super) fn presented_secret_hash(
    req: &Request,
    credential: &str,
    placeholder: &str,
) -> Result<[u8; 32], Problem> {
    let header = req.headers().get(AUTHORIZATION).ok_or_else(|| {
        Problem::unauthorized(format!(
            "missing {credential}: send 'Authorization: Bearer <{placeholder}>'"
        ))
    })?;
    let value = header
        .to_str()
        .map_err(|_| Problem::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        Problem::unauthorized(format!(
            "the Authorization header must be 'Bearer <{placeholder}>'"
        ))
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Problem::unauthorized(
            "the Authorization scheme must be Bearer",
        ));
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 256 {
        return Err(Problem::unauthorized(format!(
            "the {credential} is invalid"
        )));
    }
    Ok(secret::hash(token))
}

fn resolve(state: &AppState, req: &Request) -> Result<Principal, Problem> {
    let hash = presented_secret_hash(req, "bearer token", "token")?;
    let models = state.models().load();
    let found = models
        .state
        .tokens
        .by_secret_hash(&hash)
        .filter(|t| secret::equal(&t.secret_hash, &hash))
        .ok_or_else(|| Problem::unauthorized("the bearer token is invalid"))?;
    if found.revoked_at.is_some() || models.state.tokens.revoked_ancestor(found).is_some() {
        return Err(Problem::unauthorized("the bearer token was revoked"));
    }
    if found.expires_at <= events::now_micros() {
        return Err(Problem::unauthorized("the bearer token has expired"));
    }
    let scopes = Scopes::parse(&found.scopes).map_err(Problem::internal)?;
    Ok(Principal {
        token_id: found.id.clone(),
        org_id: found.org_id.clone(),
        description: found.description.clone(),
        scopes,
    })
}
