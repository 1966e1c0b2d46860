//! Heartbeats: when each device was last seen and what it last reported.
//!
//! Heartbeats are not events: 10,000 devices every 30 seconds would swamp the log. They live in
//! memory (one map entry per device) and are flushed to `heartbeats.bin` in the data dir every
//! few seconds and at shutdown (write to a temporary file, fsync, rename), then loaded at start.
//! A crash loses at most the last few seconds of last-seen times, which the next heartbeat
//! restores; nothing else depends on them being durable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::last_seen::LastSeenIndex;

/// The file's name in the data dir.
pub const FILE_NAME: &str = "heartbeats.bin";
/// Format of the file, its first byte: 2 added `screen_lock`; 1 is still read.
const FORMAT: u8 = 2;

/// What a heartbeat reports; `None` fields keep the previously reported value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub os_version: Option<String>,
    pub client_version: Option<String>,
    pub disk_encrypted: Option<bool>,
    pub firewall: Option<bool>,
    pub screen_lock: Option<bool>,
}

/// The last heartbeat of a device. Persisted with postcard: never reorder or remove fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Microseconds since the epoch.
    pub last_seen: i64,
    pub os_version: Option<String>,
    pub client_version: Option<String>,
    pub disk_encrypted: Option<bool>,
    pub firewall: Option<bool>,
    /// Whether the screen locks itself when idle.
    pub screen_lock: Option<bool>,
}

impl Seen {
    /// The posture signals it holds, as the log records them.
    pub fn signals(&self) -> events::event::Signals {
        events::event::Signals {
            os_version: self.os_version.clone(),
            client_version: self.client_version.clone(),
            disk_encrypted: self.disk_encrypted,
            firewall: self.firewall,
            screen_lock: self.screen_lock,
        }
    }
}

/// Format 1 of [`Seen`], before `screen_lock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SeenV1 {
    last_seen: i64,
    os_version: Option<String>,
    client_version: Option<String>,
    disk_encrypted: Option<bool>,
    firewall: Option<bool>,
}

impl From<SeenV1> for Seen {
    fn from(v: SeenV1) -> Seen {
        Seen {
            last_seen: v.last_seen,
            os_version: v.os_version,
            client_version: v.client_version,
            disk_encrypted: v.disk_encrypted,
            firewall: v.firewall,
            screen_lock: None,
        }
    }
}

/// The in-memory store, shared by every request.
#[derive(Debug)]
pub struct Heartbeats {
    seen: DashMap<String, Seen>,
    path: PathBuf,
    /// Set by every change, cleared by a flush: an idle server does not rewrite the file.
    dirty: AtomicBool,
    /// Bumped by every change: answers that show last-seen times or posture are cached under
    /// it. One counter for every organization, so a heartbeat anywhere invalidates every
    /// organization's cached device pages; sound, and simple, at the cost of hit rate under
    /// heavy heartbeat traffic.
    generation: AtomicU64,
    /// Held while writing the file: a flush at shutdown waits for a periodic one in progress.
    flushing: Mutex<()>,
    /// Each organization's devices in last-seen order.
    index: LastSeenIndex,
    /// `(org, device)` whose posture signals changed since the posture worker last looked.
    posture_changed: Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl Heartbeats {
    /// Loads `dir/heartbeats.bin`; a missing or unreadable file starts empty (with a warning).
    pub fn load(dir: &Path) -> Heartbeats {
        let path = dir.join(FILE_NAME);
        let seen = DashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(entries) => {
                    for (id, s) in entries {
                        seen.insert(id, s);
                    }
                }
                Err(why) => {
                    tracing::warn!(path = %path.display(), %why, "ignoring unreadable heartbeats file")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read heartbeats file")
            }
        }
        Heartbeats {
            seen,
            path,
            dirty: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            flushing: Mutex::new(()),
            index: LastSeenIndex::default(),
            posture_changed: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Records a heartbeat of `org_id`'s device at `at_micros` (tests pass old times to age a
    /// device).
    pub fn record(&self, org_id: &str, device_id: &str, at_micros: i64, report: Report) {
        let mut entry = self.seen.entry(device_id.to_owned()).or_default();
        let s = entry.value_mut();
        let before = s.signals();
        s.last_seen = at_micros;
        if report.os_version.is_some() {
            s.os_version = report.os_version;
        }
        if report.client_version.is_some() {
            s.client_version = report.client_version;
        }
        if report.disk_encrypted.is_some() {
            s.disk_encrypted = report.disk_encrypted;
        }
        if report.firewall.is_some() {
            s.firewall = report.firewall;
        }
        if report.screen_lock.is_some() {
            s.screen_lock = report.screen_lock;
        }
        let posture_changed = s.signals() != before;
        drop(entry);
        if posture_changed {
            self.posture_changed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((org_id.to_owned(), device_id.to_owned()));
        }
        // After the store: a device the order adds meanwhile reads the new time from it.
        self.index.moved(org_id, device_id, at_micros);
        self.changed();
    }

    /// Each organization's devices in last-seen order.
    pub fn last_seen_index(&self) -> &LastSeenIndex {
        &self.index
    }

    /// Changes with every heartbeat recorded or device forgotten.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        // Bumped after the map changed: a reader that sees the new generation sees the change.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    pub fn get(&self, device_id: &str) -> Option<Seen> {
        self.seen.get(device_id).map(|s| s.value().clone())
    }

    /// The last-seen time alone (cheaper than [`Heartbeats::get`] in list filters).
    pub fn last_seen(&self, device_id: &str) -> Option<i64> {
        self.seen.get(device_id).map(|s| s.last_seen)
    }

    /// The `(org, device)` pairs whose signals changed since the last call.
    pub fn take_posture_changes(&self) -> Vec<(String, String)> {
        let mut set = self
            .posture_changed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *set).into_iter().collect()
    }

    /// Puts devices back in the changed set (their report could not be recorded this time).
    pub fn requeue_posture<'a>(&self, org_id: &str, device_ids: impl Iterator<Item = &'a String>) {
        let mut set = self
            .posture_changed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for id in device_ids {
            set.insert((org_id.to_owned(), id.clone()));
        }
    }

    /// Every device with a heartbeat, and its signals (the posture worker's first look).
    pub fn all_signals(&self) -> Vec<(String, events::event::Signals)> {
        self.seen
            .iter()
            .map(|e| (e.key().clone(), e.value().signals()))
            .collect()
    }

    /// Drops a removed device's entry.
    pub fn forget(&self, device_id: &str) {
        if self.seen.remove(device_id).is_some() {
            self.changed();
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Writes the file if anything changed since the last flush. Blocking: call it from
    /// `spawn_blocking` in async code.
    pub fn flush(&self) -> std::io::Result<()> {
        let _writing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut entries: Vec<(String, Seen)> = self
            .seen
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let result = write_atomically(&self.path, &entries);
        if result.is_err() {
            // Try again next time.
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<(String, Seen)>, String> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => events::codec::decode(body).map_err(|e| e.to_string()),
        Some((1, body)) => events::codec::decode::<Vec<(String, SeenV1)>>(body)
            .map(|v| v.into_iter().map(|(id, s)| (id, s.into())).collect())
            .map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!("unknown format {other}")),
        None => Err("empty file".into()),
    }
}

fn write_atomically(path: &Path, entries: &[(String, Seen)]) -> std::io::Result<()> {
    let mut bytes = vec![FORMAT];
    bytes.extend_from_slice(&events::codec::encode(&entries));
    // Owner-only, like every file of the data directory: it tells who is online, from where.
    events::durable::replace(path, &[&bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_keeps_fields_it_does_not_mention() {
        let dir = tempfile::tempdir().unwrap();
        let hb = Heartbeats::load(dir.path());
        hb.record(
            "org_1",
            "dev_1",
            10,
            Report {
                os_version: Some("6.1".into()),
                disk_encrypted: Some(true),
                ..Report::default()
            },
        );
        hb.record(
            "org_1",
            "dev_1",
            5,
            Report {
                firewall: Some(false),
                ..Report::default()
            },
        );
        let s = hb.get("dev_1").unwrap();
        assert_eq!(s.last_seen, 5);
        assert_eq!(hb.generation(), 2, "each heartbeat changes the generation");
        assert_eq!(s.os_version.as_deref(), Some("6.1"));
        assert_eq!(s.disk_encrypted, Some(true));
        assert_eq!(s.firewall, Some(false));
        assert_eq!(s.client_version, None);
    }

    #[test]
    fn a_flushed_store_loads_back_and_a_corrupt_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let hb = Heartbeats::load(dir.path());
        hb.record("org_1", "dev_1", 42, Report::default());
        hb.record("org_1", "dev_2", 7, Report::default());
        hb.flush().unwrap();
        let again = Heartbeats::load(dir.path());
        assert_eq!(again.get("dev_1").unwrap().last_seen, 42);
        assert_eq!(again.last_seen("dev_2"), Some(7));
        std::fs::write(dir.path().join(FILE_NAME), b"\x01garbage").unwrap();
        assert!(Heartbeats::load(dir.path()).is_empty());
    }
}
