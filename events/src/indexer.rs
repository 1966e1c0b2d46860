//! The index snapshotter: a thread that follows the durable head and, every
//! [`SNAPSHOT_EVERY`] events, writes a snapshot of the in-memory index ([`crate::index`]), so an
//! open after a crash indexes only the records since. Off the commit path: it copies the index
//! under a read lock and encodes and writes the copy without holding it. A failed snapshot is
//! logged, not fatal: the index is derived, and the next open rebuilds what it lacks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::error::Error;
use crate::index::{self, Index, SNAPSHOT_EVERY};
use crate::log::Shared;
use crate::store::LogStore;

pub(crate) fn run(
    shared: Arc<Shared>,
    store: Arc<dyn LogStore>,
    dir: PathBuf,
    heads: Receiver<u64>,
    mut snapshotted: u64,
) {
    while let Ok(mut head) = heads.recv() {
        // Coalesce: only the newest head matters.
        while let Ok(h) = heads.try_recv() {
            head = head.max(h);
        }
        if head < snapshotted + SNAPSHOT_EVERY || shared.is_failed() {
            continue;
        }
        match snapshot(&shared, store.as_ref(), &dir, head) {
            Ok(()) => snapshotted = head,
            Err(e) => tracing::warn!(error = %e, "could not write the index snapshot"),
        }
    }
}

/// Writes the index as of the durable `head`.
pub(crate) fn snapshot(
    shared: &Shared,
    store: &dyn LogStore,
    dir: &std::path::Path,
    head: u64,
) -> Result<(), Error> {
    let copy = shared
        .index
        .read()
        .map_err(|_| Error::Storage("the index lock is poisoned".into()))?
        .clone();
    let durable = truncate(copy, head);
    let mac = crate::store::mac_at(store, head)?;
    index::write_snapshot(dir, &durable, &mac)
}

/// Drops what the committer staged past the durable head (not yet acknowledged).
fn truncate(mut index: Index, head: u64) -> Index {
    if index.position > head {
        for list in index.lists_mut() {
            while list.last().is_some_and(|p| *p > head) {
                list.pop();
            }
        }
        index.drop_empty();
        index.position = head;
    }
    index
}
