//! Tag ownership (`tag_owners` in the policy): once the policy lists any, only listed tags can be
//! applied — to a device (`PATCH /devices/{id}`, `POST /devices/{id}/tags`) or to a pre-auth
//! key, whose devices join with them (checked again when a device joins) — and a tag can be
//! applied or removed only by someone the list allows:
//!
//! - an API token with `policy:write` (or `write`), or one the list names (`token:<id>`), so
//!   automation gets exactly the tags it needs;
//! - a person signed in with SSO whose role may write the policy (admin); any other person
//!   only tags the list gives them or one of their groups (`user:`, `group:`), and only on
//!   their own devices.
//!
//! Removal is restricted like addition: a tag can be what a `deny` rule selects, or what keeps
//! a device out of `user:`/`group:` rules, so removing one can widen access. Without
//! `tag_owners`, tags are an administrator's to set: people with the `member` role may not
//! change them, tokens with `devices:write` may.
//!
//! The check runs inside the decision, on the tags the device has when the change commits, and
//! against the policy version it was loaded for: a policy applied meanwhile makes it retry.

use projections::OrgView;

use super::auth::Principal;
use super::problem::Problem;
use crate::domain::Rejection;
use crate::domain::directory::Role;
use crate::domain::scope::{Group, Need};
use crate::policy::Principal as Who;
use crate::policy::model::TagOwner;
use crate::state::AppState;

/// The policy's tag rules as of one policy version.
#[derive(Debug, Clone)]
pub struct TagRules {
    /// The policy version they come from (0: no policy).
    version: u64,
    /// Empty: the policy lists no tag owners.
    owners: Vec<TagOwner>,
}

impl TagRules {
    /// The rules of the policy in force, from the peer-map model once it includes the read
    /// models' current position; `503` if it cannot catch up (never "no rules": fail closed).
    pub async fn load(state: &AppState, org_id: &str) -> Result<TagRules, Problem> {
        let position = state.models().load().position;
        let caught_up = state
            .peers()
            .wait_for(position, state.settings().read_your_writes_timeout)
            .await;
        if !caught_up {
            return Err(Problem::unavailable(
                "the policy's tag owners are being updated; retry shortly",
                1,
            ));
        }
        Ok(state
            .peers()
            .with_org(org_id, |o| TagRules {
                version: o.policy_version(),
                owners: o.policy().map(|p| p.tag_owners.clone()).unwrap_or_default(),
            })
            .unwrap_or(TagRules {
                version: 0,
                owners: Vec::new(),
            }))
    }

    /// Whether the policy restricts tags to its list.
    pub fn restricts(&self) -> bool {
        !self.owners.is_empty()
    }

    /// Whether `tag` is listed (always true without a list).
    pub fn listed(&self, tag: &str) -> bool {
        !self.restricts() || self.owners.iter().any(|o| o.tag.value == tag)
    }

    /// Refuses unless `principal` may change a device's (or key's) tags from `before` to
    /// `after`, under the policy version these rules came from.
    pub fn check(
        &self,
        org: OrgView<'_>,
        principal: &Principal,
        before: &[String],
        after: &[String],
    ) -> Result<(), Rejection> {
        let in_force = org.policy().current().map_or(0, |v| v.version);
        if in_force != self.version {
            return Err(Rejection::Conflict(
                "the policy changed while the tags were being checked; retry".into(),
            ));
        }
        let changed: Vec<&String> = after
            .iter()
            .filter(|t| !before.contains(t))
            .chain(before.iter().filter(|t| !after.contains(t)))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        if !self.restricts() {
            return match &principal.person {
                Some(p) if p.role == Role::Member => Err(Rejection::Forbidden(
                    "a person with the role 'member' may not change tags: they decide what a \
                     device may reach, and an admin sets them (or the policy's tag_owners give \
                     them some)"
                        .into(),
                )),
                _ => Ok(()),
            };
        }
        for tag in changed {
            let adding = !before.contains(tag);
            let entry = self.owners.iter().find(|o| &o.tag.value == tag);
            let allowed = match entry {
                Some(e) => may_apply(org, principal, e),
                // An unlisted tag already on a device: only a policy writer may take it off.
                None if !adding => writes_policy(principal),
                None => {
                    return Err(Rejection::Forbidden(format!(
                        "'{tag}' is not in the policy's tag_owners: only listed tags can be applied; add it there first"
                    )));
                }
            };
            if !allowed {
                let owners = entry.map_or_else(|| "none".to_owned(), list);
                return Err(Rejection::Forbidden(format!(
                    "the policy's tag_owners do not let this caller {} '{tag}' (owners: {owners}); a token needs policy:write or to be listed as token:{}",
                    if adding { "apply" } else { "remove" },
                    principal.token_id
                )));
            }
        }
        Ok(())
    }
}

fn list(entry: &TagOwner) -> String {
    if entry.owners.is_empty() {
        return "none".into();
    }
    entry
        .owners
        .iter()
        .map(|o| o.value.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the caller's token and (for a session) role may write the policy.
fn writes_policy(principal: &Principal) -> bool {
    let need = Need::write(Group::Policy);
    principal.scopes.allows(need)
        && principal
            .person
            .as_ref()
            .is_none_or(|p| p.role.scopes().allows(need))
}

fn may_apply(org: OrgView<'_>, principal: &Principal, entry: &TagOwner) -> bool {
    if writes_policy(principal) {
        return true;
    }
    match &principal.person {
        Some(p) => {
            let Some(user) = org.user(&p.user_id) else {
                return false;
            };
            let email = user.profile.email.to_lowercase();
            let groups: Vec<String> = org
                .groups_of(&user.id)
                .map(|g| g.display_name.clone())
                .collect();
            entry.owners.iter().any(|o| match &o.value {
                Who::User(u) => u == &user.id || (!email.is_empty() && u.to_lowercase() == email),
                Who::Group(g) => groups.iter().any(|x| x == g),
                _ => false,
            })
        }
        None => entry
            .owners
            .iter()
            .any(|o| matches!(&o.value, Who::Token(t) if t == &principal.token_id)),
    }
}
