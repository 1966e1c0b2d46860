//! Whole list answers kept as bytes, so a repeated page costs a hash lookup and a copy.
//!
//! A key names everything an answer depends on except the clock: the organization, its
//! read-model version (its own sequence number, so another tenant's writes do not evict it),
//! the heartbeat store's generation and the normalized query. An entry therefore never goes
//! stale while its key can still be asked for: a write or a heartbeat changes the key, and the
//! old entry is simply never looked up again. The clock is handled per entry: each stores the
//! first instant at which time alone would change its bytes (a device going offline, a key
//! expiring), and is not served from then on. Nothing expires on a timer.
//!
//! The cache is bounded by the bytes it holds, not by its number of entries: when an insert
//! would pass the bound, the oldest entries leave first (unreachable ones among them).

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::body::Bytes;
use dashmap::DashMap;

/// What an answer depends on, besides the clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub org_id: String,
    /// The organization's read-model version.
    pub version: u64,
    /// The heartbeat store's generation.
    pub heartbeats: u64,
    /// The endpoint, canonical filter and sort, limit and cursor.
    pub query: String,
}

#[derive(Debug)]
struct Entry {
    body: Bytes,
    /// Served only while the clock is before this (microseconds since the epoch).
    valid_until: i64,
}

/// Bytes per [`PageKey`], at most `capacity` bytes of them.
#[derive(Debug)]
pub struct PageCache {
    entries: DashMap<PageKey, Entry>,
    /// Insertion order and each entry's size: who leaves first, and how much room it frees.
    order: Mutex<Order>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Order {
    queue: VecDeque<(PageKey, usize)>,
    bytes: usize,
}

impl PageCache {
    pub fn new(capacity: usize) -> PageCache {
        PageCache {
            entries: DashMap::new(),
            order: Mutex::new(Order::default()),
            capacity,
        }
    }

    /// The answer for `key`, if one is cached and the clock has not changed it by `now`.
    pub fn get(&self, key: &PageKey, now: i64) -> Option<Bytes> {
        let entry = self.entries.get(key)?;
        (now < entry.valid_until).then(|| entry.body.clone())
    }

    /// Keeps `body` for `key` until `valid_until`; an answer larger than the whole cache is
    /// not kept.
    pub fn put(&self, key: PageKey, body: Bytes, valid_until: i64) {
        let size = cost(&key, &body);
        if size > self.capacity {
            return;
        }
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        // Two requests rendered the same page: the second replaces the first, counted once.
        if self.entries.remove(&key).is_some()
            && let Some(i) = order.queue.iter().position(|(k, _)| *k == key)
            && let Some((_, old_size)) = order.queue.remove(i)
        {
            order.bytes -= old_size;
        }
        while order.bytes + size > self.capacity {
            let Some((old, old_size)) = order.queue.pop_front() else {
                break;
            };
            order.bytes -= old_size;
            self.entries.remove(&old);
        }
        self.entries
            .insert(key.clone(), Entry { body, valid_until });
        order.queue.push_back((key, size));
        order.bytes += size;
    }

    /// Bytes held, keys included.
    pub fn bytes(&self) -> usize {
        self.order.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn cost(key: &PageKey, body: &Bytes) -> usize {
    body.len() + key.query.len() + key.org_id.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: u64, query: &str) -> PageKey {
        PageKey {
            org_id: "org".into(),
            version,
            heartbeats: 0,
            query: query.into(),
        }
    }

    #[test]
    fn an_answer_is_served_until_the_clock_would_change_it() {
        let cache = PageCache::new(10_000);
        cache.put(key(1, "q"), Bytes::from_static(b"page"), 100);
        assert_eq!(cache.get(&key(1, "q"), 99).as_deref(), Some(&b"page"[..]));
        assert_eq!(cache.get(&key(1, "q"), 100), None);
        assert_eq!(cache.get(&key(2, "q"), 0), None, "another version");
    }

    #[test]
    fn the_bound_is_in_bytes_and_the_oldest_leave_first() {
        let body = Bytes::from(vec![b'x'; 1_000]);
        let one = cost(&key(1, "a"), &body);
        let cache = PageCache::new(3 * one);
        for q in ["a", "b", "c", "d"] {
            cache.put(key(1, q), body.clone(), i64::MAX);
        }
        assert!(cache.bytes() <= 3 * one);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key(1, "a"), 0).is_none());
        assert!(cache.get(&key(1, "d"), 0).is_some());
        cache.put(key(1, "d"), body.clone(), i64::MAX);
        assert_eq!(cache.bytes(), 3 * one, "a repeated insert counts once");
        assert!(cache.get(&key(1, "b"), 0).is_some(), "and evicts nothing");
        cache.put(key(1, "huge"), Bytes::from(vec![0; 4 * one]), i64::MAX);
        assert!(cache.get(&key(1, "huge"), 0).is_none());
    }
}
