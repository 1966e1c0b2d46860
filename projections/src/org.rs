//! The read models as one organization sees them.
//!
//! Handlers get an [`OrgView`] from [`Models::org`] and never the whole store: every lookup by
//! id answers `None` for another organization's item, and every collection is read from that
//! organization's own index. So tenant isolation does not rest on each handler remembering an
//! `org_id ==` check, and no request scans another tenant's rows.

use crate::Models;
use crate::device_index::OrgDevices;
use crate::devices::Device;
use crate::keys::Key;
use crate::orgs::Org;
use crate::tokens::Token;

/// One organization's slice of the read models. Cheap: two references.
#[derive(Debug, Clone, Copy)]
pub struct OrgView<'a> {
    models: &'a Models,
    org_id: &'a str,
}

impl Models {
    /// The read models as `org_id` sees them.
    pub fn org<'a>(&'a self, org_id: &'a str) -> OrgView<'a> {
        OrgView {
            models: self,
            org_id,
        }
    }
}

impl<'a> OrgView<'a> {
    pub fn id(&self) -> &'a str {
        self.org_id
    }

    /// The organization itself: plan, limits, settings (`None` if it does not exist).
    pub fn settings(&self) -> Option<&'a Org> {
        self.models.orgs.get(self.org_id)
    }

    /// The organization's read-model version: its own sequence number of its last event
    /// (0 before it exists). Anything this view answers changes only when this does.
    pub fn version(&self) -> u64 {
        self.settings().map_or(0, |o| o.last_seq)
    }

    /// The token `id`, if it belongs to this organization (revoked ones too).
    pub fn token(&self, id: &str) -> Option<&'a Token> {
        self.models
            .tokens
            .get(id)
            .filter(|t| t.org_id == self.org_id)
    }

    /// The organization's tokens, revoked ones too, ordered by `(created_at, id)`.
    pub fn tokens(&self) -> impl DoubleEndedIterator<Item = &'a Token> + 'a {
        let tokens = &self.models.tokens;
        tokens
            .by_org
            .get(self.org_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|(_, id)| tokens.get(id))
    }

    /// The pre-auth key `id`, if it belongs to this organization (revoked ones too).
    pub fn key(&self, id: &str) -> Option<&'a Key> {
        self.models.keys.get(id).filter(|k| k.org_id == self.org_id)
    }

    /// The organization's pre-auth keys, revoked ones too, ordered by `(created_at, id)`.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &'a Key> + 'a {
        let keys = &self.models.keys;
        keys.by_org
            .get(self.org_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|(_, id)| keys.get(id))
    }

    /// The device `id`, if it belongs to this organization, removed ones (tombstones) too.
    pub fn device(&self, id: &str) -> Option<&'a Device> {
        self.models
            .devices
            .get(id)
            .filter(|d| d.org_id == self.org_id)
    }

    /// The device `id`, if it belongs to this organization and was not removed.
    pub fn live_device(&self, id: &str) -> Option<&'a Device> {
        self.device(id).filter(|d| !d.is_removed())
    }

    /// The organization's live devices, ordered by `(created_at, id)`.
    pub fn devices(&self) -> impl DoubleEndedIterator<Item = &'a Device> + 'a {
        self.models.devices.of_org(self.org_id)
    }

    /// The live-device indexes the list endpoint pages through (`None`: no live device).
    pub fn device_index(&self) -> Option<&'a OrgDevices> {
        self.models.devices.index(self.org_id)
    }

    /// How many live devices the organization has.
    pub fn device_count(&self) -> usize {
        self.models.devices.count(self.org_id)
    }

    /// The organization's removed devices still in the read model, as `(removed_at, id)`,
    /// oldest removal first.
    pub fn removed_devices(&self) -> impl Iterator<Item = &'a (i64, String)> + 'a {
        self.models.devices.removed_of_org(self.org_id)
    }

    /// The organization's overlay addresses (`None`: it never registered a device).
    pub fn addresses(&self) -> Option<&'a crate::devices::Addresses> {
        self.models.devices.addresses(self.org_id)
    }

    /// The last revision of the organization's `ipam:<org>` stream (`None`: no registration).
    pub fn ipam_revision(&self) -> Option<u64> {
        self.models.devices.ipam_revision(self.org_id)
    }
}

/// The directory's lookups live beside, in their own file.
#[path = "org_directory.rs"]
mod directory;

/// And the policy's and posture's.
#[path = "org_policy.rs"]
mod policy;

#[cfg(test)]
mod tests {
    use events::event::{KeyCreated, TokenCreated};
    use events::{Event, Recorded};

    use crate::{Models, Projection};

    fn recorded(position: u64, org: &str, stream: &str, event: impl Into<Event>) -> Recorded {
        crate::testing::recorded(position, org, stream, 0, position as i64, event)
    }

    fn token(id: &str) -> TokenCreated {
        TokenCreated {
            token_id: id.into(),
            prefix: "qzt_".into(),
            secret_hash: [id.len() as u8; 32],
            scopes: vec!["read".into()],
            description: String::new(),
            expires_at: 10,
            parent_token_id: None,
            user_id: None,
        }
    }

    fn key(id: &str) -> KeyCreated {
        KeyCreated {
            key_id: id.into(),
            prefix: "qzk_".into(),
            secret_hash: [id.len() as u8; 32],
            reusable: false,
            ephemeral: false,
            tags: vec![],
            owner: None,
            expires_at: 10,
            description: String::new(),
            max_uses: None,
        }
    }

    #[test]
    fn a_view_finds_only_its_own_organizations_items() {
        let mut m = Models::default();
        m.apply(&recorded(1, "acme", "token:t1", token("t1")));
        m.apply(&recorded(2, "globex", "token:t22", token("t22")));
        m.apply(&recorded(3, "acme", "key:k1", key("k1")));
        m.apply(&recorded(4, "globex", "key:k22", key("k22")));
        let acme = m.org("acme");
        let globex = m.org("globex");
        assert!(acme.token("t1").is_some() && acme.token("t22").is_none());
        assert!(globex.key("k22").is_some() && globex.key("k1").is_none());
        let ids: Vec<&str> = acme.tokens().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t1"]);
        let ids: Vec<&str> = globex.keys().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["k22"]);
        assert!(m.org("initech").tokens().next().is_none());
        assert!(acme.device("dev_x").is_none() && acme.device_index().is_none());
    }
}
