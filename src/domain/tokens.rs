//! Decisions about API tokens.
//!
//! A token is issued by the console (an owner token) or by another token, its parent. A token
//! never grants a scope it does not hold, and never outlives its parent. Revoking a token
//! revokes every token it issued, and theirs, in the same append. A token may revoke only
//! itself, tokens it issued, and tokens whose scopes it holds; and no revocation may leave an
//! organization without an active owner-scoped (`write`) token, which would lock it out of
//! its own API.

use std::collections::{HashMap, HashSet};

use events::Expected;
use events::event::{TokenCreated, TokenRevoked};
use events::stream::Stream;
use projections::OrgView;
use projections::tokens::Token;

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
    /// The request named no expiry, so `expires_at` is the default lifetime: it is shortened
    /// to the parent's expiry instead of refused for outliving it.
    pub expires_by_default: bool,
}

/// A token acting on tokens: the bearer of the request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub token_id: &'a str,
    pub scopes: &'a Scopes,
}

/// Who issues a token.
#[derive(Debug, Clone, Copy)]
pub enum Issuer<'a> {
    /// The console (`init`, `serve` on an empty data directory, `org issue-token`): an owner
    /// token with no parent.
    Console,
    /// A token of the organization, which becomes the new token's parent.
    Token(Caller<'a>),
    /// A person who signed in: a session for them, with no parent.
    Session { user_id: &'a str },
}

/// Why a token command was refused; the HTTP edge answers each with its own problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// A field is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// The issuer asked for scopes it does not hold (403).
    #[error(
        "a token cannot grant scopes it does not hold: requested {requested}, caller holds {held}"
    )]
    ScopesNotHeld { requested: String, held: String },
    /// The new token would expire after its parent (400).
    #[error(
        "a token cannot outlive the token that issues it, which expires at {}: ask for an \
         expiry from 1 hour from now up to then",
        events::format_time(*latest)
    )]
    OutlivesIssuer { latest: i64 },
    /// The issuing token was revoked or expired after it authenticated the request (401).
    #[error("the bearer token was revoked or has expired")]
    IssuerInactive,
    /// No such token in the organization (404).
    #[error("no token '{0}'")]
    NotFound(String),
    /// The caller may not revoke this token (403): it is not the caller, the caller did not
    /// issue it, and it holds scopes the caller lacks.
    #[error(
        "a token may revoke only itself, the tokens it issued and tokens whose scopes it \
         holds: '{token_id}' holds {}, which this token lacks",
        missing.join(" ")
    )]
    NotCovered {
        token_id: String,
        missing: Vec<String>,
    },
    /// The revocation would leave the organization without an active owner-scoped token
    /// (409): the request is allowed, but the organization's state forbids it until another
    /// owner-scoped token exists.
    #[error(
        "revoking '{token_id}' would leave the organization without an active owner token \
         (scope write) and lock it out: issue another token with scope write first, or one at \
         the console with `quickztna org issue-token`"
    )]
    LastOwnerToken { token_id: String },
}

/// The shared validations (description, expiry bounds) refuse with [`Rejection::Invalid`].
impl From<Rejection> for TokenRejection {
    fn from(r: Rejection) -> TokenRejection {
        match r {
            Rejection::NotFound(d) => TokenRejection::NotFound(d),
            Rejection::Invalid(d)
            | Rejection::Forbidden(d)
            | Rejection::Conflict(d)
            | Rejection::Unprocessable(d) => TokenRejection::Invalid(d),
        }
    }
}

pub fn validate_description(description: &str) -> Result<(), Rejection> {
    super::text::check_text("description", description, 1, 200)
}

/// Issuing a token on a new stream (so two requests can never both create the same one), no
/// more powerful than its issuer and expiring in 1 hour to 12 months, never after its parent.
/// The decision expects the parent's stream unchanged, so a parent revoked meanwhile cannot
/// mint.
pub fn create(
    org: OrgView<'_>,
    issuer: Issuer<'_>,
    cmd: CreateToken,
    now: i64,
) -> Result<Decision, TokenRejection> {
    validate_description(&cmd.description)?;
    let stream = Stream::token(&cmd.token_id);
    let mut decision = Decision::none().expect(stream.clone(), Expected::NoStream);
    let mut expires_at = cmd.expires_at;
    let (parent_token_id, user_id) = match issuer {
        Issuer::Console => (None, None),
        Issuer::Session { user_id } => (None, Some(user_id.to_owned())),
        Issuer::Token(caller) => {
            if !caller.scopes.covers(&cmd.scopes) {
                return Err(TokenRejection::ScopesNotHeld {
                    requested: cmd.scopes.to_strings().join(" "),
                    held: caller.scopes.to_strings().join(" "),
                });
            }
            let parent = org
                .token(caller.token_id)
                .filter(|p| p.is_active(now))
                .ok_or(TokenRejection::IssuerInactive)?;
            let latest = parent.expires_at;
            if cmd.expires_by_default {
                expires_at = expires_at.min(latest);
            }
            let too_short = expires_at < cmd.expires_at
                && Expiry::at(Lifetime::Token, expires_at, now).is_err();
            if expires_at > latest || too_short {
                return Err(TokenRejection::OutlivesIssuer { latest });
            }
            decision = decision.expect(Stream::token(&parent.id), Expected::Exact(parent.revision));
            // A token minted from a person's session acts for that person too.
            (Some(parent.id.clone()), parent.user_id.clone())
        }
    };
    let expires_at = Expiry::at(Lifetime::Token, expires_at, now)?;
    Ok(decision.event(
        stream,
        TokenCreated {
            token_id: cmd.token_id,
            prefix: cmd.prefix,
            secret_hash: cmd.secret_hash,
            scopes: cmd.scopes.to_strings(),
            description: cmd.description,
            expires_at: expires_at.micros(),
            parent_token_id,
            user_id,
        },
    ))
}

/// Revoking a token of the organization, and with it every active token it issued, and
/// theirs: one append, all or none. Idempotent: nothing to append when all of them already
/// were. Another organization's token is not in the view, so it is not found either.
///
/// The caller may revoke itself, the tokens it issued, and tokens whose scopes it holds. When
/// the revocation takes owner-scoped tokens, at least one must remain active, and the
/// decision expects the remaining ones unchanged: two revocations racing for the last two
/// cannot both succeed.
pub fn revoke(
    org: OrgView<'_>,
    caller: Caller<'_>,
    token_id: &str,
    now: i64,
) -> Result<Decision, TokenRejection> {
    let target = org
        .token(token_id)
        .ok_or_else(|| TokenRejection::NotFound(token_id.to_owned()))?;
    let missing = scopes_lacking(caller.scopes, target);
    let own = target.id == caller.token_id || target.parent.as_deref() == Some(caller.token_id);
    if !own && !missing.is_empty() {
        return Err(TokenRejection::NotCovered {
            token_id: token_id.to_owned(),
            missing,
        });
    }
    let revoked = revocation_set(org, target, now);
    let mut decision = Decision::none();
    if revoked.iter().any(|t| is_owner(t) && t.is_active(now)) {
        let remaining: Vec<&Token> = org
            .tokens()
            .filter(|t| is_owner(t) && t.is_active(now))
            .filter(|t| !revoked.iter().any(|r| r.id == t.id))
            .collect();
        if remaining.is_empty() {
            return Err(TokenRejection::LastOwnerToken {
                token_id: token_id.to_owned(),
            });
        }
        for t in remaining {
            decision = decision.expect(Stream::token(&t.id), Expected::Exact(t.revision));
        }
    }
    for t in revoked {
        let stream = Stream::token(&t.id);
        decision = decision
            .expect(stream.clone(), Expected::Exact(t.revision))
            .event(
                stream,
                TokenRevoked {
                    token_id: t.id.clone(),
                },
            );
    }
    Ok(decision)
}

/// An owner-scoped token: one with `write`, which allows everything, including issuing tokens.
/// An organization-wide token with scope `write`; a person's session is not one: it ends with
/// the person, so it cannot keep the organization from being locked out.
fn is_owner(token: &Token) -> bool {
    token.user_id.is_none() && token.scopes.iter().any(|s| s == "write")
}

/// The scopes of `target` that `caller` does not hold (all of them if they do not parse).
fn scopes_lacking(caller: &Scopes, target: &Token) -> Vec<String> {
    target
        .scopes
        .iter()
        .filter(|s| Scopes::parse(std::slice::from_ref(s)).map_or(true, |one| !caller.covers(&one)))
        .cloned()
        .collect()
}

/// What revoking `target` revokes: itself unless it already was, then its descendants that
/// still work, parents before children. The walk goes through revoked and expired tokens too:
/// a token issued before parents were recorded, or while its parent was being revoked, is
/// caught by the next revocation of its parent.
fn revocation_set<'a>(org: OrgView<'a>, target: &'a Token, now: i64) -> Vec<&'a Token> {
    let mut children: HashMap<&str, Vec<&Token>> = HashMap::new();
    for t in org.tokens() {
        if let Some(parent) = t.parent.as_deref() {
            children.entry(parent).or_default().push(t);
        }
    }
    let mut out = Vec::new();
    if target.revoked_at.is_none() {
        out.push(target);
    }
    let mut queue = vec![target];
    // Parents exist before their children, so there is no cycle; this only guards a corrupt
    // model against looping.
    let mut visited = HashSet::from([target.id.as_str()]);
    while let Some(t) = queue.pop() {
        for &child in children.get(t.id.as_str()).into_iter().flatten() {
            if !visited.insert(child.id.as_str()) {
                continue;
            }
            if child.is_active(now) {
                out.push(child);
            }
            queue.push(child);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::Models;

    const HOUR: i64 = 3600 * 1_000_000;

    fn cmd(scopes: &[&str], expires_at: i64) -> CreateToken {
        CreateToken {
            token_id: "tok_x".into(),
            prefix: "qz_abcdef".into(),
            secret_hash: [7; 32],
            scopes: Scopes::parse(scopes).unwrap(),
            description: "ci".into(),
            expires_at,
            expires_by_default: false,
        }
    }

    fn created(decision: Decision) -> TokenCreated {
        match decision.into_events().pop() {
            Some(events::Event::TokenCreated(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_console_issues_a_token_with_no_parent() {
        let models = Models::default();
        let d = create(
            models.org("o"),
            Issuer::Console,
            cmd(&["read"], 2 * HOUR),
            0,
        )
        .unwrap();
        let e = created(d);
        assert_eq!(e.scopes, vec!["read"]);
        assert_eq!(e.expires_at, 2 * HOUR);
        assert_eq!(e.parent_token_id, None);
    }

    #[test]
    fn expiry_outside_one_hour_to_twelve_months_is_rejected() {
        let models = Models::default();
        let now = 1_700_000_000 * 1_000_000;
        let ok = |at| create(models.org("o"), Issuer::Console, cmd(&["read"], at), now).is_ok();
        assert!(!ok(now + HOUR / 2));
        assert!(!ok(now + 367 * 24 * HOUR));
        assert!(ok(now + HOUR));
        assert!(ok(now + 365 * 24 * HOUR));
    }

    #[test]
    fn a_narrow_token_cannot_mint_a_broad_one() {
        let models = Models::default();
        let scopes = Scopes::parse(&["tokens:write", "devices:read"]).unwrap();
        let caller = Caller {
            token_id: "tok_p",
            scopes: &scopes,
        };
        assert!(matches!(
            create(
                models.org("o"),
                Issuer::Token(caller),
                cmd(&["write"], 2 * HOUR),
                0
            ),
            Err(TokenRejection::ScopesNotHeld { .. })
        ));
    }
}
