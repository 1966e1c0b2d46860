//! Snapshots are tied to their history: a snapshot carries the chain MAC of the log's record at
//! its position, and start-up ignores one that disagrees with the log it is started on.

use std::path::Path;
use std::time::Duration;

use events::event::{OrgCreated, Plan};
use events::{Actor, AppendRequest, ChainKey, Log, LogOptions, NewEvent};
use projections::{Models, Projection, ProjectionHandle, RunnerOptions, replay, snapshot};

fn open(dir: &Path) -> Log {
    // One chain key for both data dirs: the MACs differ because the histories do, as after a
    // restore of another backup of the same server.
    let options = LogOptions {
        chain_key: Some(ChainKey::from_bytes([7; 32])),
        ..LogOptions::default()
    };
    Log::open(dir, options).expect("open log")
}

async fn start(dir: &Path, log: &Log) -> ProjectionHandle<Models> {
    let handle =
        ProjectionHandle::<Models>::start(log.clone(), RunnerOptions::new(dir.join("snapshots")))
            .await;
    assert!(handle.wait_for(log.head(), Duration::from_secs(10)).await);
    handle
}

/// A data dir whose log holds one `org.created` per name, and a snapshot at its head.
async fn data_dir(names: &[&str]) -> (tempfile::TempDir, Models) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for name in names {
        let stream = format!("org:org_{name}");
        log.append(AppendRequest {
            org_id: format!("org_{name}"),
            actor: Actor::system("test"),
            request_id: "req".into(),
            expectations: vec![],
            events: vec![NewEvent::new(
                stream,
                OrgCreated {
                    org_id: format!("org_{name}"),
                    name: (*name).into(),
                    plan: Plan::Business,
                    read_per_min: 60,
                    write_per_min: 60,
                },
            )],
            idempotency: None,
        })
        .await
        .unwrap();
    }
    let handle = start(dir.path(), &log).await;
    handle.snapshot_now().await.unwrap();
    let state = handle.load().state.clone();
    handle.stop();
    log.close();
    (dir, state)
}

fn snapshot_file(dir: &Path) -> std::path::PathBuf {
    snapshot::path_for(&dir.join("snapshots"), Models::NAME)
}

#[tokio::test]
async fn a_snapshot_from_another_history_is_ignored_and_the_state_rebuilt() {
    let (a, a_state) = data_dir(&["alpha", "beta", "gamma"]).await;
    let (b, _) = data_dir(&["delta", "epsilon", "zeta"]).await;
    // Same length, so A's snapshot names a position B's log has.
    std::fs::copy(snapshot_file(a.path()), snapshot_file(b.path())).unwrap();

    let log = open(b.path());
    let handle = start(b.path(), &log).await;
    let (replayed, head) = replay::<Models>(&log).unwrap();
    assert_eq!(handle.position(), head);
    assert_eq!(handle.load().state, replayed, "B's state is B's history");
    assert_ne!(handle.load().state, a_state);
    handle.stop();
}

#[tokio::test]
async fn a_snapshot_of_the_same_history_is_trusted() {
    let (dir, state) = data_dir(&["alpha", "beta"]).await;
    let log = open(dir.path());
    // A marker no replay would produce, under the log's own MAC: if start-up shows it, the
    // snapshot was loaded rather than rebuilt.
    let mut marked = state.clone();
    marked.orgs.by_id.clear();
    let head = log.head();
    let mac = log.get(head).unwrap().unwrap().envelope.mac;
    let dir_path = dir.path().join("snapshots");
    snapshot::write(
        &dir_path,
        Models::NAME,
        Models::VERSION,
        head,
        &mac,
        &marked,
    )
    .unwrap();

    let handle = start(dir.path(), &log).await;
    assert_eq!(handle.load().state, marked);
    handle.stop();
}
