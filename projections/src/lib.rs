//! QuickZTNA's read models, folded from the event log (the Q of CQRS).
//!
//! # Layout
//! - [`Projection`]: the trait every read model implements — a pure, synchronous `apply`.
//! - [`runner`]: keeps a projection up to date: snapshot + tail at start-up, then the live
//!   subscription; readers get lock-free snapshots; writers wait for a position. A panic in
//!   `apply` stops it with a reason (fail-stop) rather than skip the event.
//! - [`snapshot`]: the on-disk snapshot format (postcard, versioned, checksummed, tied to one
//!   history by the chain MAC at its position).
//! - [`models`]: [`Models`], every read model the API serves, folded together.
//! - [`orgs`], [`tokens`], [`keys`], [`devices`], [`directory`]: the read models themselves
//!   (the directory: people, groups, memberships, SSO settings); [`device_index`]: each
//!   organization's device indexes for list filters and sorts.
//! - [`policies`]: each organization's policy versions and failing tests; [`posture`]: posture
//!   requirements and each device's signals and compliance; [`webhooks`]: webhook destinations.
//! - [`org`]: [`OrgView`], the read models as one organization sees them: what handlers get.
//!
//! Invariants: a projection never appends to the log and never skips an event; live state equals
//! a replay from scratch equals snapshot + replay.

pub mod device_index;
pub mod devices;
pub mod directory;
pub mod keys;
pub mod models;
pub mod org;
pub mod orgs;
pub mod policies;
pub mod posture;
pub mod runner;
pub mod snapshot;
#[cfg(test)]
mod testing;
pub mod tokens;
pub mod webhooks;

use events::Recorded;

pub use models::Models;
pub use org::OrgView;
pub use runner::{Applied, ProjectionHandle, RunnerOptions};

/// A read model: state folded from events, one at a time, in log order.
pub trait Projection: Clone + Default + PartialEq + Send + Sync + 'static {
    /// The snapshot's file name.
    const NAME: &'static str;
    /// Bumped whenever `apply` or the state's layout changes: a snapshot written by another
    /// version is discarded and the projection rebuilt from the log. The golden replays in
    /// `tests/golden` fail when the folded state changes but this did not.
    const VERSION: u32;

    /// Folds one event into the state. Pure: no I/O, no clock, no randomness.
    fn apply(&mut self, event: &Recorded);
}

/// Folds the whole log into a fresh projection: the reference the tests compare against.
pub fn replay<P: Projection>(log: &events::Log) -> Result<(P, u64), events::Error> {
    let mut state = P::default();
    let mut position = 0u64;
    // Read and decode on another thread while this one applies.
    let pages = events::subscription::read_ahead_blocking(log.clone(), 1, log.head(), 4096);
    while let Ok(page) = pages.recv() {
        for r in page? {
            state.apply(&r);
            position = r.position();
        }
    }
    Ok((state, position))
}
