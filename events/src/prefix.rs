//! Dropping the log's prefix: records `1..=P` are deleted once nothing needs them (every
//! organization's retention and every snapshot covers them; the server decides that, see its
//! `workers::retention`). What stays is the **anchor**: a checkpoint of `(P, MAC at P)` signed
//! with the log's checkpoint key, and the bases of the index ([`crate::index::Bases`]).
//!
//! The chain then verifies from `P + 1` with the anchor's MAC as the previous one, the index is
//! rebuilt from the bases and the records after `P`, and reads below `P + 1` find nothing. The
//! anchor is written (atomically with its bases) before any record is deleted, and the deletes
//! are resumed at the next open if a crash interrupts them, so a crash never leaves records
//! missing without an anchor below them.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::index::Bases;
use crate::log::Log;
use crate::store::LogStore;

/// The signed position and MAC below which the log was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// `checkpoint.position` is the last dropped position; `checkpoint.mac` its chain MAC.
    pub checkpoint: Checkpoint,
}

impl Anchor {
    pub fn position(&self) -> u64 {
        self.checkpoint.position
    }

    fn encode(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|e| Error::Storage(e.to_string()))
    }
}

/// The store's anchor, if its prefix was ever dropped.
pub fn read_anchor(store: &dyn LogStore) -> Result<Option<Anchor>, Error> {
    match store.anchor()? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Storage(format!("the prefix anchor does not parse: {e}"))),
    }
}

/// The index bases stored with the anchor.
pub fn read_bases(store: &dyn LogStore) -> Result<Option<Bases>, Error> {
    match store.anchor_bases()? {
        None => Ok(None),
        Some(bytes) => crate::codec::decode(&bytes)
            .map(Some)
            .map_err(|e| Error::Storage(format!("the prefix anchor's bases do not decode: {e}"))),
    }
}

/// Finishes the deletes of a drop a crash interrupted (at open).
pub(crate) fn resume(store: &dyn LogStore) -> Result<Option<Anchor>, Error> {
    let Some(anchor) = read_anchor(store)? else {
        return Ok(None);
    };
    let mut leftover = false;
    store.scan(
        1,
        anchor.position(),
        crate::store::Direction::Forward,
        &mut |_, _| {
            leftover = true;
            false
        },
    )?;
    if leftover {
        let bases = store.anchor_bases()?.unwrap_or_default();
        store.drop_prefix(anchor.position(), &anchor.encode()?, &bases)?;
        store.sync()?;
    }
    Ok(Some(anchor))
}

/// Index entries dropped per step of a retention purge.
const PURGE_CHUNK: usize = 65_536;

impl Log {
    /// The first position still in the log (1 unless its prefix was dropped).
    pub fn first_position(&self) -> u64 {
        self.shared().first()
    }

    /// Writes the index snapshot as of the durable head now (also done every
    /// [`crate::index::SNAPSHOT_EVERY`] events and at close); returns its position.
    pub fn snapshot_index(&self) -> Result<u64, Error> {
        let head = self.head();
        crate::indexer::snapshot(self.shared(), &*self.store()?, self.dir(), head)?;
        Ok(head)
    }

    /// The anchor of the dropped prefix, if any.
    pub fn anchor(&self) -> Result<Option<Anchor>, Error> {
        read_anchor(&*self.store()?)
    }

    /// Drops `org`'s index entries numbered below `keep_from` (and their streams' entries):
    /// retention. The records stay until the prefix is dropped. Returns how many left.
    pub fn purge_org_index(&self, org: &str, keep_from: u64) -> Result<u64, Error> {
        let mut purged = 0;
        loop {
            let n = self.purge_org_index_chunk(org, keep_from)?;
            if n == 0 {
                return Ok(purged);
            }
            purged += n;
        }
    }

    /// One step of [`Log::purge_org_index`]: at most [`PURGE_CHUNK`] entries, so that a first
    /// pass over years of history neither holds them all in memory nor the index lock long.
    fn purge_org_index_chunk(&self, org: &str, keep_from: u64) -> Result<u64, Error> {
        // One purge or drop at a time: the front of a list changes only under this lock.
        let _one = self.shared().dropping.lock().map_err(|_| Error::Closed)?;
        let store = self.store()?;
        // Read the streams of the entries to drop without blocking the committer, then drop
        // them under the write lock.
        let doomed: Vec<u64> = {
            let index = self.shared().index.read().map_err(|_| Error::Closed)?;
            let first = index.org_first(org);
            let head = self.head();
            index.org_range(
                org,
                (first, keep_from.saturating_sub(1)),
                head,
                crate::store::Direction::Forward,
                PURGE_CHUNK,
            )
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut streams = std::collections::HashMap::with_capacity(doomed.len());
        for pos in &doomed {
            let bytes = store.record(*pos)?.ok_or_else(|| Error::Corrupt {
                position: *pos,
                reason: "record missing".into(),
            })?;
            streams.insert(
                *pos,
                crate::codec::decode_ref(*pos, &bytes)?.stream.to_owned(),
            );
        }
        let mut index = self.shared().index.write().map_err(|_| Error::Closed)?;
        let keep_from = index.org_first(org) + doomed.len() as u64;
        index.purge_org(org, keep_from, &mut |pos| {
            streams.remove(&pos).ok_or_else(|| Error::Corrupt {
                position: pos,
                reason: "the index moved during a purge".into(),
            })
        })
    }

    /// Drops records `1..=position` for good, leaving a signed anchor; `position` must be
    /// below the head (the head record stays: the committer chains from it). Returns false when
    /// there is nothing new to drop. The caller answers for what still needs those records:
    /// read-model snapshots, worker checkpoints, retention.
    pub fn drop_prefix(&self, position: u64) -> Result<bool, Error> {
        let _one = self.shared().dropping.lock().map_err(|_| Error::Closed)?;
        let position = position.min(self.head().saturating_sub(1));
        if position < self.first_position() {
            return Ok(false);
        }
        let store = self.store()?;
        let mac = crate::store::mac_at(&*store, position)?;
        let anchor = Anchor {
            checkpoint: self
                .checkpoint_key()
                .sign(position, mac, crate::now_micros()),
        };
        let bases = {
            let mut index = self.shared().index.write().map_err(|_| Error::Closed)?;
            index.drop_through(position);
            index.bases()
        };
        // Readers stop looking below before anything there is deleted.
        self.shared().set_first(position + 1);
        store.drop_prefix(position, &anchor.encode()?, &crate::codec::encode(&bases))?;
        store.sync()?;
        tracing::info!(
            position,
            mac = %hex::encode(mac),
            "dropped the log's prefix; the chain verifies from the signed anchor"
        );
        drop(store);
        // The index snapshot carries the new bases; a failure here is repaired from the anchor.
        let head = self.head();
        if let Err(e) = crate::indexer::snapshot(self.shared(), &*self.store()?, self.dir(), head) {
            tracing::warn!(error = %e, "could not write the index snapshot after a prefix drop");
        }
        Ok(true)
    }
}
