//! Retention as a timer worker: purges what has been gone longer than the retention window
//! from the read models (see [`crate::domain::retention`]), as the system actor.

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
        purge_once(state, events::now_micros()).await?;
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
