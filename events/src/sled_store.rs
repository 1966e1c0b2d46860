//! The log on sled 0.34.7: the only file that names sled.
//!
//! One tree, `log`, holds what the commit writes — one key per event, the head once per group,
//! and the idempotency row of a keyed request — so each group is one atomic `apply_batch`:
//!
//! | key                      | value                                |
//! |--------------------------|--------------------------------------|
//! | `L` pos(u64 BE)          | record (see [`crate::codec`])        |
//! | `Mhead`                  | last committed position              |
//! | `K` org `0x00` key       | fingerprint(32) first(u64) last(u64) |
//! | `Manchor`, `Mbases`      | the prefix anchor and index bases    |
//!
//! Durability: sled's `flush()` is `sync_file_range` on Linux, which survives a killed process
//! but not a power loss, so [`LogStore::sync`] follows it with an `fdatasync` of sled's data file
//! through a second handle. sled writes any message over a quarter segment (a big record, or a
//! leaf holding many medium ones) to its own file under `blobs/` and never fsyncs it or the
//! directory; `sync` fsyncs every blob file it has not seen before, and the directory, before the
//! data file, so a record acknowledged in a blob survives a power loss too.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::durable::sync_dir;
use crate::error::Error;
use crate::store::{Direction, Group, IdempotencyRow, LogStore, Recovered};

const HEAD_KEY: &[u8] = b"Mhead";
const ANCHOR_KEY: &[u8] = b"Manchor";
const BASES_KEY: &[u8] = b"Mbases";
/// Records deleted in one batch when the prefix is dropped.
const DROP_BATCH: usize = 10_000;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => Error::Io(io),
            other => Error::Storage(other.to_string()),
        }
    }
}

/// A log kept in a sled database at `<dir>`.
pub struct SledStore {
    db: sled::Db,
    log: sled::Tree,
    /// sled's data file, opened a second time to `fdatasync` it.
    data_file: File,
    blobs_dir: PathBuf,
    /// Blob files already fsynced; a blob file is written once and never changed.
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`; `cache_capacity` is sled's page cache in bytes.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<SledStore, Error> {
        let existed = dir.join("db").exists();
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .mode(sled::Mode::HighThroughput);
        // The data dir's own lock (taken before this) keeps other processes out, so sled's file
        // lock can only be held by this process: by sled's detached I/O threads of a store
        // closed a moment ago, which let go of it on their own within milliseconds.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if attempts < 300 && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let log = db.open_tree("log")?;
        // Development builds kept derived indexes in sled; they live in memory now.
        if db.tree_names().iter().any(|n| n.as_ref() == b"index") {
            db.drop_tree("index")?;
        }
        let data_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("db"))?;
        let blobs_dir = dir.join("blobs");
        if !existed {
            // sled created its files: make their directory entries durable, so the first group
            // (the owner token of `init`) does not vanish with them on a power loss.
            db.flush()?;
            for f in ["conf", "db"] {
                if let Ok(file) = File::open(dir.join(f)) {
                    file.sync_all()?;
                }
            }
            sync_dir(&blobs_dir)?;
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(SledStore {
            db,
            log,
            data_file,
            blobs_dir,
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// What the head row says, whether or not the records agree (for the offline check).
    pub fn head_row(&self) -> Result<Option<u64>, Error> {
        Ok(self.log.get(HEAD_KEY)?.and_then(|v| be_u64(&v)))
    }

    /// fsyncs blob files sled wrote since the last call, then the directory that names them.
    fn sync_new_blobs(&self) -> Result<(), Error> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| Error::Storage("blob set poisoned".into()))?;
        let mut present = HashSet::with_capacity(synced.len());
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // sled garbage-collected it meanwhile: nothing to make durable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            sync_dir(&self.blobs_dir)?;
        }
        *synced = present;
        Ok(())
    }
}

impl LogStore for SledStore {
    fn recover(&self) -> Result<Recovered, Error> {
        let head = match self.log.get(HEAD_KEY)? {
            Some(v) => be_u64(&v).ok_or_else(|| Error::Storage("bad head record".into()))?,
            None => 0,
        };
        let last = self.log.scan_prefix(b"L").next_back().transpose()?;
        match (head, last) {
            (0, None) => Ok(Recovered::default()),
            (0, Some((k, _))) => Err(Error::Storage(format!(
                "log holds records (up to {:?}) but no head",
                key_pos(&k)
            ))),
            (head, None) => Err(Error::Storage(format!(
                "head is {head} but the log is empty"
            ))),
            (head, Some((k, v))) => {
                let last = key_pos(&k).unwrap_or(0);
                if last != head {
                    return Err(Error::Corrupt {
                        position: last,
                        reason: format!("last record is {last} but the head says {head}"),
                    });
                }
                Ok(Recovered {
                    head,
                    head_record: Some(v.to_vec()),
                })
            }
        }
    }

    fn write(&self, group: &Group) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for (pos, record) in &group.records {
            batch.insert(&pos_key(*pos), record.as_slice());
        }
        for (org, key, row) in &group.idempotency {
            let mut v = Vec::with_capacity(48);
            v.extend_from_slice(&row.fingerprint);
            v.extend_from_slice(&row.first.to_be_bytes());
            v.extend_from_slice(&row.last.to_be_bytes());
            batch.insert(idem_key(org, key), v);
        }
        batch.insert(HEAD_KEY, &group.head.to_be_bytes());
        self.log.apply_batch(batch)?;
        Ok(())
    }

    fn sync(&self) -> Result<(), Error> {
        self.db.flush()?;
        // Blobs the flushed bytes point at, before the bytes themselves are made durable.
        self.sync_new_blobs()?;
        self.data_file.sync_data()?;
        // sled's other threads (and this log's indexer) may have written blobs meanwhile — a
        // page relocated by sled may hold acknowledged records — so nothing is acknowledged
        // while any blob file sled has created is not yet durable.
        self.sync_new_blobs()?;
        Ok(())
    }

    fn record(&self, position: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.log.get(pos_key(position))?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        from: u64,
        to: u64,
        direction: Direction,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        if from > to {
            return Ok(());
        }
        let range = self.log.range(pos_key(from)..=pos_key(to));
        let mut step = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, Error> {
            let (k, v) = item?;
            let pos = key_pos(&k).ok_or_else(|| Error::Storage("bad log key".into()))?;
            Ok(visit(pos, &v))
        };
        match direction {
            Direction::Forward => {
                for item in range {
                    if !step(item)? {
                        break;
                    }
                }
            }
            Direction::Backward => {
                for item in range.rev() {
                    if !step(item)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn idempotency(&self, org: &str, key: &str) -> Result<Option<IdempotencyRow>, Error> {
        match self.log.get(idem_key(org, key))? {
            None => Ok(None),
            Some(v) => decode_idem(&v)
                .map(Some)
                .ok_or_else(|| Error::Storage("bad idempotency row".into())),
        }
    }

    fn close(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    fn anchor(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.log.get(ANCHOR_KEY)?.map(|v| v.to_vec()))
    }

    fn anchor_bases(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.log.get(BASES_KEY)?.map(|v| v.to_vec()))
    }

    fn drop_prefix(&self, position: u64, anchor: &[u8], bases: &[u8]) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        batch.insert(ANCHOR_KEY, anchor);
        batch.insert(BASES_KEY, bases);
        self.log.apply_batch(batch)?;
        // The anchor is in place: what follows may stop anywhere and be done again.
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in self
                .log
                .range(pos_key(1)..=pos_key(position))
                .take(DROP_BATCH)
            {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.log.apply_batch(batch)?;
        }
    }
}

pub(crate) fn pos_key(pos: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'L';
    k[1..].copy_from_slice(&pos.to_be_bytes());
    k
}

fn key_pos(key: &[u8]) -> Option<u64> {
    if key.len() == 9 && key[0] == b'L' {
        be_u64(&key[1..])
    } else {
        None
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn idem_key(org: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + key.len() + 2);
    k.push(b'K');
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn decode_idem(v: &[u8]) -> Option<IdempotencyRow> {
    if v.len() != 48 {
        return None;
    }
    Some(IdempotencyRow {
        fingerprint: v[..32].try_into().ok()?,
        first: be_u64(&v[32..40])?,
        last: be_u64(&v[40..48])?,
    })
}
