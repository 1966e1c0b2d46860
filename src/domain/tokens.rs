//! Decisions about API tokens.

use events::Expected;
use events::event::{TokenCreated, TokenRevoked};
use events::stream::Stream;
use projections::Models;
use projections::tokens::Tokens;

use super::Rejection;
use super::decision::Decision;
use super::scope::Scopes;

/// Shortest token lifetime.
pub const MIN_LIFETIME_SECS: i64 = 3600;
/// Tokens asked to expire this little before the minimum are accepted: the client computed the
/// time a moment before the request arrived.
const CLOCK_SLACK_SECS: i64 = 60;

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

/// The latest expiry allowed at `now`: twelve calendar months ahead.
pub fn max_expiry(now: i64) -> i64 {
    jiff::Timestamp::from_microsecond(now)
        .ok()
        .and_then(|t| {
            t.to_zoned(jiff::tz::TimeZone::UTC)
                .checked_add(jiff::Span::new().months(12))
                .ok()
        })
        .map(|z| z.timestamp().as_microsecond())
        .unwrap_or(now + 365 * 86_400 * 1_000_000)
}

pub fn validate_description(description: &str) -> Result<(), Rejection> {
    let n = description.chars().count();
    if n == 0 || n > 200 {
        return Err(Rejection::Invalid(
            "field 'description' must be 1 to 200 characters".into(),
        ));
    }
    if description.chars().any(char::is_control) {
        return Err(Rejection::Invalid(
            "field 'description' must not contain control characters".into(),
        ));
    }
    Ok(())
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
    let min = now + (MIN_LIFETIME_SECS - CLOCK_SLACK_SECS) * 1_000_000;
    if cmd.expires_at < min || cmd.expires_at > max_expiry(now) {
        return Err(Rejection::Invalid(
            "token expiry must be from 1 hour to 12 months from now".into(),
        ));
    }
    Ok(TokenCreated {
        token_id: cmd.token_id,
        prefix: cmd.prefix,
        secret_hash: cmd.secret_hash,
        scopes: cmd.scopes.to_strings(),
        description: cmd.description,
        expires_at: cmd.expires_at,
    })
}

/// Revokes a token of `org_id`; `Ok(None)` when it already was (revocation is idempotent).
pub fn decide_revoke(
    tokens: &Tokens,
    org_id: &str,
    token_id: &str,
) -> Result<Option<TokenRevoked>, Rejection> {
    match tokens.get(token_id) {
        Some(t) if t.org_id == org_id => Ok(t.revoked_at.is_none().then(|| TokenRevoked {
            token_id: token_id.to_owned(),
        })),
        // Another organization's token is indistinguishable from a missing one.
        _ => Err(Rejection::NotFound(format!("no token '{token_id}'"))),
    }
}

/// Issuing a token: a new stream, so two requests can never both create the same one.
pub fn create(caller: &Scopes, cmd: CreateToken, now: i64) -> Result<Decision, Rejection> {
    let stream = Stream::token(&cmd.token_id);
    let event = decide_create(caller, cmd, now)?;
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(stream, event))
}

/// Revoking a token of `org_id`; nothing to append when it already was.
pub fn revoke(models: &Models, org_id: &str, token_id: &str) -> Result<Decision, Rejection> {
    let Some(event) = decide_revoke(&models.tokens, org_id, token_id)? else {
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
