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

/// Seek steps (list lookups) one hold of the index lock may take. An AND of two large lists
/// that rarely meet can leapfrog through both; past this budget the walk lets go of the lock,
/// so the committer (which needs it to index each group) is never held up by a reader for
/// long, and resumes where it stopped.
const STEPS_PER_HOLD: usize = 4096;

/// Seekable view of a query over borrowed index lists, clipped to a position range.
enum Node<'a> {
    Leaf(&'a [u64]),
    And(Vec<Node<'a>>),
    Or(Vec<Node<'a>>),
}

/// What a seek found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    /// The nearest position in the seek's direction.
    Found(u64),
    /// Nothing more in that direction.
    End,
    /// Out of steps: nothing lies between the start and this position (exclusive); seek again
    /// from here.
    Paused(u64),
}

/// Whether `a` comes before `b` in `direction`.
fn before(a: u64, b: u64, direction: Direction) -> bool {
    match direction {
        Direction::Forward => a < b,
        Direction::Backward => a > b,
    }
}

impl Node<'_> {
    /// The first position `>= at` (forward) or `<= at` (backward) this node holds, counting
    /// list lookups in `steps` and pausing once they reach `budget`.
    fn seek(&self, at: u64, direction: Direction, steps: &mut usize, budget: usize) -> Seek {
        match self {
            Node::Leaf(list) => {
                *steps += 1;
                let found = match direction {
                    Direction::Forward => list.get(list.partition_point(|p| *p < at)).copied(),
                    Direction::Backward => {
                        let i = list.partition_point(|p| *p <= at);
                        i.checked_sub(1).map(|i| list[i])
                    }
                };
                found.map_or(Seek::End, Seek::Found)
            }
            Node::Or(children) => {
                // The nearest find wins, unless a paused child might still hold something
                // nearer: then the Or pauses where that child did.
                let (mut found, mut paused) = (None::<u64>, None::<u64>);
                for c in children {
                    match c.seek(at, direction, steps, budget) {
                        Seek::Found(p) if found.is_none_or(|f| before(p, f, direction)) => {
                            found = Some(p)
                        }
                        Seek::Paused(p) if paused.is_none_or(|q| before(p, q, direction)) => {
                            paused = Some(p)
                        }
                        _ => {}
                    }
                }
                match (found, paused) {
                    (Some(f), Some(p)) if !before(f, p, direction) => Seek::Paused(p),
                    (Some(f), _) => Seek::Found(f),
                    (None, Some(p)) => Seek::Paused(p),
                    (None, None) => Seek::End,
                }
            }
            Node::And(children) => {
                let mut x = at;
                loop {
                    let mut agreed = true;
                    for c in children {
                        // Pause only past the start, so that every hold moves the walk on.
                        if *steps >= budget && x != at {
                            return Seek::Paused(x);
                        }
                        match c.seek(x, direction, steps, budget) {
                            Seek::End => return Seek::End,
                            Seek::Paused(y) => return Seek::Paused(y),
                            Seek::Found(y) if y != x => {
                                x = y;
                                agreed = false;
                            }
                            Seek::Found(_) => {}
                        }
                    }
                    if agreed {
                        return Seek::Found(x);
                    }
                }
            }
        }
    }
}

/// Walks `root` from `at` for up to `limit` positions within one lock hold; returns where to
/// resume (`None` when the walk is over).
fn walk(
    root: &Node<'_>,
    mut at: u64,
    direction: Direction,
    limit: usize,
    budget: usize,
    out: &mut Vec<u64>,
) -> Option<u64> {
    let mut steps = 0;
    while out.len() < limit {
        if steps >= budget {
            return Some(at);
        }
        match root.seek(at, direction, &mut steps, budget) {
            Seek::Found(p) => {
                out.push(p);
                at = match direction {
                    Direction::Forward => p.checked_add(1)?,
                    Direction::Backward => p.checked_sub(1)?,
                };
            }
            Seek::Paused(p) => return Some(p),
            Seek::End => return None,
        }
    }
    None
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
        let (lo, hi) = {
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
            (list[(from - first) as usize], list[(to - first) as usize])
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut at = match direction {
            Direction::Forward => lo,
            Direction::Backward => hi,
        };
        loop {
            let index = self.shared().index.read().map_err(|_| Error::Closed)?;
            // Subject streams are global lists: the organization's own list keeps them (and
            // everything else) inside this organization.
            let root = Node::And(vec![
                build(&index, org, &Query::All, lo, hi),
                build(&index, org, query, lo, hi),
            ]);
            // Let go of the lock between holds: the committer may be waiting for it.
            match walk(&root, at, direction, limit, STEPS_PER_HOLD, &mut out) {
                Some(next) => at = next,
                None => break,
            }
        }
        self.read_positions(&out)
    }

    /// The first sequence number of `org` whose event was recorded at or after `micros`
    /// (one past the last when none was). Log times never decrease, so this is a binary search
    /// over the organization's events: O(log n) record reads.
    pub fn org_seq_at_time(&self, org: &str, micros: i64) -> Result<u64, Error> {
        self.org_partition_point(org, |r| r.envelope.recorded_at < micros)
    }

    /// The first sequence number of `org`'s kept events for which `before` is false (one past
    /// the last when it holds for all), by binary search: `before` must hold for a prefix of
    /// them, as it does for "recorded before t" or "event id below x".
    pub fn org_partition_point(
        &self,
        org: &str,
        mut before: impl FnMut(&Recorded) -> bool,
    ) -> Result<u64, Error> {
        let last = self.org_last_seq(org)?;
        let first = self.org_first(org)?;
        let (mut lo, mut hi) = (first, (last + 1).max(first));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.org_record(org, mid)? {
                Some(r) if before(&r) => lo = mid + 1,
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

    fn walk_all(n: &Node, d: Direction, budget: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = if d == Direction::Forward { 0 } else { 100 };
        while let Some(next) = walk(n, at, d, usize::MAX, budget, &mut out) {
            at = next;
        }
        out
    }

    #[test]
    fn seeks_intersect_and_unite_in_both_directions_whatever_the_budget() {
        let a = [1, 3, 5, 7, 9, 11];
        let b = [2, 3, 4, 9, 10, 11];
        let c = [5, 6, 7];
        for budget in [1, 2, 3, 5, STEPS_PER_HOLD] {
            let and = Node::And(vec![leaf(&a), leaf(&b)]);
            let or = Node::Or(vec![leaf(&b), leaf(&c)]);
            assert_eq!(walk_all(&and, Direction::Forward, budget), vec![3, 9, 11]);
            assert_eq!(walk_all(&and, Direction::Backward, budget), vec![11, 9, 3]);
            assert_eq!(
                walk_all(&or, Direction::Forward, budget),
                vec![2, 3, 4, 5, 6, 7, 9, 10, 11]
            );
            let nested = Node::And(vec![leaf(&a), Node::Or(vec![leaf(&b), leaf(&c)])]);
            assert_eq!(
                walk_all(&nested, Direction::Backward, budget),
                vec![11, 9, 7, 5, 3]
            );
            let deep = Node::Or(vec![
                Node::And(vec![leaf(&a), leaf(&c)]),
                Node::And(vec![leaf(&b), Node::Or(vec![leaf(&a), leaf(&c)])]),
            ]);
            assert_eq!(
                walk_all(&deep, Direction::Forward, budget),
                vec![3, 5, 7, 9, 11]
            );
            assert_eq!(
                walk_all(&deep, Direction::Backward, budget),
                vec![11, 9, 7, 5, 3]
            );
        }
        assert_eq!(clip(&a, 4, 9), &[5, 7, 9]);
        assert_eq!(clip(&a, 12, 20), &[] as &[u64]);
    }

    #[test]
    fn a_leapfrog_through_lists_that_never_meet_pauses_within_its_budget() {
        let evens: Vec<u64> = (0..20_000).map(|i| i * 2).collect();
        let odds: Vec<u64> = (0..20_000).map(|i| i * 2 + 1).collect();
        let and = Node::And(vec![Node::Leaf(&evens), Node::Leaf(&odds)]);
        let mut out = Vec::new();
        let mut holds = 0;
        let mut at = 0;
        while let Some(next) = walk(&and, at, Direction::Forward, 50, 100, &mut out) {
            assert!(next > at, "each hold makes progress");
            at = next;
            holds += 1;
        }
        assert!(out.is_empty());
        assert!(holds > 100, "the walk let go of the lock {holds} times");
    }

    /// A random query tree over a few random sorted lists.
    #[derive(Debug, Clone)]
    enum T {
        Leaf(usize),
        And(Vec<T>),
        Or(Vec<T>),
    }

    fn tree() -> impl proptest::strategy::Strategy<Value = T> {
        use proptest::prelude::*;
        (0..4usize)
            .prop_map(T::Leaf)
            .prop_recursive(3, 12, 3, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 1..4).prop_map(T::And),
                    proptest::collection::vec(inner, 1..4).prop_map(T::Or),
                ]
            })
    }

    fn node<'a>(t: &T, lists: &'a [Vec<u64>]) -> Node<'a> {
        match t {
            T::Leaf(i) => Node::Leaf(&lists[*i]),
            T::And(ts) => Node::And(ts.iter().map(|t| node(t, lists)).collect()),
            T::Or(ts) => Node::Or(ts.iter().map(|t| node(t, lists)).collect()),
        }
    }

    fn holds(t: &T, lists: &[Vec<u64>], p: u64) -> bool {
        match t {
            T::Leaf(i) => lists[*i].binary_search(&p).is_ok(),
            T::And(ts) => ts.iter().all(|t| holds(t, lists, p)),
            T::Or(ts) => ts.iter().any(|t| holds(t, lists, p)),
        }
    }

    proptest::proptest! {
        #[test]
        fn paused_walks_find_exactly_what_a_scan_finds(
            lists in proptest::collection::vec(
                proptest::collection::btree_set(0..100u64, 0..60), 4),
            t in tree(),
            budget in 1..8usize,
        ) {
            let lists: Vec<Vec<u64>> = lists.into_iter().map(|s| s.into_iter().collect()).collect();
            let root = node(&t, &lists);
            let want: Vec<u64> = (0..=100).filter(|p| holds(&t, &lists, *p)).collect();
            proptest::prop_assert_eq!(&walk_all(&root, Direction::Forward, budget), &want);
            let mut rev = want.clone();
            rev.reverse();
            proptest::prop_assert_eq!(&walk_all(&root, Direction::Backward, budget), &rev);
            proptest::prop_assert_eq!(&walk_all(&root, Direction::Forward, usize::MAX), &want);
        }
    }
}
