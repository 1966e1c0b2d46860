//! The append-only log on sled: the only file that names sled.
//!
//! One tree holds everything, so each group commit is one atomic `apply_batch`:
//!
//! | key                               | value                                  |
//! |-----------------------------------|----------------------------------------|
//! | `L` pos(u64 BE)                   | record (see [`crate::codec`])          |
//! | `S` stream `0x00` revision(u64 BE)| position                               |
//! | `H` stream                        | last revision of the stream            |
//! | `I` event id (16 bytes)           | position                               |
//! | `K` org `0x00` idempotency key    | fingerprint(32) first(u64) last(u64)   |
//! | `Mhead`                           | last committed position                |
//!
//! One dedicated thread owns appends. Callers queue requests on a bounded channel (full: `Busy`);
//! the thread drains up to `max_group` of them, validates each against the stream heads (earlier
//! requests of the same group included), stages every event of every accepted request in one
//! batch, applies it, calls sled's `flush()` and then `fdatasync`s sled's data file through a
//! second handle — sled's flush is `sync_file_range` on Linux, which survives a killed process
//! but not a power loss. Only then are the callers answered, the head published and the events
//! broadcast. An I/O error is fail-stop: nothing is acknowledged after one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, oneshot, watch};

use crate::chain::ChainKey;
use crate::codec;
use crate::envelope::{Actor, Envelope, Recorded};
use crate::error::{AppendError, Error};
use crate::event::Event;

const HEAD_KEY: &[u8] = b"Mhead";
const MAX_STREAM_LEN: usize = 512;

/// What the caller expects of a stream before its events are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist.
    Exists,
    /// The stream's last event must have this revision.
    Exact(u64),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Any => f.write_str("any"),
            Expected::NoStream => f.write_str("no stream"),
            Expected::Exists => f.write_str("an existing stream"),
            Expected::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// One event to append, and the stream it goes to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream: String,
    pub event: Event,
}

impl NewEvent {
    pub fn new(stream: impl Into<String>, event: impl Into<Event>) -> Self {
        NewEvent {
            stream: stream.into(),
            event: event.into(),
        }
    }
}

/// An idempotency key and the fingerprint of the request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// A request to append events atomically: all of them, or none.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    /// Checked before anything is written; streams not named here are not checked.
    pub expectations: Vec<(String, Expected)>,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<Idempotency>,
}

/// Where an acknowledged request's events landed: positions `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: u64,
    pub last: u64,
    /// True when this answers a repeat of an earlier request (same idempotency key or event
    /// ids): nothing new was written.
    pub replayed: bool,
}

/// Tuning of the log. The defaults suit a server; tests shrink them to provoke edge cases.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Requests that may wait for the writer; beyond this, appends answer `Busy`.
    pub queue_capacity: usize,
    /// Most requests committed in one group (one flush + fdatasync).
    pub max_group: usize,
    /// Events kept for live subscribers; a subscriber further behind reads the log instead.
    pub broadcast_capacity: usize,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// The chain key; by default `chain.key` in the data dir, created on first open.
    pub chain_key: Option<ChainKey>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            queue_capacity: 8192,
            max_group: 1024,
            broadcast_capacity: 4096,
            cache_capacity: 512 * 1024 * 1024,
            chain_key: None,
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records whose MAC verified.
    pub verified: u64,
    /// The head when the walk started.
    pub head: u64,
    /// The first position whose record is missing, corrupt or fails its MAC.
    pub first_bad: Option<u64>,
    pub reason: Option<String>,
}

/// Counters of the writer, for health, benchmarks and the durability tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Groups committed (each one `flush` + one `fdatasync`).
    pub groups: u64,
    pub fdatasyncs: u64,
    pub events: u64,
}

struct Job {
    req: AppendRequest,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// State shared by the handle and the writer thread.
struct Shared {
    /// Last committed (durable, acknowledged) position; readers never look past it.
    head: AtomicU64,
    head_tx: watch::Sender<u64>,
    /// Hands out live receivers; emptied by `close`, so that once the writer (which holds the
    /// other sender) has stopped, live receivers see `Closed` and subscriptions end.
    live: Mutex<Option<broadcast::Sender<Arc<Recorded>>>>,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    groups: AtomicU64,
    fdatasyncs: AtomicU64,
    events: AtomicU64,
}

struct Handle {
    tx: Mutex<Option<SyncSender<Job>>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The open database; emptied by `close`, which releases sled's file lock and ours even
    /// while clones of the `Log` handle are still around.
    store: RwLock<Option<Store>>,
    chain_key: ChainKey,
    dir: PathBuf,
}

struct Store {
    db: sled::Db,
    tree: sled::Tree,
    // The OS lock that keeps other processes out of the data dir.
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close_inner();
    }
}

impl Handle {
    fn close_inner(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            let _ = w.join();
        }
        if let Ok(mut live) = self.shared.live.lock() {
            live.take();
        }
        let store = self.store.write().ok().and_then(|mut s| s.take());
        if let Some(store) = store {
            let _ = store.db.flush();
        }
    }
}

/// A handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("head", &self.head())
            .finish()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, taking an exclusive lock on the directory.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, Error> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let chain_key = match options.chain_key.clone() {
            Some(k) => k,
            None => ChainKey::load_or_create(&dir.join("chain.key"))?,
        };
        let sled_dir = dir.join("log");
        let db = sled::Config::new()
            .path(&sled_dir)
            .cache_capacity(options.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = db.open_tree("log")?;
        let data_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(sled_dir.join("db"))?;

        let head = match tree.get(HEAD_KEY)? {
            Some(v) => be_u64(&v).ok_or_else(|| Error::Storage("bad head record".into()))?,
            None => 0,
        };
        let (tip_mac, last_time) = if head == 0 {
            if let Some((k, _)) = tree.scan_prefix(b"L").next().transpose()? {
                return Err(Error::Storage(format!(
                    "log holds records ({:?}) but no head",
                    key_pos(&k)
                )));
            }
            ([0u8; 32], i64::MIN)
        } else {
            let (k, v) = tree
                .scan_prefix(b"L")
                .next_back()
                .transpose()?
                .ok_or_else(|| Error::Storage(format!("head is {head} but the log is empty")))?;
            let last = key_pos(&k).unwrap_or(0);
            if last != head {
                return Err(Error::Corrupt {
                    position: last,
                    reason: format!("last record is {last} but the head says {head}"),
                });
            }
            let env = codec::decode_record(head, &v)?;
            (env.mac, env.recorded_at)
        };

        let (head_tx, _) = watch::channel(head);
        let (live, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let shared = Arc::new(Shared {
            head: AtomicU64::new(head),
            head_tx,
            live: Mutex::new(Some(live.clone())),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            groups: AtomicU64::new(0),
            fdatasyncs: AtomicU64::new(0),
            events: AtomicU64::new(0),
        });
        let reader_tree = tree.clone();
        let (tx, rx) = sync_channel(options.queue_capacity.max(1));
        let writer = Writer {
            shared: shared.clone(),
            live,
            db: db.clone(),
            tree,
            rx,
            data_file,
            heads: HashMap::new(),
            head,
            tip_mac,
            last_time,
            key: chain_key.clone(),
            ulids: ulid::Generator::new(),
            max_group: options.max_group.max(1),
        };
        let thread = std::thread::Builder::new()
            .name("qz-log-writer".into())
            .spawn(move || writer.run())?;

        Ok(Log {
            inner: Arc::new(Handle {
                tx: Mutex::new(Some(tx)),
                shared,
                writer: Mutex::new(Some(thread)),
                store: RwLock::new(Some(Store {
                    db,
                    tree: reader_tree,
                    _lock: lock,
                })),
                chain_key,
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// Appends a request's events atomically; resolves once they are durable.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        let rx = self.enqueue(req)?;
        rx.await.map_err(|_| self.closed_error())?
    }

    /// [`Log::append`] for threads outside an async runtime (offline commands, benchmarks).
    pub fn append_blocking(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        let rx = self.enqueue(req)?;
        rx.blocking_recv().map_err(|_| self.closed_error())?
    }

    fn enqueue(
        &self,
        req: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, AppendError>>, AppendError> {
        if self.inner.shared.failed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let (reply, rx) = oneshot::channel();
        let tx = self
            .inner
            .tx
            .lock()
            .map_err(|_| AppendError::Closed)?
            .clone()
            .ok_or(AppendError::Closed)?;
        match tx.try_send(Job { req, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(AppendError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(self.closed_error()),
        }
    }

    fn closed_error(&self) -> AppendError {
        match self.failure() {
            Some(f) => AppendError::Failed(f),
            None => AppendError::Closed,
        }
    }

    /// Stops the writer after it has answered every queued request, and flushes.
    pub fn close(&self) {
        self.inner.close_inner();
    }

    /// The last committed position (0 for an empty log).
    pub fn head(&self) -> u64 {
        self.inner.shared.head.load(Ordering::Acquire)
    }

    /// Changes whenever the committed head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.shared.head_tx.subscribe()
    }

    /// Live events as they are committed; a receiver that falls behind gets `Lagged`.
    pub fn subscribe_live(&self) -> broadcast::Receiver<Arc<Recorded>> {
        let live = self.inner.shared.live.lock().ok();
        match live.as_ref().and_then(|l| l.as_ref()) {
            Some(tx) => tx.subscribe(),
            // Closed: a receiver whose sender is already gone answers `Closed`.
            None => broadcast::channel(1).1,
        }
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .shared
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
    }

    pub fn is_failed(&self) -> bool {
        self.inner.shared.failed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> LogStats {
        let s = &self.inner.shared;
        LogStats {
            groups: s.groups.load(Ordering::Relaxed),
            fdatasyncs: s.fdatasyncs.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn chain_key(&self) -> &ChainKey {
        &self.inner.chain_key
    }

    /// The log's tree, or `Closed` after [`Log::close`].
    fn tree(&self) -> Result<sled::Tree, Error> {
        self.inner
            .store
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.tree.clone()))
            .ok_or(Error::Closed)
    }

    /// The committed record at `position`, decoded.
    pub fn get(&self, position: u64) -> Result<Option<Arc<Recorded>>, Error> {
        if position == 0 || position > self.head() {
            return Ok(None);
        }
        match self.tree()?.get(pos_key(position))? {
            Some(v) => Ok(Some(Arc::new(decode_recorded(position, &v)?))),
            None => Ok(None),
        }
    }

    /// Up to `limit` committed events with positions `>= from`, in log order.
    pub fn read_forward(&self, from: u64, limit: usize) -> Result<Vec<Arc<Recorded>>, Error> {
        let head = self.head();
        let from = from.max(1);
        if from > head || limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min((head - from + 1) as usize));
        for item in self.tree()?.range(pos_key(from)..=pos_key(head)) {
            let (k, v) = item?;
            let pos = key_pos(&k).ok_or_else(|| Error::Storage("bad log key".into()))?;
            out.push(Arc::new(decode_recorded(pos, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` committed events with positions `<= from`, newest first.
    pub fn read_backward(&self, from: u64, limit: usize) -> Result<Vec<Arc<Recorded>>, Error> {
        let upto = from.min(self.head());
        if upto == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min(upto as usize));
        for item in self.tree()?.range(pos_key(1)..=pos_key(upto)).rev() {
            let (k, v) = item?;
            let pos = key_pos(&k).ok_or_else(|| Error::Storage("bad log key".into()))?;
            out.push(Arc::new(decode_recorded(pos, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The raw records (format byte, envelope, MAC) with positions `>= from`: what the crash
    /// tests compare byte for byte.
    pub fn read_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let head = self.head();
        let from = from.max(1);
        if from > head {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.tree()?.range(pos_key(from)..=pos_key(head)) {
            let (k, v) = item?;
            let pos = key_pos(&k).ok_or_else(|| Error::Storage("bad log key".into()))?;
            out.push((pos, v.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Events of one stream from revision `from_revision`, in order.
    pub fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        let head = self.head();
        let mut prefix = Vec::with_capacity(stream.len() + 2);
        prefix.push(b'S');
        prefix.extend_from_slice(stream.as_bytes());
        prefix.push(0);
        let mut start = prefix.clone();
        start.extend_from_slice(&from_revision.to_be_bytes());
        let mut out = Vec::new();
        for item in self.tree()?.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let pos = be_u64(&v).ok_or_else(|| Error::Storage("bad stream index".into()))?;
            if pos > head {
                break;
            }
            match self.get(pos)? {
                Some(r) => out.push(r),
                None => return Err(Error::Storage(format!("stream index names missing {pos}"))),
            }
        }
        Ok(out)
    }

    /// The last committed revision of a stream, if it has any events.
    pub fn stream_revision(&self, stream: &str) -> Result<Option<u64>, Error> {
        let mut key = Vec::with_capacity(stream.len() + 1);
        key.push(b'H');
        key.extend_from_slice(stream.as_bytes());
        Ok(self.tree()?.get(key)?.and_then(|v| be_u64(&v)))
    }

    /// The position an event id was appended at.
    pub fn position_of(&self, event_id: &[u8; 16]) -> Result<Option<u64>, Error> {
        let mut key = Vec::with_capacity(17);
        key.push(b'I');
        key.extend_from_slice(event_id);
        let pos = self.tree()?.get(key)?.and_then(|v| be_u64(&v));
        Ok(pos.filter(|p| *p <= self.head()))
    }

    /// Checks the index tables against the log, 1:1; returns what disagrees (empty when sound).
    pub fn check_indexes(&self) -> Result<Vec<String>, Error> {
        let mut problems = Vec::new();
        let tree = &self.tree()?;
        let head = self.head();
        let mut expected = 1u64;
        let mut stream_revs: HashMap<String, u64> = HashMap::new();
        for item in tree.scan_prefix(b"L") {
            let (k, v) = item?;
            let pos = key_pos(&k).unwrap_or(0);
            if pos != expected {
                problems.push(format!("gap: expected position {expected}, found {pos}"));
                expected = pos;
            }
            expected += 1;
            let env = codec::decode_record(pos, &v)?;
            let next = stream_revs.entry(env.stream.clone()).or_insert(0);
            if env.revision != *next {
                problems.push(format!(
                    "stream {} revision {} at {pos}, expected {}",
                    env.stream, env.revision, next
                ));
            }
            *next = env.revision + 1;
            let mut sk = vec![b'S'];
            sk.extend_from_slice(env.stream.as_bytes());
            sk.push(0);
            sk.extend_from_slice(&env.revision.to_be_bytes());
            if tree.get(&sk)?.and_then(|v| be_u64(&v)) != Some(pos) {
                problems.push(format!("stream index does not point at {pos}"));
            }
            if self.position_of(&env.event_id)? != Some(pos) {
                problems.push(format!("event id index does not point at {pos}"));
            }
        }
        if expected - 1 != head {
            problems.push(format!("head {head} but the log ends at {}", expected - 1));
        }
        let mut stream_index_rows = 0usize;
        for item in tree.scan_prefix(b"S") {
            item?;
            stream_index_rows += 1;
        }
        if stream_index_rows as u64 != head {
            problems.push(format!(
                "{stream_index_rows} stream index rows for {head} events"
            ));
        }
        for (stream, next) in &stream_revs {
            if self.stream_revision(stream)? != Some(next - 1) {
                problems.push(format!("stream head of {stream} disagrees with the log"));
            }
        }
        Ok(problems)
    }

    /// Walks the chain from the first event to the head and reports the first bad position.
    pub fn verify_chain(&self) -> Result<ChainReport, Error> {
        let head = self.head();
        let key = &self.inner.chain_key;
        let mut prev = [0u8; 32];
        let mut verified = 0u64;
        let mut expected = 1u64;
        let bad = |pos: u64, reason: String, verified: u64| ChainReport {
            verified,
            head,
            first_bad: Some(pos),
            reason: Some(reason),
        };
        for item in self.tree()?.range(pos_key(1)..=pos_key(head.max(1))) {
            let (k, v) = item?;
            let pos = key_pos(&k).unwrap_or(0);
            if pos > head {
                break;
            }
            if pos != expected {
                return Ok(bad(expected, "record missing".into(), verified));
            }
            let env = match codec::decode_record(pos, &v) {
                Ok(env) => env,
                Err(e) => return Ok(bad(pos, e.to_string(), verified)),
            };
            let body = codec::mac_body(&v).unwrap_or_default();
            if env.position != pos || key.link(&prev, body) != env.mac {
                return Ok(bad(pos, "MAC does not verify".into(), verified));
            }
            prev = env.mac;
            verified += 1;
            expected += 1;
        }
        if verified != head {
            return Ok(bad(expected, "record missing".into(), verified));
        }
        Ok(ChainReport {
            verified,
            head,
            first_bad: None,
            reason: None,
        })
    }
}

/// The writer thread's state: the heads and the chain tip live only here.
struct Writer {
    shared: Arc<Shared>,
    /// Where committed events are broadcast to live subscribers.
    live: broadcast::Sender<Arc<Recorded>>,
    db: sled::Db,
    tree: sled::Tree,
    rx: Receiver<Job>,
    data_file: File,
    /// Last revision per stream, cached from `H` rows.
    heads: HashMap<String, u64>,
    head: u64,
    tip_mac: [u8; 32],
    last_time: i64,
    key: ChainKey,
    ulids: ulid::Generator,
    max_group: usize,
}

/// What one group has staged but not yet committed.
#[derive(Default)]
struct Staged {
    heads: HashMap<String, u64>,
    idempotency: HashMap<Vec<u8>, ([u8; 32], u64, u64)>,
    event_ids: HashSet<[u8; 16]>,
    recorded: Vec<Arc<Recorded>>,
}

impl Writer {
    fn run(mut self) {
        let mut jobs = Vec::with_capacity(self.max_group);
        while let Ok(first) = self.rx.recv() {
            jobs.push(first);
            while jobs.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut jobs);
        }
    }

    fn commit_group(&mut self, jobs: &mut Vec<Job>) {
        if self.shared.failed.load(Ordering::Acquire) {
            let why = self.shared.failure.lock().ok().and_then(|f| f.clone());
            for job in jobs.drain(..) {
                let _ = job
                    .reply
                    .send(Err(AppendError::Failed(why.clone().unwrap_or_default())));
            }
            return;
        }
        let mut batch = sled::Batch::default();
        let mut staged = Staged::default();
        let mut pos = self.head;
        let mut tip = self.tip_mac;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs.iter() {
            let outcome = match self.validate(&job.req, &staged) {
                Ok(Some(replay)) => Ok(replay),
                Ok(None) => Ok(self.stage(&job.req, &mut batch, &mut staged, &mut pos, &mut tip)),
                Err(e) => Err(e),
            };
            outcomes.push(outcome);
        }

        if !staged.recorded.is_empty()
            && let Err(e) = self.write(batch, pos)
        {
            let why = format!("commit failed: {e}");
            tracing::error!(error = %e, "event log write failed; refusing further appends");
            if let Ok(mut f) = self.shared.failure.lock() {
                *f = Some(why.clone());
            }
            self.shared.failed.store(true, Ordering::Release);
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(AppendError::Failed(why.clone())));
            }
            return;
        }

        if !staged.recorded.is_empty() {
            self.head = pos;
            self.tip_mac = tip;
            self.heads.extend(staged.heads.drain());
            self.shared
                .events
                .fetch_add(staged.recorded.len() as u64, Ordering::Relaxed);
            self.shared.head.store(pos, Ordering::Release);
            self.shared.head_tx.send_replace(pos);
            for r in staged.recorded.drain(..) {
                // No receivers is fine: nobody is listening live.
                let _ = self.live.send(r);
            }
        }
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }

    /// Stages flushed to disk: one atomic batch, one `flush()`, one `fdatasync`.
    fn write(&mut self, mut batch: sled::Batch, head: u64) -> Result<(), Error> {
        batch.insert(HEAD_KEY, &head.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.data_file.sync_data()?;
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        self.shared.fdatasyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn current_revision(
        &mut self,
        staged: &Staged,
        stream: &str,
    ) -> Result<Option<u64>, AppendError> {
        if let Some(r) = staged.heads.get(stream) {
            return Ok(Some(*r));
        }
        if let Some(r) = self.heads.get(stream) {
            return Ok(Some(*r));
        }
        let mut key = Vec::with_capacity(stream.len() + 1);
        key.push(b'H');
        key.extend_from_slice(stream.as_bytes());
        let found = self
            .tree
            .get(key)
            .map_err(|e| AppendError::Failed(e.to_string()))?
            .and_then(|v| be_u64(&v));
        if let Some(r) = found {
            self.heads.insert(stream.to_owned(), r);
        }
        Ok(found)
    }

    /// Checks a request against the log and the group so far. `Ok(Some(_))` is a replay of an
    /// earlier request; `Ok(None)` means it may be staged.
    fn validate(
        &mut self,
        req: &AppendRequest,
        staged: &Staged,
    ) -> Result<Option<Appended>, AppendError> {
        if req.events.is_empty() {
            return Err(AppendError::Invalid("no events".into()));
        }
        for e in &req.events {
            if e.stream.is_empty() || e.stream.len() > MAX_STREAM_LEN || e.stream.contains('\0') {
                return Err(AppendError::Invalid(format!(
                    "bad stream id {:?}",
                    e.stream
                )));
            }
        }
        if let Some(idem) = &req.idempotency {
            let key = idem_key(&req.org_id, &idem.key);
            let prior = match staged.idempotency.get(&key) {
                Some(v) => Some(*v),
                None => self
                    .tree
                    .get(&key)
                    .map_err(|e| AppendError::Failed(e.to_string()))?
                    .and_then(|v| decode_idem(&v)),
            };
            if let Some((fingerprint, first, last)) = prior {
                if fingerprint != idem.fingerprint {
                    return Err(AppendError::IdempotencyMismatch);
                }
                return Ok(Some(Appended {
                    first,
                    last,
                    replayed: true,
                }));
            }
        }
        for (stream, expected) in &req.expectations {
            let actual = self.current_revision(staged, stream)?;
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => actual.is_none(),
                Expected::Exists => actual.is_some(),
                Expected::Exact(r) => actual == Some(*r),
            };
            if !ok {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(None)
    }

    fn stage(
        &mut self,
        req: &AppendRequest,
        batch: &mut sled::Batch,
        staged: &mut Staged,
        pos: &mut u64,
        tip: &mut [u8; 32],
    ) -> Appended {
        let first = *pos + 1;
        let now = crate::now_micros().max(self.last_time);
        self.last_time = now;
        for new in &req.events {
            // Streams were validated in `validate`; revisions follow the group's staged heads.
            let revision = match staged
                .heads
                .get(&new.stream)
                .or_else(|| self.heads.get(&new.stream))
            {
                Some(r) => r + 1,
                None => match self.current_revision(staged, &new.stream) {
                    Ok(Some(r)) => r + 1,
                    _ => 0,
                },
            };
            *pos += 1;
            let event_id = self.next_event_id(staged);
            let mut env = Envelope {
                position: *pos,
                stream: new.stream.clone(),
                revision,
                event_id,
                event_type: new.event.event_type().to_owned(),
                schema_version: new.event.schema_version(),
                recorded_at: now,
                org_id: req.org_id.clone(),
                actor: req.actor.clone(),
                request_id: req.request_id.clone(),
                payload: new.event.encode_payload(),
                mac: [0u8; 32],
            };
            let mut record = codec::encode_record(&env);
            let body = codec::mac_body(&record).expect("a record holds a MAC");
            let mac = self.key.link(tip, body);
            let n = record.len();
            record[n - 32..].copy_from_slice(&mac);
            env.mac = mac;
            *tip = mac;

            batch.insert(&pos_key(*pos), record);
            let mut sk = Vec::with_capacity(new.stream.len() + 10);
            sk.push(b'S');
            sk.extend_from_slice(new.stream.as_bytes());
            sk.push(0);
            sk.extend_from_slice(&revision.to_be_bytes());
            batch.insert(sk, &pos.to_be_bytes());
            let mut hk = Vec::with_capacity(new.stream.len() + 1);
            hk.push(b'H');
            hk.extend_from_slice(new.stream.as_bytes());
            batch.insert(hk, &revision.to_be_bytes());
            let mut ik = Vec::with_capacity(17);
            ik.push(b'I');
            ik.extend_from_slice(&event_id);
            batch.insert(ik, &pos.to_be_bytes());

            staged.heads.insert(new.stream.clone(), revision);
            staged.event_ids.insert(event_id);
            staged.recorded.push(Arc::new(Recorded {
                envelope: env,
                event: new.event.clone(),
            }));
        }
        let last = *pos;
        if let Some(idem) = &req.idempotency {
            let key = idem_key(&req.org_id, &idem.key);
            let mut v = Vec::with_capacity(48);
            v.extend_from_slice(&idem.fingerprint);
            v.extend_from_slice(&first.to_be_bytes());
            v.extend_from_slice(&last.to_be_bytes());
            batch.insert(key.clone(), v);
            staged
                .idempotency
                .insert(key, (idem.fingerprint, first, last));
        }
        Appended {
            first,
            last,
            replayed: false,
        }
    }

    fn next_event_id(&mut self, staged: &Staged) -> [u8; 16] {
        loop {
            let id = match self.ulids.generate() {
                Ok(u) => u.to_bytes(),
                // The monotonic generator overflows only after 2^80 ids in one millisecond.
                Err(_) => ulid::Ulid::new().to_bytes(),
            };
            if !staged.event_ids.contains(&id) {
                return id;
            }
        }
    }
}

fn decode_recorded(position: u64, bytes: &[u8]) -> Result<Recorded, Error> {
    let envelope = codec::decode_record(position, bytes)?;
    let event = Event::decode(
        &envelope.event_type,
        envelope.schema_version,
        &envelope.payload,
    )
    .map_err(|e| match e {
        Error::Corrupt { reason, .. } => Error::Corrupt { position, reason },
        other => other,
    })?;
    Ok(Recorded { envelope, event })
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io(e)),
    }
}

fn pos_key(pos: u64) -> [u8; 9] {
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

fn decode_idem(v: &[u8]) -> Option<([u8; 32], u64, u64)> {
    if v.len() != 48 {
        return None;
    }
    let fp: [u8; 32] = v[..32].try_into().ok()?;
    Some((fp, be_u64(&v[32..40])?, be_u64(&v[40..48])?))
}
