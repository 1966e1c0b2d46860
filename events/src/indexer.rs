//! The derived indexes: (stream, revision) → position and (org, sequence) → position.
//!
//! They are not on the commit path. A thread follows the durable head and writes index rows in
//! batches together with their checkpoint; a crash loses at most rows that the next open derives
//! again from the log, because [`catch_up`] runs before the log accepts appends. Readers combine
//! the index (complete up to the checkpoint) with a scan of the few records after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use crate::codec;
use crate::error::Error;
use crate::log::Shared;
use crate::store::{Direction, IndexBatch, LogStore};

/// Records indexed per batch.
const BATCH: u64 = 4096;

/// Indexes every record after the store's checkpoint up to `head`; returns the new checkpoint.
pub(crate) fn catch_up(store: &dyn LogStore, from: u64, head: u64) -> Result<u64, Error> {
    let mut checkpoint = from;
    while checkpoint < head {
        let to = head.min(checkpoint + BATCH);
        let mut batch = IndexBatch {
            checkpoint: to,
            ..IndexBatch::default()
        };
        let mut expected = checkpoint + 1;
        let mut bad = None;
        store.scan(checkpoint + 1, to, Direction::Forward, &mut |pos, bytes| {
            if pos != expected {
                bad = Some(Error::Corrupt {
                    position: expected,
                    reason: "record missing".into(),
                });
                return false;
            }
            expected += 1;
            match codec::decode_ref(pos, bytes) {
                Ok(env) => {
                    batch
                        .streams
                        .push((env.stream.to_owned(), env.revision, pos));
                    batch.orgs.push((env.org_id.to_owned(), env.org_seq, pos));
                    true
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        if expected != to + 1 {
            return Err(Error::Corrupt {
                position: expected,
                reason: "record missing".into(),
            });
        }
        store.write_index(&batch)?;
        checkpoint = to;
    }
    Ok(checkpoint)
}

/// The indexer thread: follows the durable head until the log closes.
pub(crate) fn run(shared: Arc<Shared>, store: Arc<dyn LogStore>, heads: Receiver<u64>) {
    while let Ok(mut head) = heads.recv() {
        // Coalesce: index up to the newest head in one go.
        while let Ok(h) = heads.try_recv() {
            head = head.max(h);
        }
        let from = shared.indexed.load(Ordering::Acquire);
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            catch_up(store.as_ref(), from, head)
        }));
        match done {
            Ok(Ok(checkpoint)) => shared.indexed.store(checkpoint, Ordering::Release),
            Ok(Err(e)) => {
                shared.fail(format!("indexing the log failed: {e}"));
                return;
            }
            Err(p) => {
                shared.fail(format!(
                    "the log indexer panicked: {}",
                    crate::committer::panic_message(&p)
                ));
                return;
            }
        }
    }
}
