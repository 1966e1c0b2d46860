//! Decisions about API tokens.

use events::Expected;
use events::event::{TokenCreated, TokenRevoked};
use events::stream::Stream;
use projections::OrgView;

use super::Rejection;
use super::decision::Decision;
use super::expiry::{Expiry, Lifetime};
use super::scope::Scopes;

/// A request to issue a token, with its id and secret hash already generated.
#[derive(Debug, Clone)]
pub struct CreateToken {
    pub token_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Scopes,
    pub description: String,
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

pub fn validate_description(description: &str) -> Result<(), Rejection> {
    super::text::check_text("description", description, 1, 200)
}

/// Issues a token no more powerful than the caller's, expiring in 1 hour to 12 months.
pub fn decide_create(
    caller: &Scopes,
    cmd: CreateToken,
    now: i64,
) -> Result<TokenCreated, Rejection> {
    validate_description(&cmd.description)?;
    if !caller.covers(&cmd.scopes) {
        return Err(Rejection::Forbidden(format!(
            "a token cannot grant scopes it does not hold: requested {}, caller holds {}",
            cmd.scopes.to_strings().join(" "),
            Scopes(caller.0.clone()).to_strings().join(" ")
        )));
    }
    let expires_at = Expiry::at(Lifetime::Token, cmd.expires_at, now)?;
    Ok(TokenCreated {
        token_id: cmd.token_id,
        prefix: cmd.prefix,
        secret_hash: cmd.secret_hash,
        scopes: cmd.scopes.to_strings(),
        description: cmd.description,
        expires_at: expires_at.micros(),
    })
}

/// Revokes a token of the organization; `Ok(None)` when it already was (revocation is
/// idempotent). Another organization's token is not in the view, so it is not found either.
pub fn decide_revoke(org: OrgView<'_>, token_id: &str) -> Result<Option<TokenRevoked>, Rejection> {
    let token = org
        .token(token_id)
        .ok_or_else(|| Rejection::NotFound(format!("no token '{token_id}'")))?;
    Ok(token.revoked_at.is_none().then(|| TokenRevoked {
        token_id: token_id.to_owned(),
    }))
}

/// Issuing a token: a new stream, so two requests can never both create the same one.
pub fn create(caller: &Scopes, cmd: CreateToken, now: i64) -> Result<Decision, Rejection> {
    let stream = Stream::token(&cmd.token_id);
    let event = decide_create(caller, cmd, now)?;
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(stream, event))
}

/// Revoking a token of the organization; nothing to append when it already was.
pub fn revoke(org: OrgView<'_>, token_id: &str) -> Result<Decision, Rejection> {
    let Some(event) = decide_revoke(org, token_id)? else {
        return Ok(Decision::none());
    };
    let stream = Stream::token(token_id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::Exists)
        .event(stream, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1_000_000;

    fn cmd(scopes: &[&str], expires_at: i64) -> CreateToken {
        CreateToken {
            token_id: "tok_x".into(),
            prefix: "qz_abcdef".into(),
            secret_hash: [7; 32],
            scopes: Scopes::parse(scopes).unwrap(),
            description: "ci".into(),
            expires_at,
        }
    }

    #[test]
    fn given_a_write_token_when_it_creates_a_read_token_then_token_created() {
        let caller = Scopes::parse(&["write"]).unwrap();
        let e = decide_create(&caller, cmd(&["read"], 2 * HOUR), 0).unwrap();
        assert_eq!(e.scopes, vec!["read"]);
        assert_eq!(e.expires_at, 2 * HOUR);
    }

    #[test]
    fn expiry_outside_one_hour_to_twelve_months_is_rejected() {
        let caller = Scopes::parse(&["write"]).unwrap();
        let now = 1_700_000_000 * 1_000_000;
        assert!(decide_create(&caller, cmd(&["read"], now + HOUR / 2), now).is_err());
        assert!(decide_create(&caller, cmd(&["read"], now + 367 * 24 * HOUR), now).is_err());
        assert!(decide_create(&caller, cmd(&["read"], now + HOUR), now).is_ok());
        assert!(decide_create(&caller, cmd(&["read"], now + 365 * 24 * HOUR), now).is_ok());
    }

    #[test]
    fn a_narrow_token_cannot_mint_a_broad_one() {
        let caller = Scopes::parse(&["tokens:write", "devices:read"]).unwrap();
        assert!(matches!(
            decide_create(&caller, cmd(&["write"], 2 * HOUR), 0),
            Err(Rejection::Forbidden(_))
        ));
    }
}
