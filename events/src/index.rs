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
// 002: per-organization postings by event type and actor. 003: list bases (retention), and
// the position in the header. An older snapshot is ignored once and the index rebuilt (from
// the prefix anchor, if the log's prefix was dropped).
const MAGIC: &[u8; 8] = b"QZIDX003";

/// Positions by stream revision and by organization sequence.
///
/// Retention drops entries from the front of a list (and a dropped log prefix drops all of
/// theirs): a list then starts at its base — `streams[s][i]` is revision `stream_base[s] + i`,
/// `orgs[o][i]` is sequence `org_base[o] + 1 + i` — and reads below the base find nothing. A
/// base is kept even when its list is empty, so the next revision and sequence stay right.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// `streams[s][r - base]` is the position of revision `r` of stream `s`.
    pub streams: HashMap<String, Vec<u64>>,
    /// `orgs[o][n - 1 - base]` is the position of sequence number `n` of organization `o`.
    pub orgs: HashMap<String, Vec<u64>>,
    /// Each organization's positions by event type and by actor: the audit log's filters.
    pub postings: HashMap<String, OrgPostings>,
    /// Every position up to here is indexed.
    pub position: u64,
    /// Entries dropped from the front of a stream's list; absent: none.
    pub stream_base: HashMap<String, u64>,
    /// Entries dropped from the front of an organization's list; absent: none.
    pub org_base: HashMap<String, u64>,
}

/// The bases of every list: what a dropped log prefix leaves of the index (see
/// [`crate::prefix`]), and what an index rebuilt after the drop starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bases {
    pub streams: HashMap<String, u64>,
    pub orgs: HashMap<String, u64>,
}

/// One organization's positions by event type and by actor id, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPostings {
    pub types: HashMap<String, Vec<u64>>,
    pub actors: HashMap<String, Vec<u64>>,
}

impl OrgPostings {
    /// Drops every position at or below `position` (retention).
    fn drop_through(&mut self, position: u64) {
        for lists in [&mut self.types, &mut self.actors] {
            for list in lists.values_mut() {
                let n = list.partition_point(|p| *p <= position);
                list.drain(..n);
            }
            lists.retain(|_, v| !v.is_empty());
        }
    }
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
    /// An index of nothing past `position`, whose lists start at `bases`.
    pub fn from_bases(bases: Bases, position: u64) -> Index {
        Index {
            streams: HashMap::new(),
            orgs: HashMap::new(),
            postings: HashMap::new(),
            position,
            stream_base: bases.streams,
            org_base: bases.orgs,
        }
    }

    pub fn bases(&self) -> Bases {
        Bases {
            streams: self.stream_base.clone(),
            orgs: self.org_base.clone(),
        }
    }

    fn stream_first(&self, stream: &str) -> u64 {
        self.stream_base.get(stream).copied().unwrap_or(0)
    }

    /// The first sequence number of `org` still indexed (1 unless retention dropped some).
    pub fn org_first(&self, org: &str) -> u64 {
        self.org_base.get(org).copied().unwrap_or(0) + 1
    }

    /// The last revision of `stream`, if it has events.
    pub fn revision(&self, stream: &str) -> Option<u64> {
        let len = self.streams.get(stream).map_or(0, |v| v.len() as u64);
        (self.stream_first(stream) + len).checked_sub(1)
    }

    /// The last sequence number of `org` (0 before its first event).
    pub fn org_seq(&self, org: &str) -> u64 {
        self.org_base.get(org).copied().unwrap_or(0)
            + self.orgs.get(org).map_or(0, |v| v.len() as u64)
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

    /// Positions of stream revisions `from..=to` (see [`Index::range`]).
    pub fn stream_range(
        &self,
        stream: &str,
        (from, to): (u64, u64),
        head: u64,
        direction: Direction,
        limit: usize,
    ) -> Vec<u64> {
        let first = self.stream_first(stream);
        Self::range(
            self.streams.get(stream),
            first,
            from,
            to,
            head,
            direction,
            limit,
        )
    }

    /// Positions of organization sequence numbers `from..=to` (see [`Index::range`]).
    pub fn org_range(
        &self,
        org: &str,
        (from, to): (u64, u64),
        head: u64,
        direction: Direction,
        limit: usize,
    ) -> Vec<u64> {
        let first = self.org_first(org);
        Self::range(self.orgs.get(org), first, from, to, head, direction, limit)
    }

    /// Drops the entries of `org` numbered below `keep_from` from its list, and the entries of
    /// the same events from their streams' lists; `stream_of` names the stream of a position
    /// (read from the log). Returns how many events left the index.
    pub fn purge_org(
        &mut self,
        org: &str,
        keep_from: u64,
        stream_of: &mut dyn FnMut(u64) -> Result<String, Error>,
    ) -> Result<u64, Error> {
        let first = self.org_first(org);
        let Some(list) = self.orgs.get_mut(org) else {
            return Ok(0);
        };
        let n = keep_from.saturating_sub(first).min(list.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        // Each stream belongs to one organization and its entries are in position order, so
        // the org's oldest entries are the front of each of their streams' lists.
        let mut per_stream: HashMap<String, usize> = HashMap::new();
        for pos in &list[..n] {
            *per_stream.entry(stream_of(*pos)?).or_default() += 1;
        }
        let cut = list[n - 1];
        list.drain(..n);
        *self.org_base.entry(org.to_owned()).or_default() += n as u64;
        if let Some(p) = self.postings.get_mut(org) {
            p.drop_through(cut);
        }
        for (stream, k) in per_stream {
            if let Some(v) = self.streams.get_mut(&stream) {
                let k = k.min(v.len());
                v.drain(..k);
                *self.stream_base.entry(stream).or_default() += k as u64;
            }
        }
        Ok(n as u64)
    }

    /// Drops every entry at or below `position` (a dropped log prefix) from every list.
    pub fn drop_through(&mut self, position: u64) {
        for (lists, bases) in [
            (&mut self.streams, &mut self.stream_base),
            (&mut self.orgs, &mut self.org_base),
        ] {
            for (key, list) in lists.iter_mut() {
                let n = list.partition_point(|p| *p <= position);
                if n > 0 {
                    list.drain(..n);
                    *bases.entry(key.clone()).or_default() += n as u64;
                }
            }
            lists.retain(|_, v| !v.is_empty());
        }
        for p in self.postings.values_mut() {
            p.drop_through(position);
        }
        self.postings
            .retain(|_, p| !p.types.is_empty() || !p.actors.is_empty());
    }

    /// Indexes the records `self.position + 1 ..= head` of `store`, checking that each one is
    /// where the index expects it (gap-free positions, revisions and org sequences). A record
    /// numbered below its list's base (an index rebuilt from a prefix anchor whose retention had
    /// already dropped it) is not indexed again.
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
            let stream_below = env.revision < revision && !self.streams.contains_key(env.stream);
            let org_below = env.org_seq < seq && !self.orgs.contains_key(env.org_id);
            if pos != expected
                || !(env.revision == revision || stream_below)
                || !(env.org_seq == seq || org_below)
            {
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
            if stream_below || org_below {
                // Expired for its organization: its postings went with its sequence entry.
                if !stream_below {
                    push_to(&mut self.streams, env.stream, pos);
                }
                if !org_below {
                    push_to(&mut self.orgs, env.org_id, pos);
                }
                self.position = pos;
            } else {
                self.push(Entry {
                    stream: env.stream,
                    org: env.org_id,
                    event_type: env.event_type,
                    actor: env.actor.id,
                    position: pos,
                });
            }
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

    /// Positions of `key`'s entries numbered `from..=to` (`first_number`: the number of the
    /// list's first entry), at most `limit`, none past `head`, in the direction asked.
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
        if from > to || to < first_number || lo >= hi {
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
    let position = index.position.to_be_bytes();
    crate::durable::replace(&snapshot_path(data_dir), &[MAGIC, mac, &position, &body])?;
    Ok(())
}

/// The position of the index snapshot in `data_dir`, without decoding it (what the prefix drop
/// checks); `None` when there is none of this format.
pub fn snapshot_position(data_dir: &Path) -> Option<u64> {
    use std::io::Read;
    let mut header = [0u8; 48];
    std::fs::File::open(snapshot_path(data_dir))
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(header[40..48].try_into().ok()?))
}

/// The index snapshot, if one is there and belongs to this log's history: its MAC must be the
/// MAC of the record at its position (or of the prefix anchor).
pub fn read_snapshot(data_dir: &Path, store: &dyn LogStore, head: u64) -> Option<Index> {
    let bytes = std::fs::read(snapshot_path(data_dir)).ok()?;
    if bytes.len() < 48 || &bytes[..8] != MAGIC {
        tracing::warn!("the index snapshot is not readable; indexing the log again");
        return None;
    }
    let mac: [u8; 32] = bytes[8..40].try_into().ok()?;
    let index: Index = match codec::decode(&bytes[48..]) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "the index snapshot does not decode; indexing the log again");
            return None;
        }
    };
    if index.position > head {
        tracing::warn!("the index snapshot is ahead of the log; indexing the log again");
        return None;
    }
    if crate::store::mac_at(store, index.position).ok()? != mac {
        tracing::warn!("the index snapshot belongs to another history; indexing the log again");
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
