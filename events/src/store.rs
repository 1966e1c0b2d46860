//! The storage a log runs on: the seam that lets the log move from sled to PostgreSQL.
//!
//! The group committer ([`crate::committer`]) owns everything that makes the log a log —
//! validation, positions, org sequences, the MAC chain, idempotency, replies, subscriptions —
//! and asks a [`LogStore`] only to keep bytes: records by position, the head and idempotency
//! rows. The per-stream and per-org indexes are derived in memory ([`crate::index`]). sled is the first implementation ([`crate::sled_store`]); a
//! PostgreSQL one is one transaction per group with `synchronous_commit=on` and an advisory lock
//! as the single-writer lock.

use crate::error::Error;

/// What a store found when it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last committed position; 0 for an empty log.
    pub head: u64,
    /// The record at the head, if any (the committer takes its MAC and time from it).
    pub head_record: Option<Vec<u8>>,
}

/// An idempotency row: the request's fingerprint and the positions it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub fingerprint: [u8; 32],
    pub first: u64,
    pub last: u64,
}

/// One group commit: consecutive records ending at `head`, and the idempotency rows of the
/// keyed requests in it.
#[derive(Debug, Default)]
pub struct Group {
    /// `(position, record)`, positions consecutive from the previous head + 1.
    pub records: Vec<(u64, Vec<u8>)>,
    pub head: u64,
    /// `(org, key, row)`.
    pub idempotency: Vec<(String, String, IdempotencyRow)>,
}

/// Which end of a range to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Where the log's bytes live. Implementations are used by one writer (the committer) and
/// many readers at once.
pub trait LogStore: Send + Sync + 'static {
    /// The head and its record, as found on disk.
    fn recover(&self) -> Result<Recovered, Error>;

    /// Stages a group: atomic (all of it or none of it survives a crash), not yet durable.
    fn write(&self, group: &Group) -> Result<(), Error>;

    /// Makes everything written so far durable; acknowledgements wait for this.
    fn sync(&self) -> Result<(), Error>;

    /// The record at `position`, if stored.
    fn record(&self, position: u64) -> Result<Option<Vec<u8>>, Error>;

    /// Visits records with positions in `from..=to` in order (`Backward`: newest first) until
    /// `visit` returns false.
    fn scan(
        &self,
        from: u64,
        to: u64,
        direction: Direction,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error>;

    /// The idempotency row of `key` in `org`, if the key was used.
    fn idempotency(&self, org: &str, key: &str) -> Result<Option<IdempotencyRow>, Error>;

    /// Flushes whatever the store buffers, before it is dropped.
    fn close(&self) -> Result<(), Error>;

    /// The prefix anchor ([`crate::prefix`]) as stored, if the prefix was ever dropped.
    fn anchor(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(None)
    }

    /// The index bases stored with the anchor.
    fn anchor_bases(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(None)
    }

    /// Stores `anchor` and `bases` (replacing any earlier ones) atomically, then deletes every
    /// record at or below `position`, possibly over several batches: a crash may leave some,
    /// which a repeated call removes. Not durable until [`LogStore::sync`].
    fn drop_prefix(&self, position: u64, anchor: &[u8], bases: &[u8]) -> Result<(), Error> {
        let _ = (position, anchor, bases);
        Err(Error::Storage(
            "this store cannot drop the log's prefix".into(),
        ))
    }
}

/// The chain MAC of the record at `position` (all zeros before the first record; the anchor's
/// at a dropped prefix's last position): what a snapshot or checkpoint taken there carries.
/// Decodes only the envelope, in place.
pub fn mac_at(store: &dyn LogStore, position: u64) -> Result<[u8; 32], Error> {
    if position == 0 {
        return Ok([0u8; 32]);
    }
    let Some(record) = store.record(position)? else {
        return match crate::prefix::read_anchor(store)? {
            Some(a) if a.position() == position => Ok(a.checkpoint.mac),
            Some(a) if position < a.position() => Err(Error::Corrupt {
                position,
                reason: format!(
                    "dropped with the log's prefix (the log starts at {})",
                    a.position() + 1
                ),
            }),
            _ => Err(Error::Corrupt {
                position,
                reason: "record missing".into(),
            }),
        };
    };
    Ok(crate::codec::decode_ref(position, &record)?.mac)
}
