//! Tag ownership (`tag_owners` in the policy): once the policy lists any, only listed tags can
//! be applied — to a device (`PATCH /devices/{id}`, `POST /devices/{id}/tags`) or to a
//! pre-auth key, whose devices join with them — and only by someone the list allows:
//!
//! - an API token with `policy:write` (or `write`), or one the list names (`token:<id>`), so
//!   automation gets exactly the tags it needs;
//! - a person signed in with SSO whose role may write the policy (admin); any other person
//!   only tags the list gives them or one of their groups (`user:`, `group:`), and only on
//!   their own devices.
//!
//! Removing a tag is never restricted: it only ever narrows what a device may reach.
//! Without `tag_owners`, tags are an administrator's to set: people with the `member` role
//! may not change them, tokens with `devices:write` may.

use projections::OrgView;

use super::auth::Principal;
use super::problem::Problem;
use crate::domain::scope::{Group, Need};
use crate::policy::Principal as Who;
use crate::policy::model::TagOwner;
use crate::state::AppState;

/// The policy's tag owners (empty: the policy lists none, or there is no policy), as of at
/// least the read models' current position.
async fn owners(state: &AppState, org_id: &str) -> Vec<TagOwner> {
    let position = state.models().load().position;
    state
        .peers()
        .wait_for(position, state.settings().read_your_writes_timeout)
        .await;
    state
        .peers()
        .with_org(org_id, |o| o.policy().map(|p| p.tag_owners.clone()))
        .flatten()
        .unwrap_or_default()
}

/// The tags of `tags` that device `id` does not carry yet (all of them when the caller cannot
/// see the device: the change answers 404 then, before any tag is applied).
pub fn added_to_device(
    state: &AppState,
    principal: &Principal,
    id: &str,
    tags: &[String],
) -> Vec<String> {
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    match org.live_device(id).filter(|d| principal.may_manage(org, d)) {
        Some(d) => tags
            .iter()
            .filter(|t| !d.tags.contains(t))
            .cloned()
            .collect(),
        None => Vec::new(),
    }
}

/// Refuses a change of tags unless `principal` may apply every tag of `added` (the tags being
/// added, not ones the device or key already has; empty for a removal).
pub async fn check_change(
    state: &AppState,
    principal: &Principal,
    added: &[String],
) -> Result<(), Problem> {
    let owners = owners(state, &principal.org_id).await;
    if owners.is_empty() {
        return principal.may_tag();
    }
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    for tag in added {
        let Some(entry) = owners.iter().find(|o| &o.tag.value == tag) else {
            return Err(Problem::forbidden(format!(
                "'{tag}' is not in the policy's tag_owners: only listed tags can be applied; add it there first"
            )));
        };
        if !may_apply(org, principal, entry) {
            return Err(Problem::forbidden(format!(
                "the policy's tag_owners do not let this caller apply '{tag}' (owners: {}); a token needs policy:write or to be listed as token:{}",
                list(entry),
                principal.token_id
            )));
        }
    }
    Ok(())
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

fn may_apply(org: OrgView<'_>, principal: &Principal, entry: &TagOwner) -> bool {
    let writes_policy = principal.scopes.allows(Need::write(Group::Policy));
    match &principal.person {
        Some(p) if p.role.scopes().allows(Need::write(Group::Policy)) && writes_policy => true,
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
        None => {
            writes_policy
                || entry
                    .owners
                    .iter()
                    .any(|o| matches!(&o.value, Who::Token(t) if t == &principal.token_id))
        }
    }
}
