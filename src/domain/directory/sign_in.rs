//! Who a person is when they sign in through the organization's OpenID provider, and what the
//! sign-in changes: the user it links (or provisions), and the memberships of the groups the
//! provider's `groups` claim names.
//!
//! The person is, in this order:
//! 1. the user their identity (`iss` + `sub`) was linked to by an earlier sign-in;
//! 2. the pending user of the invitation link they came from (a code, not an email: it works
//!    with providers that do not vouch for email addresses, such as Microsoft Entra);
//! 3. a user of the same **verified** email who has no identity linked yet: a pending invited
//!    user, or one the identity provider provisioned over SCIM;
//! 4. a new user (source `sso`), when an SSO-domain rule covers the verified email's domain,
//!    with the rule's role;
//! 5. nobody: refused ("not invited").
//!
//! A deactivated user is refused whichever way they were found. Emails the provider does not
//! mark verified never match (3) or provision (4): anyone can put any address in an account at
//! some providers.
//!
//! Groups: the claim's groups that exist with source `oidc` get the user as a member, those
//! that do not exist are created (source `oidc`), and the user leaves the `oidc` groups the
//! claim no longer names. Groups of another source (SCIM) are never touched, even when the
//! claim names one: the identity provider's SCIM feed owns them. A token without the claim
//! changes no membership (the provider may simply not send it).

use events::Expected;
use events::event::{
    GroupCreated, GroupMemberAdded, GroupMemberRemoved, UserProfile, UserSignedIn,
};
use events::stream::Stream;
use projections::OrgView;
use projections::directory::User;

use super::Role;
use super::users::{MAX_DISPLAY, MAX_NAME, NewUser, check_email, provision_user};
use crate::domain::{Decision, Rejection};

/// A group source this module owns.
pub const OIDC: &str = "oidc";
/// At most this many groups of a claim are synchronized (Microsoft Entra sends at most 200
/// before it switches to an "overage" reference).
pub const MAX_CLAIMED_GROUPS: usize = 200;

/// A verified ID token's claims, and what the sign-in came with.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// `None`: the token has no `groups` claim.
    pub groups: Option<Vec<String>>,
    /// SHA-256 of the invitation code of the link the person came from.
    pub invitation: Option<[u8; 32]>,
    /// The id a provisioned user gets (drawn at the edge).
    pub new_user_id: String,
    /// Ids for groups the claim creates, used in order (drawn at the edge; at least as many as
    /// the claim has groups).
    pub new_group_ids: Vec<String>,
    pub now: i64,
}

/// The user the sign-in resolved to, and the events that record it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    /// Whether the user was provisioned by this sign-in.
    pub provisioned: bool,
    pub decision: Decision,
}

/// The refusal for a person the organization does not know.
pub const NOT_INVITED: &str = "you are not invited to this organization: ask an admin for an \
                               invitation, or to add your email domain";

/// Resolves the person and decides the sign-in (see the module's rules).
pub fn sign_in(org: OrgView<'_>, s: &SignIn) -> Result<SignedIn, Rejection> {
    let verified_email = s
        .email
        .as_deref()
        .filter(|e| s.email_verified && check_email("email", e).is_ok());
    let found = org
        .user_by_identity(&s.issuer, &s.subject)
        .or_else(|| by_invitation(org, s))
        .or_else(|| verified_email.and_then(|e| unlinked_by_email(org, e, s.now)));
    let (user_id, provisioned, mut decision, groups_now) = match found {
        Some(user) => {
            if !user.active {
                return Err(Rejection::Forbidden(format!(
                    "the user '{}' is deactivated",
                    user.id
                )));
            }
            let d = Decision::none().expect(
                Stream::user(user.id.as_str()),
                Expected::Exact(user.revision),
            );
            let groups: Vec<String> = org.groups_of(&user.id).map(|g| g.id.clone()).collect();
            (user.id.clone(), false, d, groups)
        }
        None => {
            let email = verified_email.ok_or_else(|| Rejection::Forbidden(NOT_INVITED.into()))?;
            let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            let role = org
                .sso_domain(domain)
                .ok_or_else(|| Rejection::Forbidden(NOT_INVITED.into()))?;
            let role = Role::parse(role)?;
            let d = provision_user(org, new_user(s, email, role))?;
            (s.new_user_id.clone(), true, d, Vec::new())
        }
    };
    decision = decision.event(
        Stream::user(user_id.as_str()),
        UserSignedIn {
            user_id: user_id.clone(),
            issuer: s.issuer.clone(),
            subject: s.subject.clone(),
            // Only an address the provider vouches for goes on the record; an unverified one
            // is whatever the person typed into their profile.
            email: verified_email.map(str::to_owned).unwrap_or_default(),
        },
    );
    if let Some(claimed) = &s.groups {
        decision = sync_groups(
            org,
            decision,
            &user_id,
            &groups_now,
            claimed,
            &s.new_group_ids,
        );
    }
    Ok(SignedIn {
        user_id,
        provisioned,
        decision,
    })
}

/// The pending user of a live invitation.
fn by_invitation<'a>(org: OrgView<'a>, s: &SignIn) -> Option<&'a User> {
    let user = org.user_by_invitation(s.invitation.as_ref()?)?;
    live_invitation(user, s.now).then_some(user)
}

fn live_invitation(user: &User, now: i64) -> bool {
    user.invitation
        .is_some_and(|(_, expires_at)| expires_at > now)
}

/// A user with `email` whom no identity was linked to yet: invited (and the invitation still
/// live), or provisioned by the identity provider.
fn unlinked_by_email<'a>(org: OrgView<'a>, email: &str, now: i64) -> Option<&'a User> {
    let user = org.user_by_email(email)?;
    if !user.identities.is_empty() {
        return None;
    }
    match user.source.as_str() {
        "invite" => live_invitation(user, now).then_some(user),
        "scim" => Some(user),
        _ => None,
    }
}

fn new_user(s: &SignIn, email: &str, role: Role) -> NewUser {
    let display_name: String = s
        .name
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && !crate::domain::text::is_invisible(*c))
        .take(MAX_DISPLAY)
        .collect();
    NewUser {
        id: s.new_user_id.clone(),
        profile: UserProfile {
            user_name: email.to_owned(),
            email: email.to_owned(),
            display_name,
            given_name: None,
            family_name: None,
            external_id: None,
        },
        role,
        active: true,
        source: "sso",
    }
}

/// The claim's group names worth keeping: trimmed, non-empty, not too long, no control
/// characters, each once (case-insensitively, as group names are unique), at most
/// [`MAX_CLAIMED_GROUPS`].
pub fn claimed_names(claimed: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    claimed
        .iter()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty() && g.chars().count() <= MAX_DISPLAY.min(MAX_NAME))
        // The API's own rule for names: no control characters, and nothing invisible or
        // reordering (`adm\u{200B}ins` must not pass for `admins`).
        .filter(|g| {
            !g.chars()
                .any(|c| c.is_control() || crate::domain::text::is_invisible(c))
        })
        .filter(|g| seen.insert(g.to_lowercase()))
        .take(MAX_CLAIMED_GROUPS)
        .map(str::to_owned)
        .collect()
}

fn sync_groups(
    org: OrgView<'_>,
    mut d: Decision,
    user_id: &str,
    member_of: &[String],
    claimed: &[String],
    new_ids: &[String],
) -> Decision {
    let names = claimed_names(claimed);
    let mut new_ids = new_ids.iter();
    let mut keep = std::collections::BTreeSet::new();
    for name in &names {
        match org.group_by_name(name) {
            Some(g) if g.source != OIDC => {}
            Some(g) => {
                keep.insert(g.id.clone());
                if !g.members.contains(user_id) {
                    let stream = Stream::group(g.id.as_str());
                    d = d.expect(stream.clone(), Expected::Exact(g.revision)).event(
                        stream,
                        GroupMemberAdded {
                            group_id: g.id.clone(),
                            user_id: user_id.to_owned(),
                        },
                    );
                }
            }
            None => {
                // The edge draws an id per claimed group; one short is one group fewer.
                let Some(id) = new_ids.next() else { continue };
                let stream = Stream::group(id.as_str());
                d = d
                    .expect(stream.clone(), Expected::NoStream)
                    .event(
                        stream.clone(),
                        GroupCreated {
                            group_id: id.clone(),
                            display_name: name.clone(),
                            external_id: None,
                            source: OIDC.to_owned(),
                        },
                    )
                    .event(
                        stream,
                        GroupMemberAdded {
                            group_id: id.clone(),
                            user_id: user_id.to_owned(),
                        },
                    );
            }
        }
    }
    for group_id in member_of {
        let Some(g) = org.group(group_id) else {
            continue;
        };
        if g.source == OIDC && !keep.contains(&g.id) {
            let stream = Stream::group(g.id.as_str());
            d = d.expect(stream.clone(), Expected::Exact(g.revision)).event(
                stream,
                GroupMemberRemoved {
                    group_id: g.id.clone(),
                    user_id: user_id.to_owned(),
                },
            );
        }
    }
    d
}
