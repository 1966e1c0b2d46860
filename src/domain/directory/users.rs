//! Decisions about people: invite, provision, change, (de)activate, remove (with every device
//! they own, in the same append), and the SSO-domain rules that let people join by signing in.

use events::Expected;
use events::event::{
    DeviceRemoved, SsoDomainAdded, SsoDomainRemoved, UserDeactivated, UserInvited, UserProfile,
    UserProvisioned, UserReactivated, UserRemoved, UserUpdated,
};
use events::stream::Stream;
use projections::OrgView;
use projections::directory::User;

use super::Role;
use crate::domain::text::{check_text, echo};
use crate::domain::{Decision, Rejection};

/// Why a user's devices were removed with them.
pub const USER_REMOVED: &str = "user_removed";

/// Longest userName, email or externalId (an email address's limit).
pub const MAX_NAME: usize = 254;
/// Longest display, given or family name.
pub const MAX_DISPLAY: usize = 256;

/// A person to add to the directory.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub profile: UserProfile,
    pub role: Role,
    pub active: bool,
    /// `scim`, `sso` or `api`.
    pub source: &'static str,
}

/// Finds a user of the organization; another organization's user is not in the view.
pub fn find<'a>(org: OrgView<'a>, id: &str) -> Result<&'a User, Rejection> {
    org.user(id)
        .ok_or_else(|| Rejection::NotFound(format!("no user '{}'", echo(id))))
}

/// Checks an email address's shape: one `@` with something on each side, a dot in the domain.
pub fn check_email(field: &str, email: &str) -> Result<(), Rejection> {
    check_text(field, email, 3, MAX_NAME)?;
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(Rejection::Invalid(format!(
            "field '{field}' must be an email address, not '{}'",
            echo(email)
        )))
    }
}

/// Checks every field of a profile.
pub fn check_profile(p: &UserProfile) -> Result<(), Rejection> {
    check_text("userName", &p.user_name, 1, MAX_NAME)?;
    if !p.email.is_empty() {
        check_email("email", &p.email)?;
    }
    check_text("displayName", &p.display_name, 0, MAX_DISPLAY)?;
    if let Some(v) = &p.given_name {
        check_text("name.givenName", v, 0, MAX_DISPLAY)?;
    }
    if let Some(v) = &p.family_name {
        check_text("name.familyName", v, 0, MAX_DISPLAY)?;
    }
    if let Some(v) = &p.external_id {
        check_text("externalId", v, 1, MAX_NAME)?;
    }
    Ok(())
}

/// Refuses a profile whose userName, email or externalId another user of the organization
/// already has (`id`: the user being changed, who may keep their own).
fn check_unique(org: OrgView<'_>, id: &str, p: &UserProfile) -> Result<(), Rejection> {
    let taken = |other: Option<&User>, what: &str, value: &str| match other {
        Some(u) if u.id != id => Err(Rejection::Conflict(format!(
            "another user ('{}') already has the {what} '{}'",
            u.id,
            echo(value)
        ))),
        _ => Ok(()),
    };
    taken(org.user_by_name(&p.user_name), "userName", &p.user_name)?;
    if !p.email.is_empty() {
        taken(org.user_by_email(&p.email), "email", &p.email)?;
    }
    if let Some(x) = &p.external_id {
        taken(org.user_by_external_id(x), "externalId", x)?;
    }
    Ok(())
}

/// Adds a person provisioned by SCIM, an SSO-domain rule or the API.
pub fn provision_user(org: OrgView<'_>, user: NewUser) -> Result<Decision, Rejection> {
    check_profile(&user.profile)?;
    check_unique(org, &user.id, &user.profile)?;
    let stream = Stream::user(user.id.as_str());
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(
            stream,
            UserProvisioned {
                user_id: user.id,
                profile: user.profile,
                role: user.role.as_str().to_owned(),
                active: user.active,
                source: user.source.to_owned(),
            },
        ))
}

/// Invites `email` with `role`: a pending user who joins on their first sign-in.
pub fn invite_user(
    org: OrgView<'_>,
    id: &str,
    email: &str,
    role: Role,
    invitation_hash: [u8; 32],
    expires_at: i64,
) -> Result<Decision, Rejection> {
    check_email("email", email)?;
    if let Some(u) = org.user_by_email(email).or_else(|| org.user_by_name(email)) {
        return Err(Rejection::Conflict(format!(
            "'{}' is already a user of the organization ('{}', {})",
            echo(email),
            u.id,
            u.status()
        )));
    }
    let stream = Stream::user(id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(
            stream,
            UserInvited {
                user_id: id.to_owned(),
                email: email.to_owned(),
                role: role.as_str().to_owned(),
                invitation_hash,
                expires_at,
            },
        ))
}

/// Replaces a user's profile and, when `active` is given, their state: `user.updated`,
/// `user.deactivated` or `user.reactivated` for what actually changes (nothing: no event).
pub fn replace_user(
    org: OrgView<'_>,
    id: &str,
    profile: UserProfile,
    active: Option<bool>,
) -> Result<Decision, Rejection> {
    let user = find(org, id)?;
    check_profile(&profile)?;
    check_unique(org, id, &profile)?;
    let stream = Stream::user(id);
    let mut d = Decision::none().expect(stream.clone(), Expected::Exact(user.revision));
    if profile != user.profile {
        d = d.event(
            stream.clone(),
            UserUpdated {
                user_id: id.to_owned(),
                profile,
            },
        );
    }
    if let Some(active) = active {
        d = with_active(d, user, active);
    }
    Ok(if d.is_empty() { Decision::none() } else { d })
}

/// Deactivates (`false`) or reactivates (`true`) a user; nothing if they already are.
pub fn set_active(org: OrgView<'_>, id: &str, active: bool) -> Result<Decision, Rejection> {
    let user = find(org, id)?;
    let d = Decision::none().expect(Stream::user(id), Expected::Exact(user.revision));
    let d = with_active(d, user, active);
    Ok(if d.is_empty() { Decision::none() } else { d })
}

fn with_active(d: Decision, user: &User, active: bool) -> Decision {
    let stream = Stream::user(user.id.as_str());
    let user_id = user.id.clone();
    match (user.active, active) {
        (true, false) => d.event(stream, UserDeactivated { user_id }),
        (false, true) => d.event(stream, UserReactivated { user_id }),
        _ => d,
    }
}

/// Removes a user and every live device they own, in one append: all of it or none, also
/// across a crash. Each device is expected at the revision seen, so a device changed (or
/// reassigned) meanwhile makes the executor decide again.
pub fn remove_user(org: OrgView<'_>, id: &str, reason: &str) -> Result<Decision, Rejection> {
    let user = find(org, id)?;
    let stream = Stream::user(id);
    // Every registration moves the organization's address allocator: expecting it unchanged
    // means a device joining for this user meanwhile makes the executor decide again, with
    // that device in the removal.
    let ipam = Stream::ipam(org.id());
    let mut d = Decision::none()
        .expect(stream.clone(), Expected::Exact(user.revision))
        .expect(
            ipam,
            org.ipam_revision()
                .map_or(Expected::NoStream, Expected::Exact),
        );
    for device in org.devices_of(user) {
        let s = Stream::device(device.id.as_str());
        d = d.expect(s.clone(), Expected::Exact(device.revision)).event(
            s,
            DeviceRemoved {
                device_id: device.id.clone(),
                reason: USER_REMOVED.to_owned(),
            },
        );
    }
    Ok(d.event(
        stream,
        UserRemoved {
            user_id: id.to_owned(),
            reason: reason.to_owned(),
        },
    ))
}

/// Normalizes an SSO domain: lower-case, no leading `@`, a dot inside, no spaces.
pub fn check_domain(domain: &str) -> Result<String, Rejection> {
    let d = domain.trim_start_matches('@').to_lowercase();
    check_text("domain", &d, 3, 253)?;
    let ok = d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && d.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(d)
    } else {
        Err(Rejection::Invalid(format!(
            "field 'domain' must be a domain name like 'example.com', not '{}'",
            echo(domain)
        )))
    }
}

/// Lets people of `domain` join with `role` when they sign in; replaces the rule's role.
pub fn add_domain(org: OrgView<'_>, domain: &str, role: Role) -> Result<Decision, Rejection> {
    let domain = check_domain(domain)?;
    if org.sso_domain(&domain) == Some(role.as_str()) {
        return Ok(Decision::none());
    }
    Ok(Decision::none().event(
        Stream::org(org.id()),
        SsoDomainAdded {
            org_id: org.id().to_owned(),
            domain,
            role: role.as_str().to_owned(),
        },
    ))
}

/// Ends an SSO-domain rule; people who joined by it stay.
pub fn remove_domain(org: OrgView<'_>, domain: &str) -> Result<Decision, Rejection> {
    let domain = check_domain(domain)?;
    if org.sso_domain(&domain).is_none() {
        return Err(Rejection::NotFound(format!(
            "no SSO-domain rule for '{domain}'"
        )));
    }
    Ok(Decision::none().event(
        Stream::org(org.id()),
        SsoDomainRemoved {
            org_id: org.id().to_owned(),
            domain,
        },
    ))
}
