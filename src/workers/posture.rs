//! The posture worker: turns what heartbeats report into posture events. Heartbeats are not
//! events; when a device's signals differ from the ones the log last recorded, this appends
//! `posture.reported`, and `posture.violation` / `posture.restored` when its compliance with the
//! organization's requirements changes — transitions only, however often devices report.
//!
//! It looks at the devices whose signals changed since its last step (the heartbeat store keeps
//! that set), and at every device on its first step, so a restart misses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use events::event::Signals;
use events::{Actor, Recorded};

use super::{StepError, Trigger, Worker};
use crate::execute::{Command, ExecuteError, execute};
use crate::mint;
use crate::state::AppState;

/// Reports decided in one append at most.
const CHUNK: usize = 512;

pub struct PostureWorker {
    pub every: Duration,
    /// False until the first full look.
    pub started: bool,
}

impl Worker for PostureWorker {
    fn name(&self) -> &'static str {
        "posture"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(self.every)
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        let full = !self.started;
        record_once(state, full).await?;
        self.started = true;
        Ok(())
    }
}

/// Records the signals that changed (all of them when `full`), per organization.
pub async fn record_once(state: &AppState, full: bool) -> Result<usize, StepError> {
    let mut by_org: BTreeMap<String, Vec<(String, Signals)>> = BTreeMap::new();
    let changed = state.heartbeats().take_posture_changes();
    {
        let models = state.models().load();
        let devices = &models.state.devices;
        let pairs: Vec<(String, String)> = if full {
            state
                .heartbeats()
                .all_signals()
                .into_iter()
                .filter_map(|(id, _)| Some((devices.get(&id)?.org_id.clone(), id)))
                .collect()
        } else {
            changed
        };
        for (org, id) in pairs {
            if let Some(seen) = state.heartbeats().get(&id) {
                by_org.entry(org).or_default().push((id, seen.signals()));
            }
        }
    }
    let mut recorded = 0;
    for (org_id, reports) in by_org {
        for chunk in reports.chunks(CHUNK) {
            let command = Command::new(
                org_id.clone(),
                Actor::system("posture: signals reported by heartbeats"),
                mint::id("req"),
            );
            match execute(state, command, |org| {
                crate::domain::posture::report(org, chunk)
            })
            .await
            {
                Ok(_) => recorded += chunk.len(),
                // Still contended after every attempt: put them back for the next step.
                Err(ExecuteError::Refused(_)) => {
                    state
                        .heartbeats()
                        .requeue_posture(&org_id, chunk.iter().map(|(id, _)| id));
                }
                Err(e) => return Err(Box::new(std::io::Error::other(e.to_string()))),
            }
        }
    }
    Ok(recorded)
}
