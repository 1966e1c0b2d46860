//! The webhook supervisor: starts a delivery loop (`webhooks::deliver`) for every webhook of
//! the read models that has none — at start-up, and soon after one is created. The loops
//! follow the log themselves, each from its own cursor, so one slow receiver never holds up
//! another; they end themselves when their webhook is removed.

use std::sync::Arc;
use std::time::Duration;

use events::Recorded;

use super::{StepError, Trigger, Worker};
use crate::state::AppState;

pub struct WebhookSupervisor {
    pub every: Duration,
}

impl Worker for WebhookSupervisor {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(self.every)
    }

    async fn step(&mut self, state: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        state.webhooks().reconcile(state);
        Ok(())
    }
}
