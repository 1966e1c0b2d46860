//! Peer maps: for every device, the devices it may reach (and on which ports) and the devices
//! that may reach it, under the organization's policy, its people's groups and its devices'
//! posture — what `GET /machine/netmap` and `GET /devices/{id}` serve.
//!
//! A derived read model kept in memory: built from the read models at start-up, then kept
//! current by a task that follows the log. Each event names what it touches (a device, a
//! person's devices, or — a new policy, new posture rules, a renamed group — the whole
//! organization), and only that is recomputed, from the read models at or after the event:
//! so the maps always converge to what a full build from the same read models gives, which
//! the tests check. Each device's map carries a version, the org sequence number of the last
//! change to it, which heartbeats return so that agents fetch the map only when it moved.
//!
//! # Layout
//! - [`fleet`]: the read models as the policy core's [`crate::policy::Fleet`].
//! - [`org`]: one organization's compiled policy and per-device versions.

pub mod fleet;
pub mod org;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use events::{Event, Recorded};
use futures::StreamExt;
use projections::Models;
use tokio::sync::{mpsc, watch};

pub use org::{DevicePeers, OrgPeers};

use crate::state::AppState;

/// Every organization's peer maps, and how far into the log they are.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    orgs: RwLock<HashMap<String, Arc<RwLock<OrgPeers>>>>,
    /// The log position the maps include; readers wait on it for read-your-writes.
    position: watch::Sender<u64>,
    /// Organizations whose fleet changed, for the policy-tests worker.
    changed: mpsc::UnboundedSender<String>,
    changed_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Why the maps stopped following the log, if they did (fail-stop: writes and `/health`
    /// say so, rather than agents being served maps that no longer change).
    failure: std::sync::Mutex<Option<String>>,
    /// Test hook: the log position whose batch panics (0: none).
    panic_at: std::sync::atomic::AtomicU64,
}

/// What a batch of events asks of one organization.
#[derive(Debug, Default)]
struct Work {
    rebuild: bool,
    devices: BTreeSet<String>,
    /// Devices whose name, key or addresses changed.
    shown: BTreeSet<String>,
    users: BTreeSet<String>,
    /// The org sequence number of its last event in the batch.
    seq: u64,
    /// Whether its fleet changed (not just its policy): the policy's tests must run again.
    fleet_changed: bool,
}

impl Default for Peers {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Peers {
            inner: Arc::new(Inner {
                orgs: RwLock::new(HashMap::new()),
                position: watch::Sender::new(0),
                changed: tx,
                changed_rx: std::sync::Mutex::new(Some(rx)),
                failure: std::sync::Mutex::new(None),
                panic_at: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }
}

impl Peers {
    /// Why the peer maps stopped, if they did.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Test hook: updating the maps with the event at `position` panics, as a bug would.
    pub fn inject_panic_at(&self, position: u64) {
        self.inner
            .panic_at
            .store(position, std::sync::atomic::Ordering::Relaxed);
    }

    fn fail(&self, why: impl Into<String>) {
        let why = why.into();
        tracing::error!(%why, "the peer maps stopped");
        if let Ok(mut f) = self.inner.failure.lock() {
            f.get_or_insert(format!("the peer maps stopped: {why}"));
        }
    }

    /// The position of the log the maps include.
    pub fn position(&self) -> u64 {
        *self.inner.position.borrow()
    }

    /// Waits until the maps include `position` (or `timeout` passes; then the caller serves
    /// what there is).
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.position.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs `f` on the organization's peer maps (`None` before its first event is handled).
    pub fn with_org<T>(&self, org_id: &str, f: impl FnOnce(&OrgPeers) -> T) -> Option<T> {
        let org = self.inner.orgs.read().ok()?.get(org_id).cloned()?;
        let guard = org.read().ok()?;
        Some(f(&guard))
    }

    /// The peer-map version of one device (cheap: what every heartbeat answers).
    pub fn version(&self, org_id: &str, device_id: &str) -> u64 {
        self.with_org(org_id, |o| o.version(device_id)).unwrap_or(0)
    }

    /// The peers of one device.
    pub fn of(&self, org_id: &str, device_id: &str) -> DevicePeers {
        self.with_org(org_id, |o| o.peers(device_id))
            .unwrap_or_default()
    }

    /// The receiver of "this organization's fleet changed" (taken once, by the tests worker).
    pub fn take_changes(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.inner.changed_rx.lock().ok()?.take()
    }

    /// Builds every organization's maps from `models` (at `position`).
    pub fn build_all(&self, models: &Models, position: u64) {
        let mut orgs = HashMap::new();
        for id in models.orgs.by_id.keys() {
            let org = models.org(id);
            let built = OrgPeers::build(org, org.version());
            orgs.insert(id.clone(), Arc::new(RwLock::new(built)));
        }
        let ids: Vec<String> = orgs.keys().cloned().collect();
        if let Ok(mut all) = self.inner.orgs.write() {
            *all = orgs;
        }
        self.inner.position.send_replace(position);
        // The fleet may have changed while the server was down: the tests run once at start.
        for id in ids {
            let _ = self.inner.changed.send(id);
        }
    }

    /// Applies a batch of events, given read models that include all of them.
    pub fn apply(&self, models: &Models, batch: &[Arc<Recorded>]) {
        let Some(last) = batch.last().map(|r| r.position()) else {
            return;
        };
        let poison = self
            .inner
            .panic_at
            .load(std::sync::atomic::Ordering::Relaxed);
        if poison != 0 && batch.iter().any(|r| r.position() == poison) {
            panic!("injected panic at position {poison}");
        }
        let mut work: BTreeMap<String, Work> = BTreeMap::new();
        for r in batch {
            let w = work.entry(r.envelope.org_id.clone()).or_default();
            w.seq = r.org_seq();
            classify(&r.event, w);
        }
        for (org_id, w) in work {
            if !(w.rebuild || !w.devices.is_empty() || !w.users.is_empty()) {
                // Nothing that changes access (the org's own settings, tokens, keys…).
                continue;
            }
            let org = models.org(&org_id);
            let entry = {
                let Ok(mut all) = self.inner.orgs.write() else {
                    continue;
                };
                all.entry(org_id.clone())
                    .or_insert_with(|| Arc::new(RwLock::new(OrgPeers::build(org, w.seq))))
                    .clone()
            };
            let Ok(mut peers) = entry.write() else {
                continue;
            };
            if w.rebuild {
                peers.rebuild(org, w.seq);
            } else {
                let touched = org::Touched {
                    devices: &w.devices,
                    shown: &w.shown,
                    users: &w.users,
                };
                peers.touch(org, touched, w.seq);
            }
            drop(peers);
            if w.fleet_changed {
                let _ = self.inner.changed.send(org_id);
            }
        }
        self.inner.position.send_replace(last);
    }
}

/// What one event touches.
fn classify(event: &Event, w: &mut Work) {
    let device = |id: &str, w: &mut Work| {
        w.devices.insert(id.to_owned());
        w.fleet_changed = true;
    };
    match event {
        // The tests ran against the request's view of the fleet; run them again on the one the
        // policy landed on.
        Event::PolicyApplied(_) => {
            w.rebuild = true;
            w.fleet_changed = true;
        }
        Event::PostureConfigured(_) | Event::GroupUpdated(_) | Event::GroupRemoved(_) => {
            w.rebuild = true;
            w.fleet_changed = true;
        }
        Event::DeviceRegistered(e) => shown(&e.device_id, w),
        Event::DeviceUpdated(e) => shown(&e.device_id, w),
        Event::DeviceTagged(e) => device(&e.device_id, w),
        Event::DeviceUntagged(e) => device(&e.device_id, w),
        Event::DeviceOwnerChanged(e) => device(&e.device_id, w),
        Event::DeviceKeyExpired(e) => device(&e.device_id, w),
        Event::DeviceRemoved(e) => device(&e.device_id, w),
        Event::DeviceCredentialRotated(e) => shown(&e.device_id, w),
        Event::PostureReported(e) => device(&e.device_id, w),
        Event::PostureViolation(e) => device(&e.device_id, w),
        Event::PostureRestored(e) => device(&e.device_id, w),
        Event::UserProvisioned(e) => user(&e.user_id, w),
        // Devices owned by the invited email now resolve to the person.
        Event::UserInvited(e) => user(&e.user_id, w),
        // A new email changes which devices `user:` and ownership by email select: the old
        // email's devices no longer resolve to the person, so rebuild.
        Event::UserUpdated(_) => {
            w.rebuild = true;
            w.fleet_changed = true;
        }
        Event::UserDeactivated(e) => user(&e.user_id, w),
        Event::UserReactivated(e) => user(&e.user_id, w),
        Event::UserRemoved(e) => user(&e.user_id, w),
        Event::UserSignedIn(e) => user(&e.user_id, w),
        Event::GroupMemberAdded(e) => user(&e.user_id, w),
        Event::GroupMemberRemoved(e) => user(&e.user_id, w),
        _ => {}
    }
}

/// A device whose access may change and whose name, key or addresses peers show.
fn shown(id: &str, w: &mut Work) {
    w.devices.insert(id.to_owned());
    w.shown.insert(id.to_owned());
    w.fleet_changed = true;
}

fn user(id: &str, w: &mut Work) {
    w.users.insert(id.to_owned());
    w.fleet_changed = true;
}

/// Follows the log: builds every map once the read models caught up, then applies each new
/// batch once the read models include it. Runs until the log closes.
///
/// It follows the log's shared live subscription (one decode feeds every subscriber) rather
/// than reading pages itself, and applies on this task: a batch that touches a few devices
/// costs about a millisecond. Only a batch that recompiles an organization (a new policy or
/// posture rules) goes to a blocking thread.
pub async fn follow(state: AppState) {
    let peers = state.peers().clone();
    let models = state.models().clone();
    while !models.caught_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = models.load();
    let at = snapshot.position;
    let p = peers.clone();
    if tokio::task::spawn_blocking(move || p.build_all(&snapshot.state, at))
        .await
        .is_err()
    {
        peers.fail("building them panicked");
        return;
    }
    let mut batches = std::pin::pin!(events::subscribe(state.log().clone(), at).ready_chunks(1024));
    while let Some(batch) = batches.next().await {
        let batch: Result<Vec<Arc<Recorded>>, _> = batch.into_iter().collect();
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                peers.fail(format!("cannot read the log: {e}"));
                return;
            }
        };
        let Some(last) = batch.last().map(|r| r.position()) else {
            continue;
        };
        if !models
            .wait_for(last, state.settings().read_your_writes_timeout)
            .await
        {
            if models.failure().is_some() {
                // The read models report their own failure.
                return;
            }
            // Slow, not failed: wait again for the same batch.
            if !models.wait_for(last, Duration::from_secs(3600)).await {
                return;
            }
        }
        let current = models.load();
        let heavy = batch.iter().any(|r| recompiles(&r.event));
        let applied = if heavy {
            let p = peers.clone();
            tokio::task::spawn_blocking(move || p.apply(&current.state, &batch))
                .await
                .is_ok()
        } else {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                peers.apply(&current.state, &batch)
            }))
            .is_ok()
        };
        if !applied {
            peers.fail("updating them panicked");
            return;
        }
    }
}

/// Whether an event makes its organization compile again.
fn recompiles(event: &Event) -> bool {
    let mut w = Work::default();
    classify(event, &mut w);
    w.rebuild
}
