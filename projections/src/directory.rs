//! The directory: each organization's people, groups, memberships, SSO-domain rules and OpenID
//! provider, folded from the `user.*`, `group.*`, `sso.*` and `org.oidc_configured` events.
//!
//! Memberships are kept both ways (`Group::members`, `Directory::groups_of`), so "which groups
//! is this user in" — what the policy engine asks of every device — is one lookup. Lookups that
//! the identity provider matches on (userName, email, externalId, `iss`+`sub`) are indexed per
//! organization; names and emails are compared case-insensitively, external ids case-exactly.

use std::sync::Arc;

use events::event::UserProfile;
use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub profile: UserProfile,
    /// `admin`, `member` or `auditor`.
    pub role: String,
    /// False once deactivated (SCIM `active: false`): the person may not sign in and their
    /// devices stop authenticating.
    pub active: bool,
    /// `invite`, `scim`, `sso` or `api`.
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
    /// The OpenID identities (`iss`, `sub`) linked by sign-ins.
    pub identities: Vec<(String, String)>,
    /// SHA-256 of a pending invitation's code and when it expires.
    pub invitation: Option<([u8; 32], i64)>,
    /// Last revision of the user's stream (`user:<id>`).
    pub revision: u64,
}

impl User {
    /// `pending` (invited, never signed in), `active` or `deactivated`.
    pub fn status(&self) -> &'static str {
        if !self.active {
            "deactivated"
        } else if self.source == "invite" && self.last_sign_in_at.is_none() {
            "pending"
        } else {
            "active"
        }
    }

    /// Whether a device with this `owner` string belongs to the user: owners name a user by
    /// id, or (set by hand, before the person was in the directory) by email.
    pub fn owns(&self, owner: &str) -> bool {
        owner == self.id
            || (!self.profile.email.is_empty() && owner.eq_ignore_ascii_case(&self.profile.email))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub org_id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// `scim` or `oidc`.
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Member user ids, in id order.
    pub members: imbl::OrdSet<String>,
    pub revision: u64,
}

/// An organization's OpenID provider (the client secret is not in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
}

/// A lookup key scoped to one organization: `(org_id, value)`.
type OrgKey = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub users: imbl::HashMap<String, Arc<User>>,
    /// Per organization, its users ordered by `(created_at, id)`.
    pub users_by_org: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
    /// Lower-cased userName → id.
    pub by_user_name: imbl::HashMap<OrgKey, String>,
    /// Lower-cased email → id.
    pub by_email: imbl::HashMap<OrgKey, String>,
    pub by_external_id: imbl::HashMap<OrgKey, String>,
    /// `(org, iss + '\n' + sub)` → id.
    pub by_identity: imbl::HashMap<OrgKey, String>,
    pub by_invitation: imbl::HashMap<[u8; 32], String>,
    pub groups: imbl::HashMap<String, Arc<Group>>,
    pub groups_by_org: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
    /// Lower-cased displayName → id.
    pub group_by_name: imbl::HashMap<OrgKey, String>,
    pub group_by_external_id: imbl::HashMap<OrgKey, String>,
    /// User id → the ids of the groups they are in.
    pub groups_of: imbl::HashMap<String, imbl::OrdSet<String>>,
    /// Per organization, lower-cased email domain → role.
    pub domains: imbl::HashMap<String, imbl::OrdMap<String, String>>,
    pub oidc: imbl::HashMap<String, OidcConfig>,
}

/// The key `iss` + `sub` are indexed under.
pub fn identity_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}\n{subject}")
}

fn key(org: &str, value: &str) -> OrgKey {
    (org.to_owned(), value.to_owned())
}

fn lower(org: &str, value: &str) -> OrgKey {
    (org.to_owned(), value.to_lowercase())
}

/// Removes `k` from a lookup only while it still points at `id`: another item may hold the
/// name by now.
fn drop_own(map: &mut imbl::HashMap<OrgKey, String>, k: OrgKey, id: &str) {
    if map.get(&k).is_some_and(|v| v == id) {
        map.remove(&k);
    }
}

impl Directory {
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(Arc::as_ref)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id).map(Arc::as_ref)
    }

    fn index_profile(&mut self, org: &str, id: &str, p: &UserProfile) {
        self.by_user_name
            .insert(lower(org, &p.user_name), id.into());
        if !p.email.is_empty() {
            self.by_email.insert(lower(org, &p.email), id.into());
        }
        if let Some(x) = &p.external_id {
            self.by_external_id.insert(key(org, x), id.into());
        }
    }

    fn unindex_profile(&mut self, org: &str, id: &str, p: &UserProfile) {
        drop_own(&mut self.by_user_name, lower(org, &p.user_name), id);
        drop_own(&mut self.by_email, lower(org, &p.email), id);
        if let Some(x) = &p.external_id {
            drop_own(&mut self.by_external_id, key(org, x), id);
        }
    }

    fn touch_user(&mut self, r: &Recorded, id: &str, f: impl FnOnce(&mut User)) {
        if let Some(u) = self.users.get_mut(id) {
            let u = Arc::make_mut(u);
            f(u);
            u.updated_at = r.envelope.recorded_at;
            u.revision = r.envelope.revision;
        }
    }

    fn touch_group(&mut self, r: &Recorded, id: &str, f: impl FnOnce(&mut Group)) {
        if let Some(g) = self.groups.get_mut(id) {
            let g = Arc::make_mut(g);
            f(g);
            g.updated_at = r.envelope.recorded_at;
            g.revision = r.envelope.revision;
        }
    }

    fn add_user(&mut self, r: &Recorded, user: User) {
        let org = r.envelope.org_id.clone();
        self.index_profile(&org, &user.id, &user.profile);
        self.users_by_org
            .entry(org)
            .or_default()
            .insert((user.created_at, user.id.clone()));
        self.users.insert(user.id.clone(), Arc::new(user));
    }

    fn drop_user(&mut self, id: &str) {
        let Some(user) = self.users.remove(id) else {
            return;
        };
        let org = user.org_id.as_str();
        self.unindex_profile(org, id, &user.profile);
        for (iss, sub) in &user.identities {
            drop_own(&mut self.by_identity, key(org, &identity_key(iss, sub)), id);
        }
        if let Some((hash, _)) = user.invitation {
            self.by_invitation.remove(&hash);
        }
        if let Some(set) = self.users_by_org.get_mut(org) {
            set.remove(&(user.created_at, id.to_owned()));
        }
        for group in self.groups_of.remove(id).unwrap_or_default() {
            if let Some(g) = self.groups.get_mut(&group) {
                Arc::make_mut(g).members.remove(id);
            }
        }
    }

    fn drop_group(&mut self, id: &str) {
        let Some(group) = self.groups.remove(id) else {
            return;
        };
        let org = group.org_id.as_str();
        drop_own(&mut self.group_by_name, lower(org, &group.display_name), id);
        if let Some(x) = &group.external_id {
            drop_own(&mut self.group_by_external_id, key(org, x), id);
        }
        if let Some(set) = self.groups_by_org.get_mut(org) {
            set.remove(&(group.created_at, id.to_owned()));
        }
        for user in &group.members {
            if let Some(set) = self.groups_of.get_mut(user) {
                set.remove(id);
            }
        }
    }

    fn set_member(&mut self, r: &Recorded, group: &str, user: &str, member: bool) {
        if !self.groups.contains_key(group) {
            return;
        }
        self.touch_group(r, group, |g| {
            if member {
                g.members.insert(user.to_owned());
            } else {
                g.members.remove(user);
            }
        });
        let set = self.groups_of.entry(user.to_owned()).or_default();
        if member {
            set.insert(group.to_owned());
        } else {
            set.remove(group);
        }
    }
}

impl Projection for Directory {
    const NAME: &'static str = "directory";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        let org = r.envelope.org_id.as_str();
        let at = r.envelope.recorded_at;
        match &r.event {
            Event::UserInvited(e) => {
                let email = e.email.clone();
                self.by_invitation
                    .insert(e.invitation_hash, e.user_id.clone());
                self.add_user(
                    r,
                    User {
                        id: e.user_id.clone(),
                        org_id: org.to_owned(),
                        profile: UserProfile {
                            user_name: email.clone(),
                            display_name: String::new(),
                            email,
                            given_name: None,
                            family_name: None,
                            external_id: None,
                        },
                        role: e.role.clone(),
                        active: true,
                        source: "invite".into(),
                        created_at: at,
                        updated_at: at,
                        last_sign_in_at: None,
                        identities: Vec::new(),
                        invitation: Some((e.invitation_hash, e.expires_at)),
                        revision: r.envelope.revision,
                    },
                );
            }
            Event::UserProvisioned(e) => self.add_user(
                r,
                User {
                    id: e.user_id.clone(),
                    org_id: org.to_owned(),
                    profile: e.profile.clone(),
                    role: e.role.clone(),
                    active: e.active,
                    source: e.source.clone(),
                    created_at: at,
                    updated_at: at,
                    last_sign_in_at: None,
                    identities: Vec::new(),
                    invitation: None,
                    revision: r.envelope.revision,
                },
            ),
            Event::UserUpdated(e) => {
                if let Some(old) = self.user(&e.user_id).map(|u| u.profile.clone()) {
                    self.unindex_profile(org, &e.user_id, &old);
                    self.index_profile(org, &e.user_id, &e.profile);
                    self.touch_user(r, &e.user_id, |u| u.profile = e.profile.clone());
                }
            }
            Event::UserDeactivated(e) => self.touch_user(r, &e.user_id, |u| u.active = false),
            Event::UserReactivated(e) => self.touch_user(r, &e.user_id, |u| u.active = true),
            Event::UserSignedIn(e) => {
                let mut spent = None;
                self.touch_user(r, &e.user_id, |u| {
                    u.last_sign_in_at = Some(at);
                    spent = u.invitation.take().map(|(hash, _)| hash);
                    let identity = (e.issuer.clone(), e.subject.clone());
                    if !u.identities.contains(&identity) {
                        u.identities.push(identity);
                    }
                });
                if let Some(hash) = spent {
                    self.by_invitation.remove(&hash);
                }
                if self.users.contains_key(&e.user_id) {
                    self.by_identity.insert(
                        key(org, &identity_key(&e.issuer, &e.subject)),
                        e.user_id.clone(),
                    );
                }
            }
            Event::UserRemoved(e) => self.drop_user(&e.user_id),
            Event::GroupCreated(e) => {
                self.group_by_name
                    .insert(lower(org, &e.display_name), e.group_id.clone());
                if let Some(x) = &e.external_id {
                    self.group_by_external_id
                        .insert(key(org, x), e.group_id.clone());
                }
                self.groups_by_org
                    .entry(org.to_owned())
                    .or_default()
                    .insert((at, e.group_id.clone()));
                self.groups.insert(
                    e.group_id.clone(),
                    Arc::new(Group {
                        id: e.group_id.clone(),
                        org_id: org.to_owned(),
                        display_name: e.display_name.clone(),
                        external_id: e.external_id.clone(),
                        source: e.source.clone(),
                        created_at: at,
                        updated_at: at,
                        members: imbl::OrdSet::new(),
                        revision: r.envelope.revision,
                    }),
                );
            }
            Event::GroupUpdated(e) => {
                let Some(old) = self.group(&e.group_id).cloned() else {
                    return;
                };
                drop_own(
                    &mut self.group_by_name,
                    lower(org, &old.display_name),
                    &e.group_id,
                );
                if let Some(x) = &old.external_id {
                    drop_own(&mut self.group_by_external_id, key(org, x), &e.group_id);
                }
                self.group_by_name
                    .insert(lower(org, &e.display_name), e.group_id.clone());
                if let Some(x) = &e.external_id {
                    self.group_by_external_id
                        .insert(key(org, x), e.group_id.clone());
                }
                self.touch_group(r, &e.group_id, |g| {
                    g.display_name = e.display_name.clone();
                    g.external_id = e.external_id.clone();
                });
            }
            Event::GroupMemberAdded(e) => self.set_member(r, &e.group_id, &e.user_id, true),
            Event::GroupMemberRemoved(e) => self.set_member(r, &e.group_id, &e.user_id, false),
            Event::GroupRemoved(e) => self.drop_group(&e.group_id),
            Event::SsoDomainAdded(e) => {
                self.domains
                    .entry(org.to_owned())
                    .or_default()
                    .insert(e.domain.clone(), e.role.clone());
            }
            Event::SsoDomainRemoved(e) => {
                if let Some(d) = self.domains.get_mut(org) {
                    d.remove(&e.domain);
                }
            }
            Event::OrgOidcConfigured(e) => {
                self.oidc.insert(
                    org.to_owned(),
                    OidcConfig {
                        issuer: e.issuer.clone(),
                        client_id: e.client_id.clone(),
                    },
                );
            }
            _ => {}
        }
    }
}
