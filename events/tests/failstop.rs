//! Fail-stop (DESIGN §5): a storage error or a panic anywhere on the write path fails the log
//! for good, with a reason; nothing is acknowledged after it, and every waiting or later
//! append is answered `Failed` with that reason at once — never "closed", never a hang.
//!
//! Faults are injected by wrapping the real sled store: every call goes to sled unless the
//! test has armed a fault for it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use events::sled_store::SledStore;
use events::store::{Direction, Group, IdempotencyRow, LogStore, Recovered};
use events::{AppendError, Error, Log};

use common::{assert_sound, open, options, request, with_idempotency};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    None = 0,
    WritePanics = 1,
    WriteFails = 2,
    SyncFails = 3,
    IdempotencyReadFails = 4,
}

/// The real store, with one fault that can be armed.
struct Faulty {
    inner: SledStore,
    fault: AtomicU8,
    writes: AtomicU64,
}

impl Faulty {
    fn armed(&self, f: Fault) -> bool {
        self.fault.load(Ordering::SeqCst) == f as u8
    }
}

impl LogStore for Faulty {
    fn recover(&self) -> Result<Recovered, Error> {
        self.inner.recover()
    }
    fn write(&self, group: &Group) -> Result<(), Error> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.armed(Fault::WritePanics) {
            panic!("injected panic in the store's write");
        }
        if self.armed(Fault::WriteFails) {
            return Err(Error::Io(std::io::Error::other("injected write error")));
        }
        self.inner.write(group)
    }
    fn sync(&self) -> Result<(), Error> {
        if self.armed(Fault::SyncFails) {
            return Err(Error::Io(std::io::Error::other("injected fdatasync error")));
        }
        self.inner.sync()
    }
    fn record(&self, position: u64) -> Result<Option<Vec<u8>>, Error> {
        self.inner.record(position)
    }
    fn scan(
        &self,
        from: u64,
        to: u64,
        direction: Direction,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.inner.scan(from, to, direction, visit)
    }
    fn idempotency(&self, org: &str, key: &str) -> Result<Option<IdempotencyRow>, Error> {
        if self.armed(Fault::IdempotencyReadFails) {
            return Err(Error::Io(std::io::Error::other("injected read error")));
        }
        self.inner.idempotency(org, key)
    }
    fn close(&self) -> Result<(), Error> {
        self.inner.close()
    }
}

fn open_faulty(dir: &Path) -> (Log, Arc<Faulty>) {
    let store = Arc::new(Faulty {
        inner: SledStore::open(&dir.join("log"), 16 * 1024 * 1024).expect("sled opens"),
        fault: AtomicU8::new(Fault::None as u8),
        writes: AtomicU64::new(0),
    });
    let log = Log::open_with_store(dir, store.clone(), options()).expect("the log opens");
    (log, store)
}

/// Runs `n` appends at once (so they tend to share a group) and returns their answers.
fn concurrent_appends(log: &Log, n: usize) -> Vec<Result<events::Appended, AppendError>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let req = with_idempotency(request("device:f", 1), &format!("k{i}"), 1);
                    tokio::time::timeout(Duration::from_secs(30), log.append(req))
                        .await
                        .expect("an append never hangs after a fault")
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("the task ran"));
        }
        out
    })
}

fn assert_failed_with(results: &[Result<events::Appended, AppendError>], needle: &str) {
    for r in results {
        match r {
            Err(AppendError::Failed(why)) => {
                assert!(
                    why.contains(needle),
                    "reason {why:?} should mention {needle:?}"
                )
            }
            other => panic!("expected Failed({needle}…), got {other:?}"),
        }
    }
}

/// Arms `fault` after three good appends, checks every answer and the log's state, then
/// reopens the data dir without the fault: the three are there, nothing else, and it is sound.
fn check_fault(fault: Fault, needle: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, store) = open_faulty(dir.path());
    for _ in 0..3 {
        log.append_blocking(request("device:ok", 1))
            .expect("appends");
    }
    store.fault.store(fault as u8, Ordering::SeqCst);
    let results = concurrent_appends(&log, 16);
    assert_failed_with(&results, needle);
    assert!(log.is_failed(), "{fault:?}: the log is failed");
    let failure = log.failure().expect("a reason is recorded");
    assert!(failure.contains(needle), "{failure}");
    // Later appends are refused at once with the same reason, even with the fault gone.
    store.fault.store(Fault::None as u8, Ordering::SeqCst);
    match log.append_blocking(request("device:after", 1)) {
        Err(AppendError::Failed(why)) => assert_eq!(why, failure),
        other => panic!("{fault:?}: expected Failed, got {other:?}"),
    }
    assert_eq!(
        log.head(),
        3,
        "{fault:?}: nothing was acknowledged or published"
    );
    log.close();
    drop(log);
    drop(store);

    let log = open(dir.path());
    assert!(
        log.head() >= 3,
        "{fault:?}: the acknowledged appends survive"
    );
    assert_sound(&log);
}

#[test]
fn a_panic_in_the_store_write_fails_the_log_with_the_reason() {
    check_fault(Fault::WritePanics, "panicked");
}

#[test]
fn a_write_error_fails_the_whole_group_and_the_log() {
    check_fault(Fault::WriteFails, "injected write error");
}

#[test]
fn an_fdatasync_error_fails_the_whole_group_and_the_log() {
    check_fault(Fault::SyncFails, "injected fdatasync error");
}

#[test]
fn a_read_error_while_validating_fails_the_whole_group_not_just_its_request() {
    check_fault(Fault::IdempotencyReadFails, "injected read error");
}
