//! The group committer: one thread decides, one thread makes durable, and neither knows sled.
//!
//! Callers encode their events ([`Prepared`]) and queue them on a bounded channel (full:
//! `Busy`). The *committer* thread drains up to `max_group` requests, checks each against the
//! in-memory stream revisions (earlier requests of the same group included) and idempotency
//! rows, assigns positions, org sequences, event ids and the MAC chain, and hands the group to
//! the store ([`LogStore::write`]: atomic, not yet durable). The *syncer* thread then makes it
//! durable ([`LogStore::sync`]) and only then answers every request of the group, publishes the
//! head and broadcasts the events. While group N is syncing, group N+1 is being staged: the
//! two overlap, and acknowledgements stay in order because one thread sends them all.
//!
//! Fail-stop: any storage error, and any panic in either thread, records a reason and fails the
//! log; nothing is acknowledged after it, queued requests are answered `Failed` at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};

use crate::chain::ChainKey;
use crate::codec;
use crate::envelope::Envelope;
use crate::error::AppendError;
use crate::event::Event;
use crate::index::Index;
use crate::log::Shared;
use crate::recorded::Recorded;
use crate::request::{Appended, Expected, Idempotency};
use crate::store::{Group, IdempotencyRow, LogStore};

/// An event encoded by its caller: the writer only prepends what it assigns.
pub(crate) struct PreparedEvent {
    /// [`codec::encode_tail`] of the event.
    pub tail: Vec<u8>,
    /// The envelope with every field but those the writer assigns (position, org sequence,
    /// revision, event id, time, MAC), so the writer thread allocates nothing for it.
    pub envelope: Envelope,
    pub event: Event,
}

/// An append request, encoded by its caller.
pub(crate) struct Prepared {
    pub org_id: String,
    pub expectations: Vec<(String, Expected)>,
    pub events: Vec<PreparedEvent>,
    pub idempotency: Option<Idempotency>,
}

/// How often the committer looks at the syncer while it gathers a group.
const GATHER_POLL: Duration = Duration::from_micros(50);

pub(crate) type Reply = oneshot::Sender<Result<Appended, AppendError>>;

pub(crate) struct Job {
    pub req: Prepared,
    pub reply: Reply,
}

/// A staged group on its way to the syncer.
pub(crate) struct Staged {
    /// True if the group wrote anything (a group of conflicts and replays needs no sync).
    wrote: bool,
    head: u64,
    recorded: Vec<Arc<Recorded>>,
    replies: Vec<(Reply, Result<Appended, AppendError>)>,
}

/// What staging a group decided, before the replies are attached.
struct Decided {
    wrote: bool,
    head: u64,
    recorded: Vec<Arc<Recorded>>,
    outcomes: Vec<Result<Appended, AppendError>>,
}

/// The committer thread's state. Stream revisions and org sequences come from the in-memory
/// index ([`crate::index`]), of which this thread is the only writer.
pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    pub store: Arc<dyn LogStore>,
    pub rx: Receiver<Job>,
    pub to_syncer: SyncSender<Staged>,
    pub head: u64,
    pub tip_mac: [u8; 32],
    pub last_time: i64,
    pub key: ChainKey,
    pub ulids: ulid::Generator,
    pub max_group: usize,
}

/// What one group has staged on top of the committer's maps.
#[derive(Default)]
struct Overlay {
    streams: HashMap<String, u64>,
    orgs: HashMap<String, u64>,
    idempotency: HashMap<(String, String), IdempotencyRow>,
}

impl Committer {
    pub fn run(mut self) {
        let mut jobs: Vec<Job> = Vec::with_capacity(self.max_group);
        while let Ok(first) = self.rx.recv() {
            jobs.push(first);
            while jobs.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // While the previous group is being made durable, keep gathering: this group could
            // not be synced before that one is done anyway, and a bigger group shares one
            // fdatasync among more appends. An idle syncer means: go now.
            while jobs.len() < self.max_group && self.shared.in_flight.load(Ordering::Acquire) > 0 {
                match self.rx.recv_timeout(GATHER_POLL) {
                    Ok(job) => jobs.push(job),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            if self.shared.is_failed() {
                fail_all(&self.shared, jobs.drain(..).map(|j| j.reply));
                continue;
            }
            let (reqs, replies): (Vec<Prepared>, Vec<Reply>) =
                jobs.drain(..).map(|j| (j.req, j.reply)).unzip();
            // The replies stay out of the closure: after a panic they are still here to be
            // answered, after the failure is recorded.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_group(reqs)));
            let decided = match outcome {
                Ok(Ok(decided)) => decided,
                Ok(Err(why)) => {
                    self.shared.fail(why);
                    fail_all(&self.shared, replies.into_iter());
                    continue;
                }
                Err(panic) => {
                    self.shared.fail(format!(
                        "the log writer panicked: {}",
                        panic_message(&panic)
                    ));
                    fail_all(&self.shared, replies.into_iter());
                    continue;
                }
            };
            let staged = Staged {
                wrote: decided.wrote,
                head: decided.head,
                recorded: decided.recorded,
                replies: replies.into_iter().zip(decided.outcomes).collect(),
            };
            self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Err(std::sync::mpsc::SendError(staged)) = self.to_syncer.send(staged) {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.shared.fail("the log's syncer thread stopped".into());
                fail_all(&self.shared, staged.replies.into_iter().map(|(r, _)| r));
            }
        }
    }

    /// Stages one group and writes it to the store (not yet durable). An error is a reason to
    /// fail the log.
    fn commit_group(&mut self, reqs: Vec<Prepared>) -> Result<Decided, String> {
        let shared = self.shared.clone();
        let index = shared
            .index
            .read()
            .map_err(|_| "the index lock is poisoned")?;
        let mut overlay = Overlay::default();
        let mut group = Group {
            head: self.head,
            ..Group::default()
        };
        let mut recorded = Vec::new();
        let mut outcomes = Vec::with_capacity(reqs.len());
        let mut tip = self.tip_mac;
        for req in reqs {
            let outcome = match self.validate(&index, &req, &overlay) {
                Ok(Some(replay)) => Ok(replay),
                Ok(None) => Ok(self.stage(
                    &index,
                    req,
                    &mut overlay,
                    &mut group,
                    &mut recorded,
                    &mut tip,
                )),
                Err(Validation::Refused(e)) => Err(e),
                Err(Validation::Storage(why)) => {
                    return Err(format!("reading the log failed while committing: {why}"));
                }
            };
            outcomes.push(outcome);
        }
        drop(index);
        let wrote = !group.records.is_empty();
        if wrote {
            self.store
                .write(&group)
                .map_err(|e| format!("writing the log failed: {e}"))?;
            self.head = group.head;
            self.tip_mac = tip;
            // Readers see these positions only once the head passes them (after the sync).
            let mut index = shared
                .index
                .write()
                .map_err(|_| "the index lock is poisoned")?;
            for r in &recorded {
                index.push(crate::index::Entry {
                    stream: &r.envelope.stream,
                    org: &r.envelope.org_id,
                    event_type: &r.envelope.event_type,
                    actor: &r.envelope.actor.id,
                    position: r.envelope.position,
                });
            }
        }
        Ok(Decided {
            wrote,
            head: self.head,
            recorded,
            outcomes,
        })
    }

    fn revision(&self, index: &Index, overlay: &Overlay, stream: &str) -> Option<u64> {
        overlay
            .streams
            .get(stream)
            .copied()
            .or_else(|| index.revision(stream))
    }

    /// `Ok(Some(_))`: a replay of an earlier request; `Ok(None)`: may be staged.
    fn validate(
        &self,
        index: &Index,
        req: &Prepared,
        overlay: &Overlay,
    ) -> Result<Option<Appended>, Validation> {
        if let Some(idem) = &req.idempotency {
            let k = (req.org_id.clone(), idem.key.clone());
            let prior = match overlay.idempotency.get(&k) {
                Some(row) => Some(*row),
                None => self
                    .store
                    .idempotency(&req.org_id, &idem.key)
                    .map_err(|e| Validation::Storage(e.to_string()))?,
            };
            if let Some(row) = prior {
                if row.fingerprint != idem.fingerprint {
                    return Err(Validation::Refused(AppendError::IdempotencyMismatch));
                }
                return Ok(Some(Appended {
                    first: row.first,
                    last: row.last,
                    replayed: true,
                }));
            }
        }
        for (stream, expected) in &req.expectations {
            let actual = self.revision(index, overlay, stream);
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => actual.is_none(),
                Expected::Exists => actual.is_some(),
                Expected::Exact(r) => actual == Some(*r),
            };
            if !ok {
                return Err(Validation::Refused(AppendError::Conflict {
                    stream: stream.clone(),
                    expected: expected.to_string(),
                    actual,
                }));
            }
        }
        Ok(None)
    }

    fn stage(
        &mut self,
        index: &Index,
        req: Prepared,
        overlay: &mut Overlay,
        group: &mut Group,
        recorded: &mut Vec<Arc<Recorded>>,
        tip: &mut [u8; 32],
    ) -> Appended {
        let first = group.head + 1;
        let now = crate::now_micros().max(self.last_time);
        self.last_time = now;
        let mut org_seq = overlay
            .orgs
            .get(&req.org_id)
            .copied()
            .unwrap_or_else(|| index.org_seq(&req.org_id));
        for new in req.events {
            let mut envelope = new.envelope;
            let revision = self
                .revision(index, overlay, &envelope.stream)
                .map_or(0, |r| r + 1);
            group.head += 1;
            org_seq += 1;
            let event_id = self.next_event_id();
            let mut record =
                codec::assemble_record(group.head, org_seq, revision, event_id, now, &new.tail);
            let body = codec::mac_body(&record).expect("a record holds a MAC");
            let mac = self.key.link(tip, body);
            let n = record.len();
            record[n - codec::MAC_LEN..].copy_from_slice(&mac);
            *tip = mac;
            envelope.position = group.head;
            envelope.org_seq = org_seq;
            envelope.revision = revision;
            envelope.event_id = event_id;
            envelope.recorded_at = now;
            envelope.mac = mac;
            match overlay.streams.get_mut(&envelope.stream) {
                Some(r) => *r = revision,
                None => {
                    overlay.streams.insert(envelope.stream.clone(), revision);
                }
            }
            group.records.push((group.head, record));
            recorded.push(Arc::new(Recorded {
                envelope,
                event: new.event,
            }));
        }
        overlay.orgs.insert(req.org_id.clone(), org_seq);
        let last = group.head;
        if let Some(idem) = req.idempotency {
            let row = IdempotencyRow {
                fingerprint: idem.fingerprint,
                first,
                last,
            };
            overlay
                .idempotency
                .insert((req.org_id.clone(), idem.key.clone()), row);
            group.idempotency.push((req.org_id, idem.key, row));
        }
        Appended {
            first,
            last,
            replayed: false,
        }
    }

    fn next_event_id(&mut self) -> [u8; 16] {
        match self.ulids.generate() {
            Ok(u) => u.to_bytes(),
            // The monotonic generator overflows only after 2^80 ids in one millisecond.
            Err(_) => ulid::Ulid::new().to_bytes(),
        }
    }
}

enum Validation {
    Refused(AppendError),
    Storage(String),
}

/// The syncer thread: makes staged groups durable, in order, then acknowledges them.
pub(crate) struct Syncer {
    pub shared: Arc<Shared>,
    pub store: Arc<dyn LogStore>,
    pub rx: Receiver<Staged>,
    pub live: broadcast::Sender<crate::log::Group>,
    /// Tells the index snapshotter how far the log is durable.
    pub to_indexer: std::sync::mpsc::Sender<u64>,
}

impl Syncer {
    pub fn run(self) {
        while let Ok(staged) = self.rx.recv() {
            self.complete(staged);
        }
    }

    /// Makes one staged group durable and answers it, or fails it and the log.
    fn complete(&self, staged: Staged) {
        let synced = if self.shared.is_failed() {
            Ok(Err(crate::error::Error::Failed))
        } else {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if staged.wrote {
                    self.store.sync()
                } else {
                    Ok(())
                }
            }))
        };
        // The syncer is free again before anyone hears back, so a caller's next append never
        // finds a group "in flight" that is already answered.
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.shared.is_failed() {
            fail_all(&self.shared, staged.replies.into_iter().map(|(r, _)| r));
            return;
        }
        let why = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("making the log durable failed: {e}")),
            Err(p) => Some(format!("the log syncer panicked: {}", panic_message(&p))),
        };
        if let Some(why) = why {
            self.shared.fail(why);
            fail_all(&self.shared, staged.replies.into_iter().map(|(r, _)| r));
            return;
        }
        if staged.wrote {
            self.shared
                .events
                .fetch_add(staged.recorded.len() as u64, Ordering::Relaxed);
            self.shared.groups.fetch_add(1, Ordering::Relaxed);
            self.shared.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            self.shared.head.store(staged.head, Ordering::Release);
            self.shared.head_tx.send_replace(staged.head);
            let _ = self.to_indexer.send(staged.head);
            // No receivers is fine: nobody is listening live.
            let _ = self.live.send(staged.recorded.into());
        }
        for (reply, outcome) in staged.replies {
            let _ = reply.send(outcome);
        }
    }
}

fn fail_all(shared: &Shared, replies: impl Iterator<Item = Reply>) {
    let why = shared.failure().unwrap_or_default();
    for reply in replies {
        let _ = reply.send(Err(AppendError::Failed(why.clone())));
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}
