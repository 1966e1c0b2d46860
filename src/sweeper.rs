//! The sweeper: removes devices nobody needs any more, as the system actor.
//!
//! - An **ephemeral** device offline longer than its organization's `ephemeral_offline_secs`
//!   is removed with reason `ephemeral_offline`.
//! - When the organization sets `device_idle_removal_days`, **any** device idle longer than that
//!   is removed with reason `idle`.
//!
//! A device that never sent a heartbeat counts as last seen when it registered. The server runs
//! [`sweep_once`] every `Settings::sweep_every`; tests call it directly with a chosen time.

use std::time::Duration;

use events::event::DeviceRemoved;
use events::{Actor, AppendError, AppendRequest, Expected, NewEvent};
use projections::devices::device_stream;

use crate::domain::ids::new_id;
use crate::state::AppState;

/// Why a device was swept.
pub const REASON_EPHEMERAL: &str = "ephemeral_offline";
pub const REASON_IDLE: &str = "idle";

const MICROS_PER_SEC: i64 = 1_000_000;

/// Removes every device due for removal at `now_micros`; returns the ids removed. A device
/// changed concurrently (a conflict) is left for the next sweep.
pub async fn sweep_once(state: &AppState, now_micros: i64) -> Result<Vec<String>, AppendError> {
    // Frozen read models after a fail-stop must not drive removals.
    if state.models().failed() {
        return Err(AppendError::Failed(
            state.models().failure().unwrap_or_default(),
        ));
    }
    let models = state.models().load();
    let mut due: Vec<(String, String, u64, &'static str)> = Vec::new();
    for org in models.state.orgs.by_id.values() {
        let ephemeral_after = i64::try_from(org.ephemeral_offline_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(MICROS_PER_SEC);
        let idle_after = org
            .device_idle_removal_days
            .map(|d| i64::from(d).saturating_mul(86_400 * MICROS_PER_SEC));
        for device in models.state.devices.of_org(&org.id) {
            let last_seen = state
                .heartbeats()
                .last_seen(&device.id)
                .unwrap_or(device.created_at);
            let offline = now_micros.saturating_sub(last_seen);
            let reason = if device.ephemeral && offline > ephemeral_after {
                Some(REASON_EPHEMERAL)
            } else if idle_after.is_some_and(|limit| offline > limit) {
                Some(REASON_IDLE)
            } else {
                None
            };
            if let Some(reason) = reason {
                due.push((org.id.clone(), device.id.clone(), device.revision, reason));
            }
        }
    }
    let mut removed = Vec::new();
    let mut last = 0;
    for chunk in due.chunks(CHUNK) {
        let (done, position) = remove_all(state, chunk).await?;
        removed.extend(done);
        last = last.max(position);
    }
    if last > 0 {
        state
            .models()
            .wait_for(last, state.settings().read_your_writes_timeout)
            .await;
    }
    if !removed.is_empty() {
        tracing::info!(count = removed.len(), "sweeper removed devices");
    }
    Ok(removed)
}

/// Removals appended concurrently (they share group commits), a bounded number at a time so
/// the log's queue never fills.
const CHUNK: usize = 256;

async fn remove_all(
    state: &AppState,
    due: &[(String, String, u64, &'static str)],
) -> Result<(Vec<String>, u64), AppendError> {
    let removals = due
        .iter()
        .cloned()
        .map(|(org_id, device_id, revision, reason)| {
            let log = state.log().clone();
            async move {
                let stream = device_stream(&device_id);
                let result = log
                    .append(AppendRequest {
                        org_id,
                        actor: Actor::system(match reason {
                            REASON_EPHEMERAL => "sweeper: ephemeral device offline too long",
                            _ => "sweeper: device idle longer than the organization allows",
                        }),
                        request_id: new_id("req"),
                        expectations: vec![(stream.clone(), Expected::Exact(revision))],
                        events: vec![NewEvent::new(
                            stream,
                            DeviceRemoved {
                                device_id: device_id.clone(),
                                reason: reason.to_owned(),
                            },
                        )],
                        idempotency: None,
                    })
                    .await;
                (device_id, result)
            }
        });
    let mut removed = Vec::new();
    let mut last = 0;
    for (device_id, result) in futures::future::join_all(removals).await {
        match result {
            Ok(appended) => {
                last = last.max(appended.last);
                state.heartbeats().forget(&device_id);
                removed.push(device_id);
            }
            // Changed meanwhile, or the log is busy: the next sweep looks again.
            Err(AppendError::Conflict { .. } | AppendError::Busy) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((removed, last))
}

/// Sweeps every `every` until the task is aborted (the server aborts it at shutdown).
pub async fn run(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&state, events::now_micros()).await {
            tracing::warn!(error = %e, "device sweep failed");
        }
    }
}
