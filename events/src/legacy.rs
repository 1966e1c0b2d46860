//! Older schema versions of events: frozen payload structs, and pure upcasts to the current
//! version. The log is never rewritten, so every version ever written decodes forever.
//!
//! To evolve an event: copy its current struct here as `<Name>V<n>` (never change it again),
//! add the new field to the current struct, bump its version in the catalogue
//! ([`crate::event`]), add a case to [`decode`] and to [`VERSIONS`], and a sample of the old
//! version to [`crate::samples::legacy_sample`]. The old golden fixture keeps proving it.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::event::{Event, OrgLimitsSet, TokenCreated};

/// Every `(type, version)` older than the catalogue's current one that still decodes.
pub const VERSIONS: &[(&str, u16)] = &[
    ("token.created", 1),
    ("org.limits_set", 1),
    ("token.created", 2),
];

/// `org.limits_set` v1: before the device registrations' budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgLimitsSetV1 {
    pub org_id: String,
    pub read_per_min: u32,
    pub write_per_min: u32,
}

impl From<OrgLimitsSetV1> for OrgLimitsSet {
    /// Registrations kept the plan's default until a v2 event set them.
    fn from(v: OrgLimitsSetV1) -> OrgLimitsSet {
        OrgLimitsSet {
            org_id: v.org_id,
            read_per_min: v.read_per_min,
            write_per_min: v.write_per_min,
            register_per_min: None,
        }
    }
}

/// `token.created` v1: before tokens recorded the token that issued them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedV1 {
    pub token_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: i64,
}

impl From<TokenCreatedV1> for TokenCreated {
    /// A v1 record does not name a parent: readers that need one fall back on the envelope's
    /// actor (the token that issued it).
    fn from(v: TokenCreatedV1) -> TokenCreated {
        TokenCreated {
            token_id: v.token_id,
            prefix: v.prefix,
            secret_hash: v.secret_hash,
            scopes: v.scopes,
            description: v.description,
            expires_at: v.expires_at,
            parent_token_id: None,
            user_id: None,
        }
    }
}

/// `token.created` v2: before sign-in sessions named the person they act for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedV2 {
    pub token_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: i64,
    pub parent_token_id: Option<String>,
}

impl From<TokenCreatedV2> for TokenCreated {
    /// Every v2 token is an API token of the organization.
    fn from(v: TokenCreatedV2) -> TokenCreated {
        TokenCreated {
            token_id: v.token_id,
            prefix: v.prefix,
            secret_hash: v.secret_hash,
            scopes: v.scopes,
            description: v.description,
            expires_at: v.expires_at,
            parent_token_id: v.parent_token_id,
            user_id: None,
        }
    }
}

/// Decodes an older version of an event and upcasts it to the current one.
pub fn decode(event_type: &str, version: u16, bytes: &[u8]) -> Result<Event, Error> {
    match (event_type, version) {
        ("token.created", 1) => codec::decode_payload::<TokenCreatedV1>(bytes)
            .map(|v| Event::TokenCreated(TokenCreated::from(v))),
        ("token.created", 2) => codec::decode_payload::<TokenCreatedV2>(bytes)
            .map(|v| Event::TokenCreated(TokenCreated::from(v))),
        ("org.limits_set", 1) => codec::decode_payload::<OrgLimitsSetV1>(bytes)
            .map(|v| Event::OrgLimitsSet(OrgLimitsSet::from(v))),
        _ => Err(Error::UnknownEvent {
            event_type: event_type.to_owned(),
            version,
        }),
    }
}
