//! The derived indexes, in memory: every stream's positions by revision and every
//! organization's positions by sequence number.
//!
//! Keeping them in memory takes them off sled entirely: the commit path writes one key per
//! event and nothing else, and sled has a quarter of the bytes to recover at its first open.
//! They cost 16 bytes per event (two `u64`s) plus one key per stream and per organization.
//! The committer is their only writer: it reads revisions and sequences from them while it
//! stages a group and appends the group's positions once the store has it; readers see only
//! positions up to the durable head.
//!
//! A snapshot (`index.snap` in the data dir) is written at close and every
//! [`SNAPSHOT_EVERY`] events; it is tied to its history by the chain MAC at its position, like
//! the read models' snapshots. At open it is loaded and the records after it are indexed from
//! the log; without a usable one the whole log is indexed (and a snapshot written).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::store::{Direction, LogStore};

/// Events between two periodic snapshots of the index.
pub const SNAPSHOT_EVERY: u64 = 100_000;
// 002: per-organization postings by event type and actor.
const MAGIC: &[u8; 8] = b"QZIDX002";

/// Positions by stream revision and by organization sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// `streams[s][r]` is the position of revision `r` of stream `s`.
    pub streams: HashMap<String, Vec<u64>>,
    /// `orgs[o][n - 1]` is the position of sequence number `n` of organization `o`.
    pub orgs: HashMap<String, Vec<u64>>,
    /// Each organization's positions by event type and by actor: the audit log's filters.
    pub postings: HashMap<String, OrgPostings>,
    /// Every position up to here is indexed.
    pub position: u64,
}

/// One organization's positions by event type and by actor id, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPostings {
    pub types: HashMap<String, Vec<u64>>,
    pub actors: HashMap<String, Vec<u64>>,
}

/// What the index records of one event.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub stream: &'a str,
    pub org: &'a str,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub position: u64,
}

impl Index {
    /// The last revision of `stream`, if it has events.
    pub fn revision(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|v| (v.len() as u64).checked_sub(1))
    }

    /// The last sequence number of `org` (0 before its first event).
    pub fn org_seq(&self, org: &str) -> u64 {
        self.orgs.get(org).map_or(0, |v| v.len() as u64)
    }

    /// Records one event. Events arrive in position order.
    pub fn push(&mut self, e: Entry<'_>) {
        push_to(&mut self.streams, e.stream, e.position);
        push_to(&mut self.orgs, e.org, e.position);
        let postings = match self.postings.get_mut(e.org) {
            Some(p) => p,
            None => self.postings.entry(e.org.to_owned()).or_default(),
        };
        push_to(&mut postings.types, e.event_type, e.position);
        push_to(&mut postings.actors, e.actor, e.position);
        self.position = e.position;
    }

    /// Every position list, for trimming what is past a durable head.
    pub(crate) fn lists_mut(&mut self) -> impl Iterator<Item = &mut Vec<u64>> {
        self.streams
            .values_mut()
            .chain(self.orgs.values_mut())
            .chain(
                self.postings
                    .values_mut()
                    .flat_map(|p| p.types.values_mut().chain(p.actors.values_mut())),
            )
    }

    /// Drops empty lists (after trimming).
    pub(crate) fn drop_empty(&mut self) {
        self.streams.retain(|_, v| !v.is_empty());
        self.orgs.retain(|_, v| !v.is_empty());
        for p in self.postings.values_mut() {
            p.types.retain(|_, v| !v.is_empty());
            p.actors.retain(|_, v| !v.is_empty());
        }
        self.postings
            .retain(|_, p| !p.types.is_empty() || !p.actors.is_empty());
    }

    /// Indexes the records `self.position + 1 ..= head` of `store`, checking that each one is
    /// where the index expects it (gap-free positions, revisions and org sequences).
    pub fn catch_up(&mut self, store: &dyn LogStore, head: u64) -> Result<(), Error> {
        let mut bad = None;
        let mut expected = self.position + 1;
        store.scan(expected, head, Direction::Forward, &mut |pos, bytes| {
            let env = match codec::decode_ref(pos, bytes) {
                Ok(env) => env,
                Err(e) => {
                    bad = Some(e);
                    return false;
                }
            };
            let revision = self.revision(env.stream).map_or(0, |r| r + 1);
            let seq = self.org_seq(env.org_id) + 1;
            if pos != expected || env.revision != revision || env.org_seq != seq {
                bad = Some(Error::Corrupt {
                    position: pos.min(expected),
                    reason: format!(
                        "expected position {expected}, revision {revision} of {}, sequence \
                         {seq} of its organization; found position {pos}, revision {}, \
                         sequence {}",
                        env.stream, env.revision, env.org_seq
                    ),
                });
                return false;
            }
            self.push(Entry {
                stream: env.stream,
                org: env.org_id,
                event_type: env.event_type,
                actor: env.actor.id,
                position: pos,
            });
            expected += 1;
            true
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        if self.position != head {
            return Err(Error::Corrupt {
                position: self.position + 1,
                reason: "record missing".into(),
            });
        }
        Ok(())
    }

    /// Positions of `key`'s entries numbered `from..=to` (revisions from 0, sequences from 1),
    /// at most `limit`, none past `head`, in the direction asked.
    pub fn range(
        list: Option<&Vec<u64>>,
        first_number: u64,
        from: u64,
        to: u64,
        head: u64,
        direction: Direction,
        limit: usize,
    ) -> Vec<u64> {
        let Some(list) = list else {
            return Vec::new();
        };
        // Entries past the durable head are staged but not yet acknowledged: hidden.
        let visible = list.partition_point(|p| *p <= head);
        let lo = from.saturating_sub(first_number).min(visible as u64) as usize;
        let hi = to
            .saturating_sub(first_number)
            .saturating_add(1)
            .min(visible as u64) as usize;
        if from < first_number && to < first_number || lo >= hi {
            return Vec::new();
        }
        let slice = &list[lo..hi];
        match direction {
            Direction::Forward => slice.iter().take(limit).copied().collect(),
            Direction::Backward => slice.iter().rev().take(limit).copied().collect(),
        }
    }
}

fn push_to(map: &mut HashMap<String, Vec<u64>>, key: &str, position: u64) {
    match map.get_mut(key) {
        Some(v) => v.push(position),
        None => {
            map.insert(key.to_owned(), vec![position]);
        }
    }
}

pub fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("index.snap")
}

/// Writes `index` with the chain MAC at its position, durably.
pub fn write_snapshot(data_dir: &Path, index: &Index, mac: &[u8; 32]) -> Result<(), Error> {
    let body = codec::encode(index);
    crate::durable::replace(&snapshot_path(data_dir), &[MAGIC, mac, &body])?;
    Ok(())
}

/// The index snapshot, if one is there and belongs to this log's history: its MAC must be the
/// MAC of the record at its position.
pub fn read_snapshot(data_dir: &Path, store: &dyn LogStore, head: u64) -> Option<Index> {
    let bytes = std::fs::read(snapshot_path(data_dir)).ok()?;
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        tracing::warn!("the index snapshot is not readable; indexing the whole log");
        return None;
    }
    let mac: [u8; 32] = bytes[8..40].try_into().ok()?;
    let index: Index = match codec::decode(&bytes[40..]) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "the index snapshot does not decode; indexing the whole log");
            return None;
        }
    };
    if index.position > head {
        tracing::warn!("the index snapshot is ahead of the log; indexing the whole log");
        return None;
    }
    if crate::store::mac_at(store, index.position).ok()? != mac {
        tracing::warn!("the index snapshot belongs to another history; indexing the whole log");
        return None;
    }
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hide_staged_positions_and_number_from_zero_or_one() {
        let list = vec![3, 5, 8, 13, 21];
        let f = Direction::Forward;
        // Revisions count from 0, sequences from 1.
        assert_eq!(Index::range(Some(&list), 0, 0, u64::MAX, 100, f, 10), list);
        assert_eq!(Index::range(Some(&list), 0, 1, 2, 100, f, 10), vec![5, 8]);
        assert_eq!(Index::range(Some(&list), 1, 1, 2, 100, f, 10), vec![3, 5]);
        assert_eq!(
            Index::range(Some(&list), 1, 0, 0, 100, f, 10),
            Vec::<u64>::new()
        );
        assert_eq!(
            Index::range(Some(&list), 1, 9, 20, 100, f, 10),
            Vec::<u64>::new()
        );
        // Past the durable head: not visible yet.
        assert_eq!(
            Index::range(Some(&list), 0, 0, u64::MAX, 10, f, 10),
            vec![3, 5, 8]
        );
        assert_eq!(
            Index::range(Some(&list), 0, 0, u64::MAX, 10, Direction::Backward, 2),
            vec![8, 5]
        );
        assert_eq!(Index::range(None, 0, 0, 5, 10, f, 10), Vec::<u64>::new());
        assert_eq!(Index::range(Some(&list), 0, 0, 5, 100, f, 2), vec![3, 5]);
    }
}
