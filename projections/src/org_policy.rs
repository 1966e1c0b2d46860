//! The policy, posture and webhook read models as one organization sees them.

use crate::org::OrgView;
use crate::policies::OrgPolicy;
use crate::posture::{DevicePosture, OrgPosture};
use crate::webhooks::Webhook;

static NO_POLICY: std::sync::LazyLock<OrgPolicy> = std::sync::LazyLock::new(OrgPolicy::default);
static NO_POSTURE: std::sync::LazyLock<OrgPosture> = std::sync::LazyLock::new(OrgPosture::default);

impl<'a> OrgView<'a> {
    /// The organization's policy: its versions and failing tests (empty before the first).
    pub fn policy(&self) -> &'a OrgPolicy {
        self.models
            .policies
            .by_org
            .get(self.org_id)
            .unwrap_or(&NO_POLICY)
    }

    /// The organization's posture requirements (none before they are first set).
    pub fn posture(&self) -> &'a OrgPosture {
        self.models
            .posture
            .orgs
            .get(self.org_id)
            .unwrap_or(&NO_POSTURE)
    }

    /// What the log says of the posture of device `id`, if it is this organization's.
    pub fn device_posture(&self, id: &str) -> Option<&'a DevicePosture> {
        self.device(id)?;
        self.models.posture.devices.get(id)
    }

    /// The webhook `id`, if it belongs to this organization.
    pub fn webhook(&self, id: &str) -> Option<&'a Webhook> {
        self.models
            .webhooks
            .get(id)
            .filter(|w| w.org_id == self.org_id)
    }

    /// The organization's webhooks, ordered by `(created_at, id)`.
    pub fn webhooks(&self) -> impl DoubleEndedIterator<Item = &'a Webhook> + 'a {
        let all = &self.models.webhooks;
        all.by_org
            .get(self.org_id)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|(_, id)| all.get(id))
    }
}
