//! Error types of the log.

use thiserror::Error;

/// Why reading, opening or verifying the log failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory {path} is in use by another process")]
    Locked { path: String },
    #[error("record at position {position} is corrupt: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("unknown record format {0}: written by a newer version of quickztna")]
    UnknownFormat(u8),
    #[error("unknown event type {event_type} version {version}")]
    UnknownEvent { event_type: String, version: u16 },
    #[error("chain key {path}: {reason}")]
    ChainKey { path: String, reason: String },
    #[error("the log has failed and stopped accepting writes")]
    Failed,
    #[error("the log is closed")]
    Closed,
}

/// Why an append was refused. Nothing of a refused request was written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// Optimistic concurrency: the stream moved on since the caller read it.
    #[error("stream {stream} is at revision {actual:?}, expected {expected}")]
    Conflict {
        stream: String,
        expected: String,
        actual: Option<u64>,
    },
    /// The same idempotency key was used before with a different request body.
    #[error("idempotency key was already used for a different request")]
    IdempotencyMismatch,
    /// Some (not all) of the request's event ids were appended before.
    #[error("event id {0} was already appended by another request")]
    DuplicateEventId(String),
    /// The request had no events, or events not covered by its organization.
    #[error("invalid append request: {0}")]
    Invalid(String),
    /// The writer's queue is full; retry shortly.
    #[error("the event log is busy")]
    Busy,
    /// An I/O error stopped the writer; nothing is acknowledged after one.
    #[error("the event log has failed: {0}")]
    Failed(String),
    /// The log was closed while the request waited.
    #[error("the event log is closed")]
    Closed,
}
