//! The QuickZTNA event log: the only source of truth.
//!
//! # Layout
//! - [`event`]: the catalogue of domain events (past tense, versioned) and their payload types;
//!   [`legacy`]: their older schema versions, frozen, with upcasts.
//!   `directory_events.rs` holds the directory's (people, groups, SSO settings),
//!   `policy_events.rs` the policy's and posture's, `webhook_events.rs` the webhooks'.
//! - [`envelope`]: the persisted envelope around every event, and the actor who caused it;
//!   [`recorded`]: an envelope with its decoded event, what readers get.
//! - [`codec`]: the one place that turns envelopes and payloads into bytes and back (postcard).
//! - [`durable`]: replacing small files (keys, checkpoints, snapshots) crash-safely.
//! - [`chain`]: the HMAC chain that makes the log tamper-evident; [`checkpoint`]: signed
//!   checkpoints that make truncation evident too; [`org_checkpoint`]: the same key's signature
//!   on one organization's audit chain head, for exports.
//! - [`request`]: what an append asks for and what it answers.
//! - [`log`]: the handle — open, append, close; [`reads`]: reads by position, stream and org;
//!   [`query`]: filtered reads of one organization (by type, actor, subject) for the audit log.
//! - [`committer`]: the backend-neutral group committer (one thread stages, one syncs).
//! - [`store`]: the `LogStore` trait; [`sled_store`]: sled, the only file naming sled.
//! - [`index`]: the per-stream and per-org indexes, in memory, with snapshots ([`indexer`]).
//! - [`subscription`]: history-then-live streams of recorded events, gap- and duplicate-free.
//! - [`samples`]: a sample of every event type (fixtures, documentation).
//! - [`verify`]: the chain and index checks, and the offline check of a data dir.
//! - [`prefix`]: dropping the log's prefix behind a signed anchor (retention).
//! - [`error`]: the error types.
//!
//! Invariants: positions start at 1 (or after the prefix anchor) and are gap-free, and so is each organization's sequence;
//! an append is acknowledged only after its group is durable; any storage error or panic on the
//! write path fails the log for good; nothing here knows HTTP or read models.

pub mod chain;
pub mod checkpoint;
pub mod codec;
mod committer;
mod directory_events;
pub mod durable;
pub mod envelope;
pub mod error;
pub mod event;
pub mod index;
mod indexer;
pub mod legacy;
pub mod log;
mod open;
pub mod org_checkpoint;
mod policy_events;
pub mod prefix;
pub mod query;
pub mod reads;
pub mod recorded;
pub mod request;
pub mod samples;
pub mod sled_store;
pub mod store;
pub mod stream;
pub mod subscription;
pub mod verify;
mod webhook_events;

pub use chain::ChainKey;
pub use checkpoint::{Checkpoint, CheckpointKey};
pub use envelope::{Actor, ActorKind, Envelope, EnvelopeRef};
pub use error::{AppendError, Error};
pub use event::Event;
pub use log::{DEFAULT_CACHE_CAPACITY, Log, LogOptions, LogStats};
pub use org_checkpoint::OrgCheckpoint;
pub use recorded::Recorded;
pub use request::{AppendRequest, Appended, Expected, Idempotency, NewEvent};
pub use subscription::subscribe;
pub use verify::{ChainReport, VerifyOptions, VerifyReport, verify_data_dir};

/// Microseconds since the Unix epoch, UTC: the log's clock.
pub fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// Formats a log time as RFC 3339 in UTC with microsecond precision.
pub fn format_time(micros: i64) -> String {
    match jiff::Timestamp::from_microsecond(micros) {
        Ok(ts) => format!("{ts:.6}"),
        Err(_) => String::from("invalid-time"),
    }
}
