//! Filtered reads of one organization's events through the in-memory index: the audit log.
//!
//! A [`Query`] is a tree of ANDs and ORs over the index's position lists (the organization's
//! events by type, by actor, and each subject's stream). It is answered by seeking: every node
//! can name its first position at or after a given one (or at or before, going backwards) in
//! O(log n) per list, an OR takes the nearest of its children, and an AND leapfrogs its
//! children until they agree. So a page costs O(page × lists × log n) in memory and reads
//! only the records it returns, however many events the organization has.

use std::sync::Arc;

use crate::error::Error;
use crate::index::Index;
use crate::log::Log;
use crate::recorded::Recorded;
use crate::store::Direction;

/// Which of an organization's events to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every event.
    All,
    /// Events of this exact type.
    Type(String),
    /// Events caused by this actor id.
    Actor(String),
    /// Events of this stream (an event's subject, e.g. `device:dev_…`).
    Stream(String),
    And(Vec<Query>),
    Or(Vec<Query>),
}

/// Seekable view of a query over borrowed index lists, clipped to a position range.
enum Node<'a> {
    Leaf(&'a [u64]),
    And(Vec<Node<'a>>),
    Or(Vec<Node<'a>>),
}

impl Node<'_> {
    /// The first position `>= at` (forward) or `<= at` (backward) this node holds.
    fn seek(&self, at: u64, direction: Direction) -> Option<u64> {
        match self {
            Node::Leaf(list) => match direction {
                Direction::Forward => list.get(list.partition_point(|p| *p < at)).copied(),
                Direction::Backward => {
                    let i = list.partition_point(|p| *p <= at);
                    i.checked_sub(1).map(|i| list[i])
                }
            },
            Node::Or(children) => {
                let found = children.iter().filter_map(|c| c.seek(at, direction));
                match direction {
                    Direction::Forward => found.min(),
                    Direction::Backward => found.max(),
                }
            }
            Node::And(children) => {
                let mut x = at;
                loop {
                    let mut agreed = true;
                    for c in children {
                        let y = c.seek(x, direction)?;
                        if y != x {
                            x = y;
                            agreed = false;
                        }
                    }
                    if agreed {
                        return Some(x);
                    }
                }
            }
        }
    }
}

/// `list` clipped to positions `lo..=hi`.
fn clip(list: &[u64], lo: u64, hi: u64) -> &[u64] {
    let a = list.partition_point(|p| *p < lo);
    let b = list.partition_point(|p| *p <= hi);
    &list[a..b.max(a)]
}

fn build<'a>(index: &'a Index, org: &str, q: &Query, lo: u64, hi: u64) -> Node<'a> {
    let leaf = |list: Option<&'a Vec<u64>>| Node::Leaf(list.map_or(&[][..], |l| clip(l, lo, hi)));
    let postings = index.postings.get(org);
    match q {
        Query::All => leaf(index.orgs.get(org)),
        Query::Type(t) => leaf(postings.and_then(|p| p.types.get(t))),
        Query::Actor(a) => leaf(postings.and_then(|p| p.actors.get(a))),
        Query::Stream(s) => leaf(index.streams.get(s)),
        Query::And(qs) => Node::And(qs.iter().map(|q| build(index, org, q, lo, hi)).collect()),
        Query::Or(qs) => Node::Or(qs.iter().map(|q| build(index, org, q, lo, hi)).collect()),
    }
}

impl Log {
    /// The organization's last committed sequence number (0 before its first event), from the
    /// index alone.
    pub fn org_last_seq(&self, org: &str) -> Result<u64, Error> {
        let head = self.head();
        let index = self.shared().index.read().map_err(|_| Error::Closed)?;
        // Retention may have dropped the list's front: it starts at its base.
        Ok(index.org_first(org) - 1
            + index
                .orgs
                .get(org)
                .map_or(0, |l| l.partition_point(|p| *p <= head) as u64))
    }

    /// Up to `limit` of the organization's events with sequence numbers in `from..=to` that
    /// match `query`, oldest first (`Forward`) or newest first (`Backward`).
    pub fn query_org(
        &self,
        org: &str,
        query: &Query,
        from: u64,
        to: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        if limit == 0 || from > to {
            return Ok(Vec::new());
        }
        let head = self.head();
        let positions = {
            let index = self.shared().index.read().map_err(|_| Error::Closed)?;
            let Some(list) = index.orgs.get(org) else {
                return Ok(Vec::new());
            };
            // Sequence numbers below the list's base were dropped by retention.
            let first = index.org_first(org);
            let from = from.max(first);
            let visible = list.partition_point(|p| *p <= head) as u64;
            let to = to.min(first - 1 + visible);
            if from > to {
                return Ok(Vec::new());
            }
            let (lo, hi) = (list[(from - first) as usize], list[(to - first) as usize]);
            // Subject streams are global lists: the organization's own list keeps them (and
            // everything else) inside this organization.
            let root = Node::And(vec![
                build(&index, org, &Query::All, lo, hi),
                build(&index, org, query, lo, hi),
            ]);
            let mut out = Vec::with_capacity(limit.min(1024));
            let mut at = match direction {
                Direction::Forward => lo,
                Direction::Backward => hi,
            };
            while out.len() < limit {
                let Some(p) = root.seek(at, direction) else {
                    break;
                };
                out.push(p);
                at = match direction {
                    Direction::Forward => p + 1,
                    Direction::Backward => match p.checked_sub(1) {
                        Some(a) => a,
                        None => break,
                    },
                };
            }
            out
        };
        self.read_positions(&positions)
    }

    /// The first sequence number of `org` whose event was recorded at or after `micros`
    /// (one past the last when none was). Log times never decrease, so this is a binary search
    /// over the organization's events: O(log n) record reads.
    pub fn org_seq_at_time(&self, org: &str, micros: i64) -> Result<u64, Error> {
        let last = self.org_last_seq(org)?;
        let first = self.org_first(org)?;
        let (mut lo, mut hi) = (first, (last + 1).max(first));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.org_record(org, mid)?.map(|r| r.envelope.recorded_at);
            match at {
                Some(t) if t < micros => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// The organization's event number `seq`, if committed.
    pub fn org_record(&self, org: &str, seq: u64) -> Result<Option<Arc<Recorded>>, Error> {
        Ok(self.read_org(org, seq, seq, 1)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: &[u64]) -> Node<'_> {
        Node::Leaf(v)
    }

    #[test]
    fn seeks_intersect_and_unite_in_both_directions() {
        let a = [1, 3, 5, 7, 9, 11];
        let b = [2, 3, 4, 9, 10, 11];
        let c = [5, 6, 7];
        let and = Node::And(vec![leaf(&a), leaf(&b)]);
        let or = Node::Or(vec![leaf(&b), leaf(&c)]);
        let walk = |n: &Node, d: Direction| {
            let mut out = Vec::new();
            let mut at = if d == Direction::Forward { 0 } else { 100 };
            while let Some(p) = n.seek(at, d) {
                out.push(p);
                if d == Direction::Forward {
                    at = p + 1;
                } else if p == 0 {
                    break;
                } else {
                    at = p - 1;
                }
            }
            out
        };
        assert_eq!(walk(&and, Direction::Forward), vec![3, 9, 11]);
        assert_eq!(walk(&and, Direction::Backward), vec![11, 9, 3]);
        assert_eq!(
            walk(&or, Direction::Forward),
            vec![2, 3, 4, 5, 6, 7, 9, 10, 11]
        );
        let nested = Node::And(vec![leaf(&a), Node::Or(vec![leaf(&b), leaf(&c)])]);
        assert_eq!(walk(&nested, Direction::Backward), vec![11, 9, 7, 5, 3]);
        assert_eq!(clip(&a, 4, 9), &[5, 7, 9]);
        assert_eq!(clip(&a, 12, 20), &[] as &[u64]);
    }
}
