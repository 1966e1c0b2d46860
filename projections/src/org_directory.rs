//! The directory as one organization sees it: people, groups, memberships and SSO settings.

use crate::devices::Device;
use crate::directory::{Group, OidcConfig, User, identity_key};
use crate::org::OrgView;

impl<'a> OrgView<'a> {
    fn directory(&self) -> &'a crate::directory::Directory {
        &self.models.directory
    }

    fn org_key(&self, value: String) -> (String, String) {
        (self.org_id.to_owned(), value)
    }

    /// The user `id`, if they belong to this organization.
    pub fn user(&self, id: &str) -> Option<&'a User> {
        self.directory()
            .user(id)
            .filter(|u| u.org_id == self.org_id)
    }

    /// The organization's users, ordered by `(created_at, id)`.
    pub fn users(&self) -> impl DoubleEndedIterator<Item = &'a User> + 'a {
        let d = self.directory();
        d.users_by_org
            .get(self.org_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|(_, id)| d.user(id))
    }

    /// How many users the organization has.
    pub fn user_count(&self) -> usize {
        self.directory()
            .users_by_org
            .get(self.org_id)
            .map_or(0, |s| s.len())
    }

    fn user_by(
        &self,
        map: &'a imbl::HashMap<(String, String), String>,
        value: String,
    ) -> Option<&'a User> {
        map.get(&self.org_key(value)).and_then(|id| self.user(id))
    }

    /// The user whose SCIM `userName` is `name`, case-insensitively.
    pub fn user_by_name(&self, name: &str) -> Option<&'a User> {
        self.user_by(&self.directory().by_user_name, name.to_lowercase())
    }

    /// The user whose email is `email`, case-insensitively.
    pub fn user_by_email(&self, email: &str) -> Option<&'a User> {
        self.user_by(&self.directory().by_email, email.to_lowercase())
    }

    /// The user whose `externalId` is `id` (case-exact).
    pub fn user_by_external_id(&self, id: &str) -> Option<&'a User> {
        self.user_by(&self.directory().by_external_id, id.to_owned())
    }

    /// The user an OpenID identity (`iss`, `sub`) was linked to by an earlier sign-in.
    pub fn user_by_identity(&self, issuer: &str, subject: &str) -> Option<&'a User> {
        self.user_by(&self.directory().by_identity, identity_key(issuer, subject))
    }

    /// The pending user invited with the code whose SHA-256 is `hash`.
    pub fn user_by_invitation(&self, hash: &[u8; 32]) -> Option<&'a User> {
        self.directory()
            .by_invitation
            .get(hash)
            .and_then(|id| self.user(id))
    }

    /// The user a device's `owner` names (by id, or by email), if they are in the directory.
    pub fn owner_of(&self, device: &Device) -> Option<&'a User> {
        let owner = device.owner.as_deref()?;
        self.user(owner).or_else(|| self.user_by_email(owner))
    }

    /// The user's live devices, in creation order: those whose owner is the user's id or,
    /// case-insensitively, their email.
    pub fn devices_of(&self, user: &User) -> Vec<&'a Device> {
        let Some(index) = self.device_index() else {
            return Vec::new();
        };
        let mut ids: Vec<&(i64, String)> = index.owned_by(&user.id).into_iter().flatten().collect();
        if !user.profile.email.is_empty() {
            ids.extend(index.owned_by(&user.profile.email).into_iter().flatten());
        }
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .filter_map(|(_, id)| self.live_device(id))
            .collect()
    }

    /// The group `id`, if it belongs to this organization.
    pub fn group(&self, id: &str) -> Option<&'a Group> {
        self.directory()
            .group(id)
            .filter(|g| g.org_id == self.org_id)
    }

    /// The organization's groups, ordered by `(created_at, id)`.
    pub fn groups(&self) -> impl DoubleEndedIterator<Item = &'a Group> + 'a {
        let d = self.directory();
        d.groups_by_org
            .get(self.org_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|(_, id)| d.group(id))
    }

    /// The group whose `displayName` is `name`, case-insensitively.
    pub fn group_by_name(&self, name: &str) -> Option<&'a Group> {
        let d = self.directory();
        d.group_by_name
            .get(&self.org_key(name.to_lowercase()))
            .and_then(|id| self.group(id))
    }

    /// The group whose `externalId` is `id` (case-exact).
    pub fn group_by_external_id(&self, id: &str) -> Option<&'a Group> {
        let d = self.directory();
        d.group_by_external_id
            .get(&self.org_key(id.to_owned()))
            .and_then(|id| self.group(id))
    }

    /// The groups `user_id` is in, in id order: the one read model the policy engine asks.
    pub fn groups_of(&self, user_id: &str) -> impl Iterator<Item = &'a Group> + 'a {
        let view = *self;
        self.directory()
            .groups_of
            .get(user_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(move |id| view.group(id))
    }

    /// The members of group `id`, in id order (none if the group is not this organization's).
    pub fn members(&self, group_id: &str) -> impl Iterator<Item = &'a User> + 'a {
        let view = *self;
        self.group(group_id)
            .into_iter()
            .flat_map(|g| g.members.iter())
            .filter_map(move |id| view.user(id))
    }

    /// The role an SSO-domain rule gives people of `domain` (lower-case, no `@`).
    pub fn sso_domain(&self, domain: &str) -> Option<&'a str> {
        self.directory()
            .domains
            .get(self.org_id)
            .and_then(|d| d.get(&domain.to_lowercase()))
            .map(String::as_str)
    }

    /// The organization's SSO-domain rules, `(domain, role)` in domain order.
    pub fn sso_domains(&self) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
        self.directory()
            .domains
            .get(self.org_id)
            .into_iter()
            .flat_map(|d| d.iter())
    }

    /// The organization's OpenID provider, once configured.
    pub fn oidc(&self) -> Option<&'a OidcConfig> {
        self.directory().oidc.get(self.org_id)
    }
}
