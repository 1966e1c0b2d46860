//! API tokens: who may call the API, with which scopes, until when.

use events::{ActorKind, Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub org_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: i64,
    pub created_at: i64,
    /// The description of whoever created it (a token, or the console for owner tokens).
    pub created_by: String,
    /// The token that issued it (`None`: the console did). Revoking a token revokes its
    /// descendants, and none outlives its parent.
    pub parent: Option<String>,
    pub revoked_at: Option<i64>,
    /// The person a sign-in session acts for (`None`: an API token).
    pub user_id: Option<String>,
    /// Last revision of the token's stream: decisions that rely on the token staying as they
    /// saw it (a parent minting, an owner token remaining) expect it unchanged.
    pub revision: u64,
}

impl Token {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub by_id: imbl::HashMap<String, Token>,
    /// SHA-256 of the secret → token id: how a presented bearer token is found.
    pub by_hash: imbl::HashMap<[u8; 32], String>,
    /// Per organization, its tokens (revoked ones too) ordered by `(created_at, id)`.
    pub by_org: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
}

impl Tokens {
    pub fn get(&self, id: &str) -> Option<&Token> {
        self.by_id.get(id)
    }

    pub fn by_secret_hash(&self, hash: &[u8; 32]) -> Option<&Token> {
        self.by_hash.get(hash).and_then(|id| self.by_id.get(id))
    }

    /// When `token` stopped working by revocation: its own, or else its nearest revoked
    /// ancestor's (see [`Tokens::revoked_ancestor`]).
    pub fn effective_revoked_at(&self, token: &Token) -> Option<i64> {
        token
            .revoked_at
            .or_else(|| self.revoked_ancestor(token).and_then(|a| a.revoked_at))
    }

    /// The nearest revoked token among `token`'s ancestors, if any. Revoking a token records
    /// the revocation of its descendants in the same append; this also catches a child minted
    /// concurrently with its parent's revocation, which that append could not see.
    pub fn revoked_ancestor(&self, token: &Token) -> Option<&Token> {
        let mut next = token.parent.as_deref();
        // A parent exists before its child, so the chain has no cycle; the bound only guards
        // against a corrupted model.
        for _ in 0..self.by_id.len() {
            let parent = self.by_id.get(next?)?;
            if parent.revoked_at.is_some() {
                return Some(parent);
            }
            next = parent.parent.as_deref();
        }
        None
    }
}

impl Projection for Tokens {
    const NAME: &'static str = "tokens";
    const VERSION: u32 = 4;

    fn apply(&mut self, r: &Recorded) {
        match &r.event {
            Event::TokenCreated(e) => {
                // Version 1 records do not name the parent; the token that issued one is its
                // actor.
                let parent = e.parent_token_id.clone().or_else(|| {
                    (r.envelope.actor.kind == ActorKind::Token).then(|| r.envelope.actor.id.clone())
                });
                self.by_hash.insert(e.secret_hash, e.token_id.clone());
                self.by_org
                    .entry(r.envelope.org_id.clone())
                    .or_default()
                    .insert((r.envelope.recorded_at, e.token_id.clone()));
                self.by_id.insert(
                    e.token_id.clone(),
                    Token {
                        id: e.token_id.clone(),
                        org_id: r.envelope.org_id.clone(),
                        prefix: e.prefix.clone(),
                        secret_hash: e.secret_hash,
                        scopes: e.scopes.clone(),
                        description: e.description.clone(),
                        expires_at: e.expires_at,
                        created_at: r.envelope.recorded_at,
                        created_by: r.envelope.actor.description.clone(),
                        parent,
                        revoked_at: None,
                        user_id: e.user_id.clone(),
                        revision: r.envelope.revision,
                    },
                );
            }
            Event::TokenRevoked(e) => {
                if let Some(t) = self.by_id.get_mut(&e.token_id) {
                    t.revoked_at.get_or_insert(r.envelope.recorded_at);
                    t.revision = r.envelope.revision;
                }
            }
            Event::TokenPurged(e) => {
                if let Some(t) = self.by_id.remove(&e.token_id) {
                    self.by_hash.remove(&t.secret_hash);
                    if let Some(set) = self.by_org.get_mut(&t.org_id) {
                        set.remove(&(t.created_at, t.id.clone()));
                    }
                }
            }
            _ => {}
        }
    }
}
