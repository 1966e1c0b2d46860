//! Background work: workers that follow the log from a persisted checkpoint, or run on a timer,
//! decide, and append through the executor ([`crate::execute`]).
//!
//! A worker is triggered either by new events ([`Trigger::Events`]: it gets them in batches,
//! in log order, once the read models include them) or every so often ([`Trigger::Every`]: it
//! gets none, and looks at the read models instead, like the sweeper). After a step succeeds,
//! an event-driven worker's checkpoint (the last position it handled) is written atomically to
//! `workers/<name>.checkpoint` in the data dir, so a restart resumes after it. A crash between
//! a step and its checkpoint replays that step: delivery is at least once, so decisions must be
//! idempotent (they are, when they read the state they change: a second run finds it done).
//!
//! Shutdown is a `watch` signal, never `abort()`: a worker finishes the step it is in, writes
//! its checkpoint and stops; [`Workers::shutdown`] waits for all of them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use events::Recorded;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

pub mod checkpoint;
pub mod housekeeping;
pub mod key_expiry;
pub mod policy_tests;
pub mod posture;
pub mod retention;
pub mod sweeper;
pub mod webhooks;

#[cfg(test)]
mod tests;

/// What makes a worker take a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Events appended after the checkpoint.
    Events,
    /// A timer; the step gets no events.
    Every(Duration),
}

/// Why a step failed; the worker logs it and tries again later from the same checkpoint.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// A piece of background work.
pub trait Worker: Send + 'static {
    /// Names the worker in logs and its checkpoint file; never change it, or the worker starts
    /// again from the beginning of the log.
    fn name(&self) -> &'static str;

    fn trigger(&self) -> Trigger;

    /// Handles `events` (those after the checkpoint, in log order; none for a timer). The
    /// checkpoint moves past them only when this succeeds.
    fn step(
        &mut self,
        state: &AppState,
        events: &[Arc<Recorded>],
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// Events handed to one step at most.
const BATCH: usize = 256;
/// Pause after a failed step, so a persistent failure does not spin.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The running workers of a server, and the signal that stops them.
pub struct Workers {
    state: AppState,
    stop: watch::Sender<bool>,
    running: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn new(state: AppState) -> Workers {
        Workers {
            state,
            stop: watch::Sender::new(false),
            running: Vec::new(),
        }
    }

    /// Starts `worker` on its own task.
    pub fn spawn(&mut self, worker: impl Worker) {
        let state = self.state.clone();
        let stop = self.stop.subscribe();
        self.running.push(tokio::spawn(async move {
            let name = worker.name();
            let result = match worker.trigger() {
                Trigger::Events => follow(state, worker, stop).await,
                Trigger::Every(every) => tick(state, worker, every, stop).await,
            };
            if let Err(e) = result {
                tracing::error!(worker = name, error = %e, "worker stopped");
            }
        }));
    }

    /// Lets every worker finish its current step, then waits until all have stopped.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for task in self.running {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a worker panicked");
            }
        }
    }
}

/// Resolves once the stop signal is given (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `worker` every `every` until stopped; a step in progress is never interrupted.
async fn tick(
    state: AppState,
    mut worker: impl Worker,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StepError> {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => return Ok(()),
            _ = timer.tick() => {}
        }
        if let Err(e) = worker.step(&state, &[]).await {
            tracing::warn!(worker = worker.name(), error = %e, "worker step failed");
        }
    }
}

/// Feeds `worker` the events after its checkpoint, batch by batch, until stopped.
async fn follow(
    state: AppState,
    mut worker: impl Worker,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StepError> {
    let path = checkpoint_path(&state.settings().data_dir, worker.name());
    let mut done = checkpoint::load(&path)?;
    let mut head = state.log().watch_head();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let log = state.log().clone();
        let batch =
            tokio::task::spawn_blocking(move || log.read_forward(done + 1, BATCH)).await??;
        let Some(last) = batch.last().map(|r| r.position()) else {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => return Ok(()),
                changed = head.changed() => if changed.is_err() { return Ok(()) },
            }
            continue;
        };
        // Decisions read the read models: they must include what the worker is handling.
        let timeout = state.settings().read_your_writes_timeout;
        let result = if state.models().wait_for(last, timeout).await {
            worker.step(&state, &batch).await
        } else {
            Err("the read models did not catch up with the log".into())
        };
        match result {
            Ok(()) => {
                let file = path.clone();
                tokio::task::spawn_blocking(move || checkpoint::store(&file, last)).await??;
                done = last;
            }
            Err(e) => {
                tracing::warn!(worker = worker.name(), error = %e, "worker step failed");
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => return Ok(()),
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// Where worker `name` keeps its checkpoint.
pub fn checkpoint_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("workers").join(format!("{name}.checkpoint"))
}
