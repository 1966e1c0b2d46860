//! Decisions about the directory: people (invitations, provisioning, profile changes,
//! deactivation, removal with their devices), groups and memberships, and SSO-domain rules.
//!
//! Uniqueness (userName, email, externalId, a group's displayName) is checked here against the
//! read models; the callers run every directory write of an organization under one lock
//! (`AppState::directory_lock`), so two writes cannot both pass the same check.

pub mod groups;
pub mod role;
pub mod users;

pub use groups::{
    NewGroup, create_group, remove_group, replace_members, set_members, update_group,
};
pub use role::Role;
pub use users::{
    NewUser, add_domain, check_domain, check_email, check_profile, invite_user, provision_user,
    remove_domain, remove_user, replace_user, set_active,
};
