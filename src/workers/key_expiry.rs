//! Key expiry as an event: when a device's authentication runs out (`key_expires_at` passes),
//! the sweeper records `device.key_expired` as the system actor. The credential stops working
//! at that instant whether or not the event is written yet (it is checked against the clock);
//! the event is what tells everyone else — the audit log, SSE, webhooks, and the peer maps,
//! which drop the device from every other device's map (DESIGN §3.5 lists key expiry among
//! the transitions that are events).

use events::Actor;
use projections::OrgView;

use crate::domain::{Decision, Rejection, devices};
use crate::execute::{self, Command, ExecuteError, Outcome, execute};
use crate::mint;
use crate::state::AppState;

/// Records the expiry of device `id` if its key has run out at `now` and it is not recorded.
pub fn decide(org: OrgView<'_>, id: &str, now: i64) -> Result<Decision, Rejection> {
    let Some(device) = org.live_device(id) else {
        return Ok(Decision::none());
    };
    if device.key_expired || device.key_expires_at.is_none_or(|t| t > now) {
        return Ok(Decision::none());
    }
    devices::change(org, id, |d| {
        devices::decide_expire_key(d)
            .map(events::Event::from)
            .into_iter()
            .collect()
    })
}

/// Records every key that ran out by `now_micros`; returns the devices whose expiry it wrote.
pub async fn expire_once(
    state: &AppState,
    now_micros: i64,
) -> Result<Vec<String>, ExecuteError<Rejection>> {
    execute::writable(state)?;
    let due: Vec<(String, String)> = {
        let models = state.models().load();
        let mut due = Vec::new();
        for org in models.state.orgs.by_id.keys() {
            for d in models.state.devices.of_org(org) {
                if !d.key_expired && d.key_expires_at.is_some_and(|t| t <= now_micros) {
                    due.push((org.clone(), d.id.clone()));
                }
            }
        }
        due
    };
    let mut expired = Vec::new();
    for (org_id, device_id) in due {
        let command = Command::new(
            org_id,
            Actor::system("sweeper: the device's key expired"),
            mint::id("req"),
        );
        match execute(state, command, |org| decide(org, &device_id, now_micros)).await {
            Ok(Outcome::Appended(_)) => expired.push(device_id),
            Ok(Outcome::Unchanged) => {}
            // Contended or busy: the next sweep looks again.
            Err(ExecuteError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(expired)
}
