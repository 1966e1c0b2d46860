//! Bearer-token authentication and per-organization rate limits.
//!
//! Every `/api/v1` resource route runs [`authenticate`]: it finds the token by the SHA-256 of the
//! presented secret, compares the stored hash in constant time, checks expiry and revocation
//! and hands the handler a [`Principal`]. The request is charged to the token's share of its
//! organization's quota when [`Principal::require`] passes the scope check, so a 403 costs
//! nothing and a token that may not write cannot spend the organization's writes. Public
//! routes run [`anonymous`] (or [`health`] for `/health`), which charge a bucket per client
//! address. Either way every response carries the `X-RateLimit-*` headers.
//!
//! Client-address buckets are kept apart by purpose (`health`, `public`, failed `auth`, and the
//! device API's own), so that a burst of bad tokens cannot make `/health` answer 429 to a load
//! balancer behind the same proxy.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::AUTHORIZATION;

use super::problem::Problem;
use super::ratelimit::{Class, Decision, client_key};
use crate::bootstrap::{DEFAULT_READ_PER_MIN, DEFAULT_WRITE_PER_MIN};
use crate::domain::directory::Role;
use crate::domain::scope::{Need, Scopes};
use crate::domain::secret;
use crate::state::AppState;
use projections::OrgView;
use projections::devices::Device;

/// The header reverse proxies append the client's address to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub org_id: String,
    /// The token's description: recorded as the actor of every event the request causes.
    pub description: String,
    pub scopes: Scopes,
    /// Set when the token is a person's sign-in session: who, and the role their scopes come
    /// from.
    pub person: Option<Person>,
    /// The request's rate-limit charge, made by its first scope check that passes.
    charge: Arc<Charge>,
}

/// The person behind a sign-in session.
#[derive(Debug, Clone)]
pub struct Person {
    pub user_id: String,
    pub role: Role,
}

impl Principal {
    /// Refuses with 403 unless the token's scopes allow `need`; then charges the request to
    /// the token's share of its organization's quota (once per request) and refuses with 429
    /// when that is spent. A request refused for its scope never costs anything.
    pub fn require(&self, need: Need) -> Result<(), Problem> {
        if let Some(p) = &self.person
            && !p.role.scopes().allows(need)
        {
            return Err(Problem::forbidden(format!(
                "a person with the role '{}' may not do this ({need})",
                p.role
            )));
        }
        if !self.scopes.allows(need) {
            return Err(Problem::forbidden(format!(
                "this token lacks the scope this endpoint needs ({need}, or read/write)"
            )));
        }
        self.charge.take()
    }

    /// Whether the caller may see and manage `device`: everybody but a person with the
    /// `member` role, who manages only their own devices. Another member's device answers
    /// 404, like another organization's.
    pub fn may_manage(&self, org: OrgView<'_>, device: &Device) -> bool {
        match &self.person {
            Some(p) if p.role == Role::Member => {
                org.owner_of(device).is_some_and(|u| u.id == p.user_id)
            }
            _ => true,
        }
    }

    /// The user whose devices alone the caller may list (a `member`'s session), if any.
    pub fn only_devices_of(&self) -> Option<&str> {
        self.person
            .as_ref()
            .filter(|p| p.role == Role::Member)
            .map(|p| p.user_id.as_str())
    }
}

/// Authenticates the request and sees that it is charged to its token's share of the
/// organization's quota: at the handler's scope check, or after the handler for requests that
/// never reach one (a malformed body, a wrong method); never for a 403.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    if !wait_caught_up(&state).await {
        return Problem::unavailable("the server is still loading its read models", 1)
            .into_response();
    }
    let caller = match resolve(&state, &req) {
        Ok(c) => c,
        Err(problem) => {
            // Wrong tokens are charged to the client's address, so token guessing gets
            // throttled; a request with no credentials at all guesses nothing and gets its 401.
            let bucket = client_bucket(&state, &req, "auth");
            let limit = default_limit(class);
            let decision = if req.headers().contains_key(AUTHORIZATION) {
                state.limiter().check(&bucket, class, limit)
            } else {
                state.limiter().peek(&bucket, class, limit)
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
        match models.state.org(&caller.org_id).settings() {
            Some(org) => match class {
                Class::Read => org.read_per_min,
                Class::Write => org.write_per_min,
            },
            None => default_limit(class),
        }
    };
    let charge = Arc::new(Charge {
        state: state.clone(),
        org_id: caller.org_id.clone(),
        token_id: caller.token_id.clone(),
        class,
        per_min,
        made: Mutex::new(None),
    });
    req.extensions_mut().insert(Principal {
        token_id: caller.token_id,
        org_id: caller.org_id,
        description: caller.description,
        scopes: caller.scopes,
        person: caller.person,
        charge: charge.clone(),
    });
    let resp = next.run(req).await;
    let (decision, refuse) = charge.settle(resp.status());
    let mut resp = if refuse {
        decision.problem().into_response()
    } else {
        resp
    };
    decision.apply_headers(resp.headers_mut());
    resp
}

/// One request's charge to its token's share of the organization's quota (see
/// [`super::ratelimit`]): made at most once, at the first scope check that passes.
struct Charge {
    state: AppState,
    org_id: String,
    token_id: String,
    class: Class,
    per_min: u32,
    /// The charge once made.
    made: Mutex<Option<Decision>>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge")
            .field("class", &self.class)
            .field("per_min", &self.per_min)
            .field("made", &self.made)
            .finish_non_exhaustive()
    }
}

impl Charge {
    fn take(&self) -> Result<(), Problem> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        let decision = *made.get_or_insert_with(|| self.check());
        if decision.allowed {
            Ok(())
        } else {
            Err(decision.problem())
        }
    }

    /// Settles the charge once the handler answered `status`: what the rate-limit headers
    /// report, and whether the answer must become a 429. A 403 costs nothing (a charge made
    /// before a later scope check refused is given back); a request that never reached a
    /// scope check is charged now, and refused if that fails.
    fn settle(&self, status: StatusCode) -> (Decision, bool) {
        let made = *self.made.lock().unwrap_or_else(PoisonError::into_inner);
        let limiter = self.state.limiter();
        let peek = || limiter.peek_token(&self.org_id, &self.token_id, self.class, self.per_min);
        match made {
            Some(d) if d.allowed && status == StatusCode::FORBIDDEN => {
                limiter.refund_token(&self.org_id, &self.token_id, self.class);
                (peek(), false)
            }
            Some(d) => (d, false),
            None if status == StatusCode::FORBIDDEN => (peek(), false),
            None => {
                let d = self.check();
                (d, !d.allowed)
            }
        }
    }

    fn check(&self) -> Decision {
        self.state
            .limiter()
            .check_token(&self.org_id, &self.token_id, self.class, self.per_min)
    }
}

/// Rate-limits unauthenticated routes (version, OpenAPI, unknown paths) per client address.
pub async fn anonymous(State(state): State<AppState>, req: Request, next: Next) -> Response {
    per_client(&state, req, next, "public").await
}

/// Rate-limits `/health` per client address, in a bucket nothing else draws on.
pub async fn health(State(state): State<AppState>, req: Request, next: Next) -> Response {
    per_client(&state, req, next, "health").await
}

/// The address (IPv6: the /64) an anonymous request came from, for handlers that bound what
/// one client may hold (sign-ins in progress).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

async fn per_client(state: &AppState, mut req: Request, next: Next, purpose: &str) -> Response {
    let class = Class::of(req.method());
    let bucket = client_bucket(state, &req, purpose);
    let address = ClientAddress(client_bucket(state, &req, "client"));
    req.extensions_mut().insert(address);
    let decision = state.limiter().check(&bucket, class, default_limit(class));
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

/// The name of the client's bucket for `purpose`: its address (IPv6 by /64), or behind a
/// trusted proxy the address the proxy forwarded (see [`super::ratelimit::TrustedProxies`]).
pub(super) fn client_bucket(state: &AppState, req: &Request, purpose: &str) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = match peer {
        Some(peer) => {
            // A value that is not text ends the walk like any other unreadable entry.
            let forwarded = req
                .headers()
                .get_all(X_FORWARDED_FOR)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"));
            client_key(state.settings().trusted_proxies.client(peer, forwarded))
        }
        None => "unknown".into(),
    };
    format!("{purpose}-addr:{client}")
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
    headers: &http::HeaderMap,
    credential: &str,
    placeholder: &str,
) -> Result<[u8; 32], Problem> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
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

/// Who a valid bearer token is.
struct Caller {
    token_id: String,
    org_id: String,
    description: String,
    scopes: Scopes,
    person: Option<Person>,
}

fn resolve(state: &AppState, req: &Request) -> Result<Caller, Problem> {
    let hash = presented_secret_hash(req.headers(), "bearer token", "token")?;
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
    // A sign-in session (and every token minted from one) follows its person: gone or
    // deactivated, it stops working, and it may do only what their role allows now.
    let scopes = Scopes::parse(&found.scopes).map_err(Problem::internal)?;
    let person = match &found.user_id {
        None => None,
        Some(user_id) => {
            let user = models
                .state
                .org(&found.org_id)
                .user(user_id)
                .filter(|u| u.active)
                .ok_or_else(|| {
                    Problem::unauthorized(
                        "the person this sign-in session belongs to was removed or deactivated",
                    )
                })?;
            let role = Role::parse(&user.role).map_err(|_| Problem::internal("unknown role"))?;
            Some(Person {
                user_id: user_id.clone(),
                role,
            })
        }
    };
    Ok(Caller {
        token_id: found.id.clone(),
        org_id: found.org_id.clone(),
        description: found.description.clone(),
        scopes,
        person,
    })
}
