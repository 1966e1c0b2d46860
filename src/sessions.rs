//! Sign-in sessions: the API token a person gets when they sign in through single sign-on
//! (`quickztna login --sso`). It acts for them: it stops working when they are deactivated
//! or removed, and it may do only what their role allows at the time of each request
//! (`admin` everything, `auditor` read, `member` their own devices).

use events::{Actor, ActorKind};

use crate::domain::Decision;
use crate::domain::directory::Role;
use crate::domain::tokens::{self, CreateToken, Issuer, TokenRejection};
use crate::execute::{Command, ExecuteError, execute};
use crate::mint;
use crate::state::AppState;

/// How long a session lasts before its person signs in again.
pub const SESSION_LIFETIME_MICROS: i64 = 7 * 86_400 * 1_000_000;

/// A new session: shown once.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_id: String,
    /// `qz_…`, the bearer token.
    pub token: String,
    pub expires_at: i64,
    pub role: Role,
}

/// Issues a session for `user_id` of `org_id`, whose role is `role`; the person is the
/// event's actor.
pub async fn issue(
    state: &AppState,
    org_id: &str,
    user_id: &str,
    email: &str,
    role: Role,
    request_id: &str,
) -> Result<Session, ExecuteError<TokenRejection>> {
    let token_id = mint::id("tok");
    let secret = mint::secret("qz_");
    let now = events::now_micros();
    let expires_at = now + SESSION_LIFETIME_MICROS;
    let cmd = CreateToken {
        token_id: token_id.clone(),
        prefix: secret.display_prefix.clone(),
        secret_hash: secret.hash,
        scopes: role.scopes(),
        description: format!("sign-in session of {email}"),
        expires_at,
        expires_by_default: false,
    };
    let actor = Actor {
        kind: ActorKind::User,
        id: user_id.to_owned(),
        description: email.to_owned(),
    };
    execute(
        state,
        Command::new(org_id, actor, request_id),
        |org| -> Result<Decision, TokenRejection> {
            tokens::create(org, Issuer::Session { user_id }, cmd.clone(), now)
        },
    )
    .await?;
    Ok(Session {
        token_id,
        token: secret.value,
        expires_at,
        role,
    })
}
