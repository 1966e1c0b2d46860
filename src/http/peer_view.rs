//! A device's peers as the API shows them (`GET /devices/{id}`, `GET /machine/netmap`): the
//! peer-map model's ids and ports joined with the devices' names, keys and addresses.

use std::collections::BTreeMap;

use super::devices::{Addresses, Peer, PeerPorts};
use crate::state::AppState;

/// The peers of `device_id` and its peer-map version, as of at least the read models' current
/// position (read-your-writes: a policy or tag change just acknowledged is reflected).
pub async fn peers_of(state: &AppState, org_id: &str, device_id: &str) -> (Vec<Peer>, u64) {
    let position = state.models().load().position;
    let timeout = state.settings().read_your_writes_timeout;
    if !state.peers().wait_for(position, timeout).await {
        tracing::warn!(
            position,
            "peer maps lag the read models; serving the last ones"
        );
    }
    let p = state.peers().of(org_id, device_id);
    let models = state.models().load();
    let org = models.state.org(org_id);
    let mut by_id: BTreeMap<&str, (Vec<PeerPorts>, bool)> = BTreeMap::new();
    for (dst, ports) in &p.outbound {
        by_id.entry(dst).or_default().0 = ports
            .iter()
            .map(|(proto, range)| PeerPorts {
                proto: proto.to_string(),
                ports: range.to_string(),
            })
            .collect();
    }
    for src in &p.inbound {
        by_id.entry(src).or_default().1 = true;
    }
    let peers = by_id
        .into_iter()
        .filter_map(|(id, (ports, inbound))| {
            let d = org.live_device(id)?;
            Some(Peer {
                id: d.id.clone(),
                hostname: d.hostname.clone(),
                public_key: d.public_key.clone(),
                addresses: Addresses {
                    ipv4: d.ipv4.clone(),
                    ipv6: d.ipv6.clone(),
                },
                tags: d.tags.clone(),
                ports,
                inbound,
            })
        })
        .collect();
    (peers, p.version)
}
