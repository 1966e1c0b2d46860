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

/// Entries that expire [`LOGIN_TTL`] after they were made, at most [`MAX_PENDING`] of them.
#[derive(Debug)]
pub struct Expiring<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `value` under `key` (a fresh random value: never an existing key).
    pub fn insert(&self, key: String, value: V) -> Result<(), Full> {
        let mut entries = self.lock();
        if entries.len() >= self.cap {
            let ttl = self.ttl;
            entries.retain(|_, (made, _)| made.elapsed() < ttl);
            if entries.len() >= self.cap {
                return Err(Full);
            }
        }
        entries.insert(key, (Instant::now(), value));
        Ok(())
    }

    /// Removes and returns the entry, if it is there and has not expired: each is used once.
    pub fn take(&self, key: &str) -> Option<V> {
        let (made, value) = self.lock().remove(key)?;
        (made.elapsed() < self.ttl).then_some(value)
    }

    /// Runs `f` on the live entry; `None` when it is missing or expired (and then drops it).
    pub fn with<R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some((made, value)) if made.elapsed() < self.ttl => Some(f(value)),
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
        let (made, value) = entries.get(key)?;
        Some(f(value, made.elapsed() >= self.ttl))
    }

    /// Removes the entry, expired or not.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// When the entry expires, counted from now.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let entries = self.lock();
        let (made, _) = entries.get(key)?;
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
        map.insert("a".into(), 1).unwrap();
        assert_eq!(map.with("a", |v| *v), Some(1));
        assert_eq!(map.take("a"), Some(1));
        assert_eq!(map.take("a"), None);
    }

    #[test]
    fn expired_entries_are_gone_and_make_room() {
        let map = Expiring::new(Duration::from_millis(20), 2);
        map.insert("a".into(), 1).unwrap();
        map.insert("b".into(), 2).unwrap();
        assert_eq!(map.insert("c".into(), 3), Err(Full));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(map.with("a", |v| *v), None);
        map.insert("c".into(), 3).unwrap();
        assert_eq!(map.take("b"), None, "expired");
        assert_eq!(map.take("c"), Some(3));
    }
}
