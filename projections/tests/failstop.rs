//! Fail-stop: a panic while folding an event stops the projection with a reason, and whoever
//! waits for it is told at once, instead of after their timeout.

use std::time::Duration;

use events::event::{OrgCreated, Plan};
use events::{Actor, AppendRequest, Event, Log, LogOptions, NewEvent, Recorded};
use projections::{Projection, ProjectionHandle, RunnerOptions};
use serde::{Deserialize, Serialize};

/// Folds organization names, and cannot fold one called `boom`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Fragile {
    names: Vec<String>,
}

impl Projection for Fragile {
    const NAME: &'static str = "fragile";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        if let Event::OrgCreated(e) = &r.event {
            assert_ne!(e.name, "boom", "an organization nobody can fold");
            self.names.push(e.name.clone());
        }
    }
}

async fn create_org(log: &Log, name: &str) -> u64 {
    let appended = log
        .append(AppendRequest {
            org_id: format!("org_{name}"),
            actor: Actor::system("test"),
            request_id: "req".into(),
            expectations: vec![],
            events: vec![NewEvent::new(
                format!("org:org_{name}"),
                OrgCreated {
                    org_id: format!("org_{name}"),
                    name: name.into(),
                    plan: Plan::Free,
                    read_per_min: 60,
                    write_per_min: 60,
                },
            )],
            idempotency: None,
        })
        .await
        .expect("append");
    appended.last
}

/// Long enough that only a waiter woken by the failure can finish within [`PROMPTLY`].
const PATIENT: Duration = Duration::from_secs(60);
const PROMPTLY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_panic_in_apply_stops_the_projection_and_wakes_its_waiters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let handle =
        ProjectionHandle::<Fragile>::start(log.clone(), RunnerOptions::new(dir.path().join("s")))
            .await;
    let fine = create_org(&log, "acme").await;
    assert!(handle.wait_for(fine, PATIENT).await);
    assert_eq!(handle.failure(), None);

    // Waiting already when the bad event arrives, as a write's read-your-writes wait would be.
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.wait_for(fine + 1, PATIENT).await }
    });
    let _bad = create_org(&log, "boom").await;
    let woken = tokio::time::timeout(PROMPTLY, waiter).await;
    assert!(!woken.expect("woken by the failure").unwrap());

    assert!(handle.failed());
    let why = handle.failure().expect("a reason");
    assert!(why.contains("fragile"), "{why}");
    assert!(why.contains("an event of type org.created"), "{why}");
    assert!(why.contains("an organization nobody can fold"), "{why}");

    // Nothing past the failure is applied, and new waiters are told so at once.
    let later = create_org(&log, "later").await;
    let refused = tokio::time::timeout(PROMPTLY, handle.wait_for(later, PATIENT)).await;
    assert!(!refused.expect("answered at once"));
    // Readers keep the last state that was fully applied.
    let current = handle.load();
    assert_eq!(current.position, fine);
    assert_eq!(current.state.names, ["acme"]);
    assert!(handle.wait_for(fine, PATIENT).await);
    handle.stop();
}

#[tokio::test]
async fn an_injected_panic_fails_the_projection_like_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let handle =
        ProjectionHandle::<Fragile>::start(log.clone(), RunnerOptions::new(dir.path().join("s")))
            .await;
    handle.inject_panic_at(log.head() + 1);
    let position = create_org(&log, "acme").await;
    let answered = tokio::time::timeout(PROMPTLY, handle.wait_for(position, PATIENT)).await;
    assert!(!answered.expect("answered at once"));
    let why = handle.failure().expect("a reason");
    assert!(why.contains("an event of type org.created"), "{why}");
    assert!(why.contains("injected"), "{why}");
    handle.stop();
}
