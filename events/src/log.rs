//! The log handle: open a data dir, append, read, subscribe, close.
//!
//! Appends go through the group committer ([`crate::committer`]); bytes live in a
//! [`LogStore`] (sled today, [`crate::sled_store`]); the per-stream and per-org indexes are
//! derived off the commit path ([`crate::indexer`]). Readers never look past the durable head.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, oneshot, watch};

use crate::chain::ChainKey;
use crate::checkpoint::{self, Checkpoint, CheckpointKey};
use crate::codec;
use crate::committer::{Committer, Job, Syncer};
use crate::error::{AppendError, Error};
use crate::event::Event;
use crate::recorded::Recorded;
use crate::request::{AppendRequest, Appended};
use crate::sled_store::SledStore;
use crate::store::LogStore;

/// sled's page cache by default: 32 MiB.
///
/// The cache holds what was written as well as what was read, so it fills up with the tail of
/// the log while a server writes: at sled's 512 MiB it was half of the resident size after a
/// million events (BENCHMARKS.md, "Memory"). Little needs it: requests find a stream's events
/// through the in-memory index and read only those, replay reads the log once in order, and
/// what falls out of the cache is still in the kernel's page cache.
pub const DEFAULT_CACHE_CAPACITY: u64 = 32 * 1024 * 1024;

/// Tuning of the log. The defaults suit a server; tests shrink them to provoke edge cases.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Requests that may wait for the writer; beyond this, appends answer `Busy`.
    pub queue_capacity: usize,
    /// Most requests committed in one group (one flush + fdatasync).
    pub max_group: usize,
    /// Groups kept for live subscribers; a subscriber further behind reads the log instead.
    pub broadcast_capacity: usize,
    /// sled's page cache, in bytes ([`DEFAULT_CACHE_CAPACITY`] by default).
    pub cache_capacity: u64,
    /// The chain key itself (tests); otherwise it is read from `chain_key_file`.
    pub chain_key: Option<ChainKey>,
    /// Where the chain key lives; `chain.key` in the data dir by default. It is created only
    /// for an empty log.
    pub chain_key_file: Option<PathBuf>,
    /// The key that signs checkpoints; `checkpoint.key` in the data dir by default (which
    /// proves integrity but not authorship: keep it elsewhere in production).
    pub checkpoint_key_file: Option<PathBuf>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            queue_capacity: 8192,
            max_group: 1024,
            broadcast_capacity: 1024,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            chain_key: None,
            chain_key_file: None,
            checkpoint_key_file: None,
        }
    }
}

/// The events of one committed group, in position order: one broadcast message and one
/// allocation per group, however many subscribers.
pub type Group = Arc<[Arc<Recorded>]>;

/// Counters of the writer, for health, benchmarks and the durability tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Groups committed (each one `flush` + one `fdatasync`).
    pub groups: u64,
    pub fdatasyncs: u64,
    pub events: u64,
}

/// State shared by the handle and the log's threads.
pub(crate) struct Shared {
    /// Last durable, acknowledged position; readers never look past it.
    pub head: AtomicU64,
    pub head_tx: watch::Sender<u64>,
    /// Hands out live receivers; emptied by `close`, so that once the syncer (which holds the
    /// other sender) has stopped, live receivers see `Closed` and subscriptions end.
    pub live: Mutex<Option<broadcast::Sender<Group>>>,
    /// Positions by stream revision and by org sequence. Written only by the committer; holds
    /// staged positions past `head` too, which readers filter out.
    pub index: RwLock<crate::index::Index>,
    /// Groups handed to the syncer and not yet answered.
    pub in_flight: std::sync::atomic::AtomicUsize,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    pub groups: AtomicU64,
    pub fdatasyncs: AtomicU64,
    pub events: AtomicU64,
    /// The first position still in the log: 1, or one past the prefix anchor.
    first: AtomicU64,
    /// One retention purge or prefix drop at a time ([`crate::prefix`]).
    pub dropping: Mutex<()>,
}

impl Shared {
    pub fn first(&self) -> u64 {
        self.first.load(Ordering::Acquire)
    }

    pub fn set_first(&self, first: u64) {
        self.first.fetch_max(first, Ordering::AcqRel);
    }

    /// Fails the log for good; the first reason is kept.
    pub fn fail(&self, why: String) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            tracing::error!(reason = %why, "the event log has failed; refusing further appends");
            *f = Some(why);
        }
        self.failed.store(true, Ordering::Release);
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

struct Handle {
    tx: Mutex<Option<SyncSender<Job>>>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Emptied by `close`, which releases the store and the directory lock even while clones
    /// of the `Log` handle are still around.
    store: RwLock<Option<Opened>>,
    chain_key: ChainKey,
    checkpoint_key: CheckpointKey,
    dir: PathBuf,
}

struct Opened {
    store: Arc<dyn LogStore>,
    // The OS lock that keeps other processes out of the data dir.
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close_inner();
    }
}

impl Handle {
    /// Signs and publishes `(head, mac)`, unless the log is empty, failed or closed.
    fn publish_checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        let head = self.shared.head.load(Ordering::Acquire);
        let store = self
            .store
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|o| o.store.clone()));
        let (Some(store), false, true) = (store, self.shared.is_failed(), head > 0) else {
            return Ok(None);
        };
        let mac = crate::store::mac_at(store.as_ref(), head)?;
        let cp = self.checkpoint_key.sign(head, mac, crate::now_micros());
        checkpoint::publish(&self.dir, &cp)?;
        Ok(Some(cp))
    }

    fn close_inner(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        if let Ok(mut live) = self.shared.live.lock() {
            live.take();
        }
        if let Err(e) = self.publish_checkpoint() {
            tracing::warn!(error = %e, "could not publish a checkpoint at shutdown");
        }
        // The writer threads are gone: the index is exactly the durable log.
        if !self.shared.is_failed() {
            let store = self
                .store
                .read()
                .ok()
                .and_then(|s| s.as_ref().map(|o| o.store.clone()));
            if let Some(store) = store {
                let head = self.shared.head.load(Ordering::Acquire);
                if let Err(e) =
                    crate::indexer::snapshot(&self.shared, store.as_ref(), &self.dir, head)
                {
                    tracing::warn!(error = %e, "could not write the index snapshot at shutdown");
                }
            }
        }
        let opened = self.store.write().ok().and_then(|mut s| s.take());
        if let Some(opened) = opened {
            let _ = opened.store.close();
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
        // sled's files get the process's umask: a private `log/` (and `dir`) keeps them ours.
        crate::durable::create_private_dir_all(&dir.join("log"))?;
        let lock = crate::open::lock_dir(dir)?;
        let store = Arc::new(SledStore::open(&dir.join("log"), options.cache_capacity)?);
        Self::start(dir, lock, store, options)
    }

    /// Opens the log over a store of the caller's: another backend, or a store wrapped to
    /// inject faults in tests. `dir` still holds the lock, the keys and the checkpoint.
    pub fn open_with_store(
        dir: &Path,
        store: Arc<dyn LogStore>,
        options: LogOptions,
    ) -> Result<Log, Error> {
        crate::durable::create_private_dir_all(dir)?;
        let lock = crate::open::lock_dir(dir)?;
        Self::start(dir, lock, store, options)
    }

    fn start(
        dir: &Path,
        lock: File,
        store: Arc<dyn LogStore>,
        options: LogOptions,
    ) -> Result<Log, Error> {
        let recovered = store.recover()?;
        let head = recovered.head;
        let (tip_mac, last_time) = match &recovered.head_record {
            None => ([0u8; 32], i64::MIN),
            Some(bytes) => {
                if codec::format_of(bytes) == Some(codec::FORMAT_V1) {
                    return Err(Error::Storage(format!(
                        "{} was written by a development build (record format 1, without \
                         per-organization sequence numbers) and cannot be opened by this \
                         version; start from a new data directory",
                        dir.display()
                    )));
                }
                let env = codec::decode_record(head, bytes)?;
                (env.mac, env.recorded_at)
            }
        };
        let chain_key = crate::open::resolve_chain_key(dir, &options, store.as_ref(), head)?;
        let checkpoint_key = CheckpointKey::load_or_create(
            &options
                .checkpoint_key_file
                .clone()
                .unwrap_or_else(|| dir.join("checkpoint.key")),
        )?;

        // A drop a crash interrupted is finished before anything reads the log.
        let anchor = crate::prefix::resume(store.as_ref())?;
        let dropped = anchor.as_ref().map_or(0, |a| a.position());
        // The index must cover the whole log before the committer takes revisions from it;
        // without a snapshot past the dropped prefix, it starts from the anchor's bases.
        let mut index = match crate::index::read_snapshot(dir, store.as_ref(), head) {
            Some(index) if index.position >= dropped => index,
            _ if dropped > 0 => crate::index::Index::from_bases(
                crate::prefix::read_bases(store.as_ref())?.unwrap_or_default(),
                dropped,
            ),
            _ => crate::index::Index::default(),
        };
        let from_snapshot = index.position;
        index.catch_up(store.as_ref(), head)?;
        if head - from_snapshot >= crate::index::SNAPSHOT_EVERY {
            // Indexing that much again after the next crash would slow that open down.
            if let Err(e) = crate::index::write_snapshot(dir, &index, &tip_mac) {
                tracing::warn!(error = %e, "could not write the index snapshot");
            }
        }
        let snapshotted = head;

        let (head_tx, _) = watch::channel(head);
        let (live, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let shared = Arc::new(Shared {
            head: AtomicU64::new(head),
            head_tx,
            live: Mutex::new(Some(live.clone())),
            index: RwLock::new(index),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            groups: AtomicU64::new(0),
            fdatasyncs: AtomicU64::new(0),
            events: AtomicU64::new(0),
            first: AtomicU64::new(dropped + 1),
            dropping: Mutex::new(()),
        });
        let (tx, rx) = sync_channel(options.queue_capacity.max(1));
        // One group staged while one syncs: enough to overlap them, little to lose.
        let (to_syncer, syncer_rx) = sync_channel(1);
        let (to_indexer, indexer_rx) = std::sync::mpsc::channel();
        let committer = Committer {
            shared: shared.clone(),
            store: store.clone(),
            rx,
            to_syncer,
            head,
            tip_mac,
            last_time,
            key: chain_key.clone(),
            ulids: ulid::Generator::new(),
            max_group: options.max_group.max(1),
        };
        let syncer = Syncer {
            shared: shared.clone(),
            store: store.clone(),
            rx: syncer_rx,
            live,
            to_indexer,
        };
        let threads = vec![
            spawn("qz-log-commit", shared.clone(), move || committer.run())?,
            spawn("qz-log-sync", shared.clone(), move || syncer.run())?,
            spawn("qz-log-index", shared.clone(), {
                let (shared, store, dir) = (shared.clone(), store.clone(), dir.to_path_buf());
                move || crate::indexer::run(shared, store, dir, indexer_rx, snapshotted)
            })?,
        ];

        Ok(Log {
            inner: Arc::new(Handle {
                tx: Mutex::new(Some(tx)),
                shared,
                threads: Mutex::new(threads),
                store: RwLock::new(Some(Opened { store, _lock: lock })),
                chain_key,
                checkpoint_key,
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
        if self.inner.shared.is_failed() {
            return Err(self.closed_error());
        }
        let req = crate::request::prepare(req)?;
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

    /// Signs the current head and publishes it as the data dir's newest checkpoint (done at
    /// close too); `None` for an empty or failed log.
    pub fn publish_checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        self.inner.publish_checkpoint()
    }

    /// Stops the writer after it has answered every queued request, publishes a checkpoint,
    /// and flushes.
    pub fn close(&self) {
        self.inner.close_inner();
    }

    /// The last committed position (0 for an empty log). Internal: never shown to a tenant.
    pub fn head(&self) -> u64 {
        self.inner.shared.head.load(Ordering::Acquire)
    }

    /// Changes whenever the committed head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.shared.head_tx.subscribe()
    }

    /// Live events as they are committed, one message per group; a receiver that falls behind
    /// gets `Lagged`.
    pub fn subscribe_live(&self) -> broadcast::Receiver<Group> {
        let live = self.inner.shared.live.lock().ok();
        match live.as_ref().and_then(|l| l.as_ref()) {
            Some(tx) => tx.subscribe(),
            // Closed: a receiver whose sender is already gone answers `Closed`.
            None => broadcast::channel(1).1,
        }
    }

    /// Why the log stopped accepting writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.failure()
    }

    pub fn is_failed(&self) -> bool {
        self.inner.shared.is_failed()
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

    pub(crate) fn checkpoint_key(&self) -> &CheckpointKey {
        &self.inner.checkpoint_key
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The store, or `Closed` after [`Log::close`]. The guard keeps `close` waiting until the
    /// read is over, so a closed log has really let go of its files (a reopen may follow).
    pub(crate) fn store(&self) -> Result<StoreGuard<'_>, Error> {
        let guard = self.inner.store.read().map_err(|_| Error::Closed)?;
        if guard.is_none() {
            return Err(Error::Closed);
        }
        Ok(StoreGuard(guard))
    }
}

/// A read's hold on the open store.
pub(crate) struct StoreGuard<'a>(std::sync::RwLockReadGuard<'a, Option<Opened>>);

impl std::ops::Deref for StoreGuard<'_> {
    type Target = dyn LogStore;

    fn deref(&self) -> &Self::Target {
        // `Log::store` hands out a guard only while the store is open.
        self.0
            .as_ref()
            .map(|o| o.store.as_ref())
            .expect("an open store")
    }
}

/// Starts one of the log's threads; if it dies by a panic that escaped, the log fails.
fn spawn(
    name: &str,
    shared: Arc<Shared>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    let thread_name = name.to_owned();
    Ok(std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                shared.fail(format!(
                    "log thread {thread_name} panicked: {}",
                    crate::committer::panic_message(&p)
                ));
            }
        })?)
}

pub(crate) fn decode_recorded(position: u64, bytes: &[u8]) -> Result<Recorded, Error> {
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
