//! Workers against a real data dir and log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::event::Plan;
use events::{Actor, Recorded};
use tokio::sync::Notify;

use super::{StepError, Trigger, Worker, Workers};
use crate::bootstrap;
use crate::state::{AppState, Settings};

/// Remembers the positions it was given.
struct Recorder {
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Worker for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Events
    }

    async fn step(&mut self, _: &AppState, events: &[Arc<Recorded>]) -> Result<(), StepError> {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(events.iter().map(|r| r.position()));
        Ok(())
    }
}

async fn open(dir: &std::path::Path) -> AppState {
    AppState::open(Settings::new(dir)).await.expect("open")
}

async fn new_org(state: &AppState, name: &str) {
    bootstrap::create_org(state, name, Plan::Free, Actor::console("test"))
        .await
        .expect("create org");
}

/// Waits until `seen` holds `n` positions.
async fn saw(seen: &Arc<Mutex<Vec<u64>>>, n: usize) -> Vec<u64> {
    for _ in 0..500 {
        let now = seen.lock().unwrap().clone();
        if now.len() >= n {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the worker saw {:?}, not {n} events", seen.lock().unwrap());
}

#[tokio::test]
async fn a_worker_resumes_after_its_checkpoint_when_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path()).await;
    new_org(&state, "acme").await;
    let first = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Workers::new(state.clone());
    workers.spawn(Recorder {
        seen: first.clone(),
    });
    assert_eq!(saw(&first, 2).await, vec![1, 2], "org and owner token");
    workers.shutdown().await;
    state.shutdown().await;
    drop(state);

    let state = open(dir.path()).await;
    new_org(&state, "globex").await;
    let second = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Workers::new(state.clone());
    workers.spawn(Recorder {
        seen: second.clone(),
    });
    assert_eq!(
        saw(&second, 2).await,
        vec![3, 4],
        "only what was appended after the checkpoint"
    );
    workers.shutdown().await;
    state.shutdown().await;
}

/// A timer worker whose step runs until the test releases it.
struct Slow {
    started: Arc<Notify>,
    release: Arc<Notify>,
    finished: Arc<Mutex<u32>>,
}

impl Worker for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Every(Duration::from_millis(1))
    }

    async fn step(&mut self, _: &AppState, _: &[Arc<Recorded>]) -> Result<(), StepError> {
        self.started.notify_one();
        self.release.notified().await;
        *self.finished.lock().unwrap() += 1;
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_waits_for_the_step_in_flight_and_starts_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path()).await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let finished = Arc::new(Mutex::new(0));
    let mut workers = Workers::new(state.clone());
    workers.spawn(Slow {
        started: started.clone(),
        release: release.clone(),
        finished: finished.clone(),
    });
    started.notified().await;
    let stopping = tokio::spawn(workers.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopping.is_finished(), "shutdown must wait for the step");
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown completes once the step does")
        .unwrap();
    assert_eq!(
        *finished.lock().unwrap(),
        1,
        "the step ran to its end, once"
    );
    state.shutdown().await;
}

/// Fails its first step, then remembers the positions it was given.
struct FailsOnce {
    failed: bool,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Worker for FailsOnce {
    fn name(&self) -> &'static str {
        "fails-once"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Events
    }

    async fn step(&mut self, _: &AppState, events: &[Arc<Recorded>]) -> Result<(), StepError> {
        if !self.failed {
            self.failed = true;
            return Err("not yet".into());
        }
        let mut seen = self.seen.lock().unwrap();
        seen.extend(events.iter().map(|r| r.position()));
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_step_is_tried_again_from_the_same_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path()).await;
    new_org(&state, "acme").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Workers::new(state.clone());
    workers.spawn(FailsOnce {
        failed: false,
        seen: seen.clone(),
    });
    assert_eq!(
        saw(&seen, 2).await,
        vec![1, 2],
        "nothing lost to the failure"
    );
    workers.shutdown().await;
    assert_eq!(
        super::checkpoint::load(&super::checkpoint_path(dir.path(), "fails-once")).unwrap(),
        2
    );
    state.shutdown().await;
}
