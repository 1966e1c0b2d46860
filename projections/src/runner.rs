//! Keeps a projection current and serves lock-free reads of it.
//!
//! Start-up loads the newest usable snapshot and replays only the log's tail after it, so it is
//! not O(history). A task then follows the log's subscription, applying events in chunks: each
//! chunk is applied to a clone of the state (cheap: read models use persistent maps) which is
//! then published atomically with its position. Readers load the published `Arc` and never wait
//! for the writer; writers wait for a position with [`ProjectionHandle::wait_for`] — that is how
//! the API gives read-your-writes.
//!
//! Fail-stop: a panic while applying an event, or an event that cannot be read, stops the
//! projection with a reason ([`ProjectionHandle::failure`]). Readers keep the last state that
//! was fully applied; waiters are woken at once and told no, so writes answer 503 instead of
//! waiting out their timeout; nothing is applied past the failure, so no event is ever skipped.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::{Projection, snapshot};

/// A projection's state as of a log position.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<P> {
    /// Every event up to and including this position has been applied.
    pub position: u64,
    pub state: P,
}

/// When and where snapshots are written.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub snapshot_dir: PathBuf,
    /// Snapshot after this many events since the last one…
    pub snapshot_every_events: u64,
    /// …or after this much time, if anything changed.
    pub snapshot_every: Duration,
}

impl RunnerOptions {
    pub fn new(snapshot_dir: PathBuf) -> Self {
        RunnerOptions {
            snapshot_dir,
            snapshot_every_events: 50_000,
            snapshot_every: Duration::from_secs(60),
        }
    }
}

/// What waiters watch: how far the projection got, and why it stopped if it did. One value, so
/// a waiter blocked on a position is woken by a failure as well.
#[derive(Debug, Clone)]
struct Progress {
    position: u64,
    failure: Option<Arc<str>>,
}

struct Inner<P> {
    current: ArcSwap<Applied<P>>,
    progress: watch::Sender<Progress>,
    /// Test hook: the position whose apply panics (0: none). See
    /// [`ProjectionHandle::inject_panic_at`].
    panic_at: AtomicU64,
    /// The log head when the runner started; caught up once applied reaches it.
    start_head: u64,
    options: RunnerOptions,
    log: events::Log,
    /// One snapshot write at a time: periodic and on-demand writes share the temporary file.
    snapshot_lock: tokio::sync::Mutex<()>,
}

/// A running projection; cheap to clone.
pub struct ProjectionHandle<P> {
    inner: Arc<Inner<P>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl<P> Clone for ProjectionHandle<P> {
    fn clone(&self) -> Self {
        ProjectionHandle {
            inner: self.inner.clone(),
            task: self.task.clone(),
        }
    }
}

impl<P> ProjectionHandle<P>
where
    P: Projection + Serialize + DeserializeOwned,
{
    /// Loads the snapshot (if usable) and starts following the log from its position. The tail
    /// after the snapshot is applied in the background; [`Self::caught_up`] says when it is done.
    pub async fn start(log: events::Log, options: RunnerOptions) -> Self {
        let dir = options.snapshot_dir.clone();
        let head = log.head();
        let reader = log.clone();
        let loaded = tokio::task::spawn_blocking(move || load_snapshot::<P>(&reader, &dir, head))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "projection {}: loading its snapshot panicked",
                    P::NAME
                ))
            });
        let (initial, refused) = match loaded {
            Ok(applied) => (applied, None),
            Err(why) => (
                Applied {
                    position: 0,
                    state: P::default(),
                },
                Some(why),
            ),
        };
        let from = initial.position;
        let (progress, _) = watch::channel(Progress {
            position: from,
            failure: None,
        });
        let inner = Arc::new(Inner {
            current: ArcSwap::from_pointee(initial),
            progress,
            panic_at: AtomicU64::new(0),
            start_head: head,
            options,
            log: log.clone(),
            snapshot_lock: tokio::sync::Mutex::new(()),
        });
        if let Some(why) = refused {
            // Fail-stop: a rebuild from a log whose oldest events are gone would be wrong.
            fail(&inner, why);
            return ProjectionHandle {
                inner,
                task: Arc::new(tokio::spawn(async {})),
            };
        }
        // The backstop for a panic outside `apply` (publishing, snapshots): the task must not
        // die without saying so.
        let task = tokio::spawn({
            let inner = inner.clone();
            async move {
                let run = AssertUnwindSafe(follow(inner.clone(), log, from));
                if let Err(panic) = run.catch_unwind().await {
                    let why = format!(
                        "projection {} panicked: {}",
                        P::NAME,
                        panic_message(&*panic)
                    );
                    fail(&inner, why);
                }
            }
        });
        ProjectionHandle {
            inner,
            task: Arc::new(task),
        }
    }

    /// Writes a snapshot of the current state now (also done periodically and at shutdown).
    pub async fn snapshot_now(&self) -> std::io::Result<()> {
        write_snapshot(&self.inner).await
    }
}

impl<P: Projection> ProjectionHandle<P> {
    /// The current state; never blocks.
    pub fn load(&self) -> Arc<Applied<P>> {
        self.inner.current.load_full()
    }

    pub fn position(&self) -> u64 {
        self.inner.progress.borrow().position
    }

    /// True once everything in the log at start-up has been applied.
    pub fn caught_up(&self) -> bool {
        self.position() >= self.inner.start_head
    }

    /// True if an event could not be read or applied; the projection has stopped.
    pub fn failed(&self) -> bool {
        self.inner.progress.borrow().failure.is_some()
    }

    /// Why the projection stopped: its name, the event type and the panic or read error.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .progress
            .borrow()
            .failure
            .as_deref()
            .map(str::to_owned)
    }

    /// Waits until every event up to `position` has been applied. Returns false as soon as the
    /// projection fails short of it, or when `timeout` passes first.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.progress.subscribe();
        let wait = rx.wait_for(|p| p.position >= position || p.failure.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(p)) => p.position >= position,
            _ => false,
        }
    }

    /// Test hook, never called in production: makes applying the event at `position` panic,
    /// so tests can drive a projection failure through the real server.
    #[doc(hidden)]
    pub fn inject_panic_at(&self, position: u64) {
        self.inner.panic_at.store(position, Ordering::Relaxed);
    }

    /// The log this projection follows.
    pub fn log(&self) -> &events::Log {
        &self.inner.log
    }

    /// Stops following the log.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn follow<P>(inner: Arc<Inner<P>>, log: events::Log, from: u64)
where
    P: Projection + Serialize + DeserializeOwned,
{
    let stream = events::subscribe(log.clone(), from).ready_chunks(1024);
    futures::pin_mut!(stream);
    let mut since_snapshot = 0u64;
    let mut last_snapshot = Instant::now();
    // Events are folded into a private working state, published (cloned) after every chunk
    // while the projection is live (near the head), so a write's waiter sees it at once, but
    // only every PUBLISH_EVERY while it works through a backlog. Publishing per chunk during a long catch-up made every chunk copy
    // every value it touched again, out of the state shared with readers.
    let current = inner.current.load_full();
    let mut working = current.state.clone();
    let mut position = current.position;
    drop(current);
    let mut last_publish = Instant::now();
    while let Some(chunk) = stream.next().await {
        let mut failure = None;
        // After a panic the working state may be half-changed: it is never published.
        let mut poisoned = false;
        for item in chunk {
            let r = match item {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(projection = P::NAME, position, error = %e, "a projection cannot read the log");
                    failure = Some(format!("projection {} cannot read the log: {e}", P::NAME));
                    break;
                }
            };
            let panic_at = inner.panic_at.load(Ordering::Relaxed);
            let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
                if panic_at == r.position() {
                    panic!("injected by a test");
                }
                working.apply(&r);
            }));
            if let Err(panic) = applied {
                // The reason reaches the unauthenticated /health: it names the event's type,
                // never a global position or another tenant's ids; the server log has both.
                tracing::error!(
                    projection = P::NAME,
                    position = r.position(),
                    org_id = %r.envelope.org_id,
                    event_type = %r.envelope.event_type,
                    "a projection panicked applying an event"
                );
                failure = Some(format!(
                    "projection {} panicked applying an event of type {}: {}",
                    P::NAME,
                    r.envelope.event_type,
                    panic_message(&*panic)
                ));
                poisoned = true;
                break;
            }
            position = r.position();
            since_snapshot += 1;
        }
        let live = position + LIVE_LAG >= log.head();
        let stopping = failure.is_some();
        if !(live || stopping || last_publish.elapsed() >= PUBLISH_EVERY) {
            continue;
        }
        if !poisoned {
            inner.current.store(Arc::new(Applied {
                position,
                state: working.clone(),
            }));
            inner.progress.send_modify(|p| p.position = position);
            last_publish = Instant::now();
        }
        if let Some(why) = failure {
            fail(&inner, why);
            return;
        }
        let due = since_snapshot >= inner.options.snapshot_every_events
            || (since_snapshot > 0 && last_snapshot.elapsed() >= inner.options.snapshot_every);
        if due {
            since_snapshot = 0;
            last_snapshot = Instant::now();
            // Off this loop: a write waiting for read-your-writes must not wait for a snapshot
            // to be encoded and fsynced. One at a time (the lock); a slow one delays the next.
            let inner = inner.clone();
            tokio::spawn(async move {
                if let Err(e) = write_snapshot(&inner).await {
                    tracing::warn!(projection = P::NAME, error = %e, "snapshot failed");
                }
            });
        }
    }
}

/// Stops the projection for good: waiters are woken and told no, `/health` reports `why`.
fn fail<P: Projection>(inner: &Inner<P>, why: String) {
    tracing::error!(projection = P::NAME, reason = %why, "read models stopped (fail-stop)");
    inner.progress.send_modify(|p| {
        p.failure.get_or_insert_with(|| why.into());
    });
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

/// The newest usable snapshot, or the empty state at position 0 — unless the log's prefix was
/// dropped (retention), when a rebuild from the start would silently miss the dropped events:
/// then the reason to fail-stop. Blocking: reads the log.
fn load_snapshot<P>(
    log: &events::Log,
    dir: &std::path::Path,
    head: u64,
) -> Result<Applied<P>, String>
where
    P: Projection + DeserializeOwned,
{
    let rebuild = |why: &str| {
        let first = log.first_position();
        if first > 1 {
            // The reason reaches the unauthenticated /health: no positions there.
            tracing::error!(
                projection = P::NAME,
                first_position = first,
                why,
                "the log's prefix was dropped and no usable snapshot covers it"
            );
            return Err(format!(
                "projection {} cannot start: its snapshot is not usable ({why}) and the log's \
                 oldest events were dropped by retention, so it cannot be rebuilt from the log. \
                 Restore snapshots/{}.snap as the version that wrote it left it, or run that \
                 version (see README, Retention)",
                P::NAME,
                P::NAME
            ));
        }
        Ok(Applied {
            position: 0,
            state: P::default(),
        })
    };
    let snap = match snapshot::read::<P>(dir, P::NAME, P::VERSION) {
        Ok(snap) => snap,
        Err(snapshot::Unusable::Missing) => return rebuild("there is none"),
        Err(snapshot::Unusable::OtherVersion(v)) => {
            tracing::warn!(
                projection = P::NAME,
                found = v,
                "snapshot written by another version"
            );
            return rebuild("written by another version of this projection");
        }
        Err(why) => {
            tracing::warn!(
                projection = P::NAME,
                ?why,
                "snapshot not usable; rebuilding"
            );
            return rebuild("it is damaged");
        }
    };
    if snap.position > head {
        tracing::warn!(
            projection = P::NAME,
            position = snap.position,
            head,
            "snapshot is ahead of the log; rebuilding from the start"
        );
        return rebuild("it is ahead of the log");
    }
    match log.mac_at(snap.position) {
        Ok(mac) if mac == snap.mac => Ok(Applied {
            position: snap.position,
            state: snap.state,
        }),
        Ok(_) => {
            tracing::warn!(
                projection = P::NAME,
                position = snap.position,
                "snapshot belongs to another history (its chain MAC is not the log's); rebuilding"
            );
            rebuild("it belongs to another history")
        }
        Err(e) => {
            tracing::warn!(
                projection = P::NAME,
                error = %e,
                "cannot check the snapshot against the log; rebuilding"
            );
            rebuild("it is older than the log's first retained event")
        }
    }
}

/// How often a projection working through a backlog publishes its progress.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// A projection at most this many events behind the head is live: it publishes every chunk.
const LIVE_LAG: u64 = 4096;

async fn write_snapshot<P>(inner: &Arc<Inner<P>>) -> std::io::Result<()>
where
    P: Projection + Serialize + DeserializeOwned,
{
    let _one_at_a_time = inner.snapshot_lock.lock().await;
    let current = inner.current.load_full();
    if current.position + 1 < inner.log.first_position() {
        // A projection that could not start over a dropped prefix: the snapshot on disk is
        // the one that covers the drop, and must stay.
        return Err(std::io::Error::other(format!(
            "projection {} holds no state past the log's dropped prefix; its snapshot is kept",
            P::NAME
        )));
    }
    let dir = inner.options.snapshot_dir.clone();
    let log = inner.log.clone();
    tokio::task::spawn_blocking(move || {
        let mac = log
            .mac_at(current.position)
            .map_err(std::io::Error::other)?;
        snapshot::write(
            &dir,
            P::NAME,
            P::VERSION,
            current.position,
            &mac,
            &current.state,
        )?;
        // Every snapshot also publishes a signed checkpoint of the log (see events::checkpoint).
        log.publish_checkpoint().map_err(std::io::Error::other)?;
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}
