//! Sign-ins in progress, kept in memory only: a browser's trip to the identity provider and
//! back (keyed by its `state`), and a device waiting for its owner to sign in (keyed by its
//! login id). Both are short-lived and bounded, so that anonymous callers cannot grow the
//! server's memory; a restart forgets them, and the person simply starts again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sign-in may take, from the first redirect to the callback, and how long a
/// device waits for its owner.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// Most sign-ins in progress at once, per kind; past it new ones are refused (503) until old
/// ones finish or expire.
pub const MAX_PENDING: usize = 10_000;
/// Most sign-ins one client address (IPv6: one /64) may have in progress at once, per kind: a
/// handful of anonymous callers must not fill [`MAX_PENDING`] and lock everyone else out.
pub const MAX_PENDING_PER_CLIENT: usize = 20;

/// Entries that expire [`LOGIN_TTL`] after they were made, at most [`MAX_PENDING`] of them.
#[derive(Debug)]
pub struct Expiring<V> {
    /// key → (made, the client address that made it, value)
    entries: Mutex<HashMap<String, (Instant, String, V)>>,
    ttl: Duration,
    cap: usize,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Expiring::new(LOGIN_TTL, MAX_PENDING)
    }
}

/// The map is full of entries that have not expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<V> Expiring<V> {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Expiring {
            entries: Mutex::new(HashMap::new()),
            ttl,
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, String, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `value` under `key` (a fresh random value: never an existing key), made by the
    /// client at address `client`, which may have at most [`MAX_PENDING_PER_CLIENT`] live.
    pub fn insert(&self, client: &str, key: String, value: V) -> Result<(), Full> {
        let mut entries = self.lock();
        let ttl = self.ttl;
        if entries.len() >= self.cap {
            entries.retain(|_, (made, _, _)| made.elapsed() < ttl);
            if entries.len() >= self.cap {
                return Err(Full);
            }
        }
        // Only a map holding that many entries can hold that many of one client's.
        if entries.len() >= MAX_PENDING_PER_CLIENT {
            let own = entries
                .values()
                .filter(|(made, who, _)| who == client && made.elapsed() < ttl)
                .count();
            if own >= MAX_PENDING_PER_CLIENT {
                return Err(Full);
            }
        }
        entries.insert(key, (Instant::now(), client.to_owned(), value));
        Ok(())
    }

    /// Removes and returns the entry, if it is there and has not expired: each is used once.
    pub fn take(&self, key: &str) -> Option<V> {
        let (made, _, value) = self.lock().remove(key)?;
        (made.elapsed() < self.ttl).then_some(value)
    }

    /// Runs `f` on the live entry; `None` when it is missing or expired (and then drops it).
    pub fn with<R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some((made, _, value)) if made.elapsed() < self.ttl => Some(f(value)),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Runs `f` on the entry and whether it expired, leaving it in place (an expired entry
    /// stays until it is taken or the map needs room, so that its owner can be told it expired).
    pub fn peek<R>(&self, key: &str, f: impl FnOnce(&V, bool) -> R) -> Option<R> {
        let entries = self.lock();
        let (made, _, value) = entries.get(key)?;
        Some(f(value, made.elapsed() >= self.ttl))
    }

    /// Removes the entry, expired or not.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// When the entry expires, counted from now.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let entries = self.lock();
        let (made, _, _) = entries.get(key)?;
        self.ttl.checked_sub(made.elapsed())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_taken_once() {
        let map = Expiring::new(Duration::from_secs(60), 10);
        map.insert("1.2.3.4", "a".into(), 1).unwrap();
        assert_eq!(map.with("a", |v| *v), Some(1));
        assert_eq!(map.take("a"), Some(1));
        assert_eq!(map.take("a"), None);
    }

    #[test]
    fn expired_entries_are_gone_and_make_room() {
        let map = Expiring::new(Duration::from_millis(20), 2);
        map.insert("1.2.3.4", "a".into(), 1).unwrap();
        map.insert("1.2.3.4", "b".into(), 2).unwrap();
        assert_eq!(map.insert("5.6.7.8", "c".into(), 3), Err(Full));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(map.with("a", |v| *v), None);
        map.insert("5.6.7.8", "c".into(), 3).unwrap();
        assert_eq!(map.take("b"), None, "expired");
        assert_eq!(map.take("c"), Some(3));
    }

    #[test]
    fn one_client_cannot_fill_the_map_for_everyone() {
        let map = Expiring::new(Duration::from_secs(60), 1000);
        for i in 0..MAX_PENDING_PER_CLIENT {
            map.insert("client:203.0.113.7", format!("k{i}"), i)
                .unwrap();
        }
        assert_eq!(
            map.insert("client:203.0.113.7", "one-more".into(), 0),
            Err(Full)
        );
        map.insert("client:198.51.100.1", "other".into(), 0)
            .unwrap();
        // A finished sign-in frees its place.
        map.take("k0");
        map.insert("client:203.0.113.7", "again".into(), 0).unwrap();
    }
}
