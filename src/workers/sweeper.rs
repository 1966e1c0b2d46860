//! The sweeper: removes devices nobody needs any more, as the system actor.
//!
//! - An **ephemeral** device offline longer than its organization's `ephemeral_offline_secs`
//!   is removed with reason `ephemeral_offline`.
//! - When the organization sets `device_idle_removal_days`, **any** device idle longer than that
//!   is removed with reason `idle`.
//!
//! - A device whose key ran out gets `device.key_expired` ([`super::key_expiry`]).
//!
//! A device that never sent a heartbeat counts as last seen when it registered. The server runs
//! [`Sweeper`] as a timer worker every `Settings::sweep_every`; tests call [`sweep_once`]
//! directly with a chosen time.

use std::sync::Arc;
use std::time::Duration;

use events::{Actor, Recorded};
use projections::OrgView;
use projections::devices::Device;
use projections::orgs::Org;

use super::{StepError, Trigger, Worker};
use crate::domain::{Decision, Rejection, devices};
use crate::execute::{self, Command, ExecuteError, Outcome, execute};
use crate::mint;
use crate::state::AppState;

/// Why a device was swept.
pub const REASON_EPHEMERAL: &str = "ephemeral_offline";
pub const REASON_IDLE: &str = "idle";

const MICROS_PER_SEC: i64 = 1_000_000;

/// Removals executed concurrently (they share group commits), a bounded number at a time so
/// the log's queue never fills.
const CHUNK: usize = 256;

/// The sweeper as a worker: a sweep every `every`.
pub struct Sweeper {
    pub every: Duration,
}

impl Worker for Sweeper {
    fn name(&self) -> &'static str {
        "sweeper"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(self.every)
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        let now = events::now_micros();
        sweep_once(state, now).await?;
        super::key_expiry::expire_once(state, now).await?;
        Ok(())
    }
}

/// Why `device` is due for removal at `now`, if it is.
pub fn due(org: &Org, device: &Device, last_seen: i64, now: i64) -> Option<&'static str> {
    let ephemeral_after = i64::try_from(org.ephemeral_offline_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(MICROS_PER_SEC);
    let idle_after = org
        .device_idle_removal_days
        .map(|d| i64::from(d).saturating_mul(86_400 * MICROS_PER_SEC));
    let offline = now.saturating_sub(last_seen);
    if device.ephemeral && offline > ephemeral_after {
        Some(REASON_EPHEMERAL)
    } else if idle_after.is_some_and(|limit| offline > limit) {
        Some(REASON_IDLE)
    } else {
        None
    }
}

/// Removes device `id` if it is still due in its organization's read models (it may have
/// changed since the scan).
pub fn decide(org: OrgView<'_>, id: &str, last_seen: i64, now: i64) -> Result<Decision, Rejection> {
    let Some(device) = org.live_device(id) else {
        return Ok(Decision::none());
    };
    let Some(reason) = org
        .settings()
        .and_then(|settings| due(settings, device, last_seen, now))
    else {
        return Ok(Decision::none());
    };
    devices::remove(org, id, reason)
}

/// Removes every device due for removal at `now_micros`; returns the ids removed. A device
/// that stays contended (or a busy log) is left for the next sweep.
pub async fn sweep_once(
    state: &AppState,
    now_micros: i64,
) -> Result<Vec<String>, ExecuteError<Rejection>> {
    // Frozen read models after a fail-stop must not drive removals.
    execute::writable(state)?;
    let models = state.models().load();
    let mut due_now: Vec<(String, String, i64, &'static str)> = Vec::new();
    for org in models.state.orgs.by_id.values() {
        for device in models.state.devices.of_org(&org.id) {
            let last_seen = state
                .heartbeats()
                .last_seen(&device.id)
                .unwrap_or(device.created_at);
            if let Some(reason) = due(org, device, last_seen, now_micros) {
                due_now.push((org.id.clone(), device.id.clone(), last_seen, reason));
            }
        }
    }
    let mut removed = Vec::new();
    for chunk in due_now.chunks(CHUNK) {
        removed.extend(remove_all(state, chunk, now_micros).await?);
    }
    if !removed.is_empty() {
        tracing::info!(count = removed.len(), "sweeper removed devices");
    }
    Ok(removed)
}

async fn remove_all(
    state: &AppState,
    due: &[(String, String, i64, &'static str)],
    now: i64,
) -> Result<Vec<String>, ExecuteError<Rejection>> {
    let removals = due.iter().map(|(org_id, device_id, last_seen, reason)| {
        let actor = Actor::system(match *reason {
            REASON_EPHEMERAL => "sweeper: ephemeral device offline too long",
            _ => "sweeper: device idle longer than the organization allows",
        });
        let command = Command::new(org_id.clone(), actor, mint::id("req"));
        async move {
            let result = execute(state, command, |m| decide(m, device_id, *last_seen, now)).await;
            (device_id, result)
        }
    });
    let mut removed = Vec::new();
    for (device_id, result) in futures::future::join_all(removals).await {
        match result {
            Ok(Outcome::Appended(_)) => {
                state.heartbeats().forget(device_id);
                removed.push(device_id.clone());
            }
            Ok(Outcome::Unchanged) => {}
            // Still contended after every attempt, or the log is busy: the next sweep looks
            // again.
            Err(ExecuteError::Refused(
                events::AppendError::Conflict { .. } | events::AppendError::Busy,
            )) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
