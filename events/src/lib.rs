//! The QuickZTNA event log: the only source of truth.
//!
//! # Layout
//! - [`event`]: the catalogue of domain events (past tense, versioned) and their payload types.
//! - [`envelope`]: the persisted envelope around every event, and the actor who caused it.
//! - [`codec`]: the one place that turns envelopes and payloads into bytes and back (postcard).
//! - [`chain`]: the HMAC chain that makes the log tamper-evident.
//! - [`log`]: the sled-backed append-only log, its single writer thread (group commit) and reads.
//! - [`subscription`]: history-then-live streams of recorded events, gap- and duplicate-free.
//! - [`error`]: the error types.
//!
//! Invariants: positions start at 1 and are gap-free; an append is acknowledged only after its
//! group was flushed by sled and `fdatasync`ed; nothing here knows HTTP or read models.

pub mod chain;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod event;
pub mod log;
pub mod subscription;

pub use chain::ChainKey;
pub use envelope::{Actor, ActorKind, Envelope, Recorded};
pub use error::{AppendError, Error};
pub use event::Event;
pub use log::{
    AppendRequest, Appended, ChainReport, Expected, Idempotency, Log, LogOptions, NewEvent,
};
pub use subscription::subscribe;

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
