//! The directory's events: people, groups and memberships (pushed by SCIM, an OpenID sign-in or
//! the users API), SSO-domain rules and the organization's OpenID provider. Part of the
//! catalogue in [`crate::event`], with the same rules: never reorder or remove a field.

use serde::{Deserialize, Serialize};

/// What the directory knows of a person: the SCIM core attributes the server stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// The login name the identity provider matches on (SCIM `userName`, unique in the
    /// organization, case-insensitively); an email address for invited and SSO users.
    pub user_name: String,
    /// Where invitations go and what SSO matches a verified email against (may be empty for a
    /// SCIM user without one).
    pub email: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The identity provider's own id for the person (SCIM `externalId`; case-exact).
    pub external_id: Option<String>,
}

/// `user.invited`: a person was invited by email; they join on their first sign-in. Only the
/// SHA-256 of the invitation code is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInvited {
    pub user_id: String,
    pub email: String,
    /// `admin`, `member` or `auditor`.
    pub role: String,
    pub invitation_hash: [u8; 32],
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

/// `user.provisioned`: a person was added by the identity provider (SCIM), by an SSO-domain
/// rule on their first sign-in, or by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProvisioned {
    pub user_id: String,
    pub profile: UserProfile,
    pub role: String,
    pub active: bool,
    /// `scim`, `sso` or `api`.
    pub source: String,
}

/// `user.updated`: a person's profile changed; it carries the whole new profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: String,
    pub profile: UserProfile,
}

/// `user.deactivated`: a person may no longer sign in, and their devices stop authenticating
/// until they are reactivated. Nothing is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivated {
    pub user_id: String,
}

/// `user.reactivated`: a deactivated person and their devices work again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReactivated {
    pub user_id: String,
}

/// `user.signed_in`: a person signed in through the organization's OpenID provider; the first
/// time, this links the provider's `iss` + `sub` to them and makes an invited person active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSignedIn {
    pub user_id: String,
    pub issuer: String,
    pub subject: String,
    pub email: String,
}

/// `user.removed`: a person left the organization. Their devices are removed in the same
/// append (`device.removed` with reason `user_removed`), and their memberships end with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRemoved {
    pub user_id: String,
    /// `api`, `scim`, …
    pub reason: String,
}

/// `group.created`: a group exists, pushed by SCIM or named in an OpenID `groups` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    pub group_id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// `scim` or `oidc`: an OpenID sign-in only ever changes the memberships of `oidc` groups.
    pub source: String,
}

/// `group.updated`: a group was renamed or re-identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUpdated {
    pub group_id: String,
    pub display_name: String,
    pub external_id: Option<String>,
}

/// `group.member_added`: a person joined a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberAdded {
    pub group_id: String,
    pub user_id: String,
}

/// `group.member_removed`: a person left a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberRemoved {
    pub group_id: String,
    pub user_id: String,
}

/// `group.removed`: a group was deleted upstream; its memberships end with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRemoved {
    pub group_id: String,
}

/// `sso.domain_added`: people who sign in with a verified email of this domain join the
/// organization with this role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoDomainAdded {
    pub org_id: String,
    /// Lowercase, without a leading `@`.
    pub domain: String,
    pub role: String,
}

/// `sso.domain_removed`: the SSO-domain rule is gone; people already joined stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoDomainRemoved {
    pub org_id: String,
    pub domain: String,
}

/// `org.oidc_configured`: the organization's OpenID provider. The client secret is not in the
/// log: the server keeps it in a file of its own (owner-only) in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgOidcConfigured {
    pub org_id: String,
    pub issuer: String,
    pub client_id: String,
}
