//! Retention as a timer worker: purges what has been gone longer than the retention window
//! from the read models (see [`crate::domain::retention`]), as the system actor; then applies
//! the audit log's retention by plan ([`audit_once`]): expired events leave the index, and the
//! log's prefix is dropped once nothing needs it.

use std::sync::Arc;
use std::time::Duration;

use events::{Actor, Recorded};

use super::{StepError, Trigger, Worker};
use crate::domain::Rejection;
use crate::domain::retention::{BATCH, purge};
use crate::execute::{self, Command, ExecuteError, Outcome, execute};
use crate::mint;
use crate::state::AppState;

/// Purges due at every `every`.
pub struct Retention {
    pub every: Duration,
}

impl Worker for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(self.every)
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        let now = events::now_micros();
        purge_once(state, now).await?;
        audit_once(state, now).await?;
        Ok(())
    }
}

/// Purges everything due at `now_micros` in every organization; returns how many records
/// left the read models.
pub async fn purge_once(
    state: &AppState,
    now_micros: i64,
) -> Result<usize, ExecuteError<Rejection>> {
    execute::writable(state)?;
    let orgs: Vec<String> = state
        .models()
        .load()
        .state
        .orgs
        .by_id
        .keys()
        .cloned()
        .collect();
    let mut purged = 0;
    for org_id in orgs {
        // A batch at a time until the organization has nothing due.
        loop {
            let command = Command::new(
                org_id.clone(),
                Actor::system("retention: gone longer than the retention window"),
                mint::id("req"),
            );
            match execute(state, command, |org| {
                Ok::<_, Rejection>(purge(org, now_micros))
            })
            .await?
            {
                Outcome::Unchanged => break,
                Outcome::Appended(a) => {
                    // One request's events take consecutive positions.
                    let n = usize::try_from(a.last - a.first + 1).unwrap_or(usize::MAX);
                    purged += n;
                    if n < BATCH {
                        break;
                    }
                }
            }
        }
    }
    if purged > 0 {
        tracing::info!(
            count = purged,
            "retention purged records from the read models"
        );
    }
    Ok(purged)
}

/// What one audit retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditPass {
    /// Index entries of expired events dropped, over all organizations.
    pub purged: u64,
    /// The log's last dropped position after the pass (0: nothing ever dropped).
    pub dropped_through: u64,
}

/// The audit log's retention at `now_micros`: drops each organization's index entries of
/// events past its retention, then the log's prefix as far as every organization's retention
/// and everything that replays the log (the read models' snapshot, the index snapshot, every
/// worker checkpoint) cover it.
pub async fn audit_once(state: &AppState, now_micros: i64) -> Result<AuditPass, StepError> {
    if state.log().is_failed() || state.models().failed() {
        return Err("the log or the read models have failed; no retention until restart".into());
    }
    // The snapshots first, so that they cover as much as retention allows; the organizations
    // after them, so that every organization with an event they cover is among them.
    state.models().snapshot_now().await?;
    state.chains().snapshot_now().await?;
    let orgs: Vec<String> = state
        .models()
        .load()
        .state
        .orgs
        .by_id
        .keys()
        .cloned()
        .collect();
    let worker = state.clone();
    let pass = tokio::task::spawn_blocking(move || -> Result<AuditPass, StepError> {
        let log = worker.log();
        let mut pass = AuditPass::default();
        let mut covered = log.head().saturating_sub(1);
        for org in &orgs {
            let days = worker.audit_retention_days(org);
            let cutoff = crate::domain::retention::audit_cutoff(now_micros, days);
            let keep_from = chain_aligned(worker.first_seq_at_or_after(org, cutoff)?);
            pass.purged += log.purge_org_index(org, keep_from)?;
            // Positions below the organization's first retained event are its expired ones.
            if let Some(first) = log.read_org(org, keep_from, keep_from, 1)?.first() {
                covered = covered.min(first.position() - 1);
            }
        }
        let index = log.snapshot_index()?;
        let replayers = replayed_from(&worker)?;
        let through = covered.min(index).min(replayers);
        log.drop_prefix(through)?;
        pass.dropped_through = log.first_position() - 1;
        Ok(pass)
    })
    .await??;
    if pass.purged > 0 {
        tracing::info!(
            purged = pass.purged,
            "audit retention dropped index entries of expired events"
        );
    }
    Ok(pass)
}

/// The first sequence number to keep so that the audit chain of the first retained event `seq`
/// can still be computed: the chain projection keeps a mark every
/// [`MARK_EVERY`](crate::audit::digests::MARK_EVERY) events and walks the records after it, so
/// up to that many expired events stay in the index (never served: the served floor is by time).
pub fn chain_aligned(seq: u64) -> u64 {
    let every = crate::audit::digests::MARK_EVERY;
    (seq.saturating_sub(1) / every) * every + 1
}

/// The lowest position anything that replays the log stands at: the snapshots of the read
/// models and of the audit chains (each must be this code's version and belong to this log),
/// and every worker's checkpoint. A checkpoint left by a worker that no longer runs holds the
/// drop back until it is removed.
fn replayed_from(state: &AppState) -> Result<u64, StepError> {
    use projections::Projection;
    let dir = crate::state::snapshot_dir(&state.settings().data_dir);
    let mut lowest = u64::MAX;
    for (name, expected) in [
        (projections::Models::NAME, projections::Models::VERSION),
        (
            crate::audit::digests::AuditChains::NAME,
            crate::audit::digests::AuditChains::VERSION,
        ),
    ] {
        let Some((version, position, mac)) = projections::snapshot::read_header(&dir, name) else {
            return Ok(0);
        };
        if version != expected || state.log().mac_at(position).ok() != Some(mac) {
            return Ok(0);
        }
        lowest = lowest.min(position);
    }
    let workers = state.settings().data_dir.join("workers");
    match std::fs::read_dir(&workers) {
        Ok(entries) => {
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "checkpoint") {
                    lowest = lowest.min(super::checkpoint::load(&path)?);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(lowest)
}
