//! Decisions about groups: the identity provider creates, renames and deletes them and sets
//! their members (SCIM), or an OpenID sign-in does for the groups its `groups` claim names.
//! The API itself never changes a group.

use events::Expected;
use events::event::{
    GroupCreated, GroupMemberAdded, GroupMemberRemoved, GroupRemoved, GroupUpdated,
};
use events::stream::Stream;
use projections::OrgView;
use projections::directory::Group;

use super::users::{MAX_DISPLAY, MAX_NAME};
use crate::domain::text::{check_text, echo};
use crate::domain::{Decision, Rejection};

/// A group to create, with its first members.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// `scim` or `oidc`.
    pub source: &'static str,
    pub members: Vec<String>,
}

/// Finds a group of the organization; another organization's group is not in the view.
pub fn find<'a>(org: OrgView<'a>, id: &str) -> Result<&'a Group, Rejection> {
    org.group(id)
        .ok_or_else(|| Rejection::NotFound(format!("no group '{}'", echo(id))))
}

fn check_names(
    org: OrgView<'_>,
    id: &str,
    display_name: &str,
    external_id: Option<&str>,
) -> Result<(), Rejection> {
    check_text("displayName", display_name, 1, MAX_DISPLAY)?;
    if let Some(x) = external_id {
        check_text("externalId", x, 1, MAX_NAME)?;
    }
    let taken = |other: Option<&Group>, what: &str, value: &str| match other {
        Some(g) if g.id != id => Err(Rejection::Conflict(format!(
            "another group ('{}') already has the {what} '{}'",
            g.id,
            echo(value)
        ))),
        _ => Ok(()),
    };
    taken(org.group_by_name(display_name), "displayName", display_name)?;
    if let Some(x) = external_id {
        taken(org.group_by_external_id(x), "externalId", x)?;
    }
    Ok(())
}

/// Every id in `members` must be a user of the organization.
fn check_members(org: OrgView<'_>, members: &[String]) -> Result<(), Rejection> {
    match members.iter().find(|m| org.user(m).is_none()) {
        Some(m) => Err(Rejection::Invalid(format!(
            "member '{}' is not a user of the organization",
            echo(m)
        ))),
        None => Ok(()),
    }
}

/// Creates a group and adds its first members, in one append.
pub fn create_group(org: OrgView<'_>, g: NewGroup) -> Result<Decision, Rejection> {
    check_names(org, &g.id, &g.display_name, g.external_id.as_deref())?;
    check_members(org, &g.members)?;
    let stream = Stream::group(g.id.as_str());
    let mut d = Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(
            stream.clone(),
            GroupCreated {
                group_id: g.id.clone(),
                display_name: g.display_name,
                external_id: g.external_id,
                source: g.source.to_owned(),
            },
        );
    let mut members = g.members;
    members.sort();
    members.dedup();
    for user_id in members {
        d = d.event(
            stream.clone(),
            GroupMemberAdded {
                group_id: g.id.clone(),
                user_id,
            },
        );
    }
    Ok(d)
}

/// Renames or re-identifies a group; nothing if both are unchanged.
pub fn update_group(
    org: OrgView<'_>,
    id: &str,
    display_name: &str,
    external_id: Option<&str>,
) -> Result<Decision, Rejection> {
    let group = find(org, id)?;
    check_names(org, id, display_name, external_id)?;
    if group.display_name == display_name && group.external_id.as_deref() == external_id {
        return Ok(Decision::none());
    }
    let stream = Stream::group(id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::Exact(group.revision))
        .event(
            stream,
            GroupUpdated {
                group_id: id.to_owned(),
                display_name: display_name.to_owned(),
                external_id: external_id.map(str::to_owned),
            },
        ))
}

/// Adds and removes members; only what changes becomes an event, so repeating it is a no-op
/// (identity providers resend memberships).
pub fn set_members(
    org: OrgView<'_>,
    id: &str,
    add: &[String],
    remove: &[String],
) -> Result<Decision, Rejection> {
    let group = find(org, id)?;
    check_members(org, add)?;
    let stream = Stream::group(id);
    let mut d = Decision::none().expect(stream.clone(), Expected::Exact(group.revision));
    let mut seen = std::collections::BTreeSet::new();
    for user_id in remove {
        if group.members.contains(user_id) && seen.insert(user_id) {
            d = d.event(
                stream.clone(),
                GroupMemberRemoved {
                    group_id: id.to_owned(),
                    user_id: user_id.clone(),
                },
            );
        }
    }
    for user_id in add {
        if !group.members.contains(user_id) && seen.insert(user_id) {
            d = d.event(
                stream.clone(),
                GroupMemberAdded {
                    group_id: id.to_owned(),
                    user_id: user_id.clone(),
                },
            );
        }
    }
    Ok(if d.is_empty() { Decision::none() } else { d })
}

/// Makes `members` the group's whole membership.
pub fn replace_members(
    org: OrgView<'_>,
    id: &str,
    members: &[String],
) -> Result<Decision, Rejection> {
    let group = find(org, id)?;
    let remove: Vec<String> = group
        .members
        .iter()
        .filter(|m| !members.contains(m))
        .cloned()
        .collect();
    set_members(org, id, members, &remove)
}

/// Deletes a group; its memberships end with it.
pub fn remove_group(org: OrgView<'_>, id: &str) -> Result<Decision, Rejection> {
    let group = find(org, id)?;
    let stream = Stream::group(id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::Exact(group.revision))
        .event(
            stream,
            GroupRemoved {
                group_id: id.to_owned(),
            },
        ))
}
