//! Timer workers that keep the server's own state tidy; they append nothing.

use std::sync::Arc;
use std::time::Duration;

use events::Recorded;

use super::{StepError, Trigger, Worker};
use crate::state::AppState;

/// Drops full rate-limit buckets: they carry no information, so this bounds the limiter's
/// memory to the organizations and addresses seen in the last minute or so.
pub struct LimiterSweep;

impl Worker for LimiterSweep {
    fn name(&self) -> &'static str {
        "limiter-sweep"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(Duration::from_secs(60))
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        state.limiter().sweep();
        Ok(())
    }
}

/// Writes heartbeats to the data dir every `every`: they are not events, so this (and the
/// flush at shutdown) is how they survive a restart.
pub struct HeartbeatFlush {
    pub every: Duration,
}

impl Worker for HeartbeatFlush {
    fn name(&self) -> &'static str {
        "heartbeat-flush"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(self.every)
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        state.flush_heartbeats().await;
        Ok(())
    }
}
