//! Invariant 5: live projections = replay from scratch = snapshot + replay, across restarts.

use std::time::Duration;

use events::event::{OrgCreated, OrgLimitsSet, Plan, TokenCreated, TokenRevoked};
use events::{Actor, AppendRequest, Event, Expected, Log, LogOptions, NewEvent};
use projections::{Models, ProjectionHandle, RunnerOptions, replay, snapshot};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    CreateOrg(u8),
    CreateToken { org: u8, token: u8 },
    RevokeToken(u8),
    SetLimits { org: u8, read: u32 },
    Snapshot,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4).prop_map(Op::CreateOrg),
        4 => (0u8..4, 0u8..16).prop_map(|(org, token)| Op::CreateToken { org, token }),
        2 => (0u8..16).prop_map(Op::RevokeToken),
        2 => (0u8..4, 1u32..10_000).prop_map(|(org, read)| Op::SetLimits { org, read }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Restart),
    ]
}

fn event_for(op: &Op) -> Option<(String, String, Event)> {
    let org_id = |n: u8| format!("org_{n}");
    Some(match op {
        Op::CreateOrg(n) => (
            org_id(*n),
            format!("org:{}", org_id(*n)),
            Event::from(OrgCreated {
                org_id: org_id(*n),
                name: format!("org-{n}"),
                plan: Plan::Workforce,
                read_per_min: 600,
                write_per_min: 60,
            }),
        ),
        Op::CreateToken { org, token } => (
            org_id(*org),
            format!("token:tok_{token}"),
            Event::from(TokenCreated {
                token_id: format!("tok_{token}"),
                prefix: "qz_abc".into(),
                secret_hash: [*token; 32],
                scopes: vec!["read".into()],
                description: format!("token {token}"),
                expires_at: 4_000_000_000_000_000,
                parent_token_id: None,
                user_id: None,
            }),
        ),
        Op::RevokeToken(token) => (
            org_id(0),
            format!("token:tok_{token}"),
            Event::from(TokenRevoked {
                token_id: format!("tok_{token}"),
            }),
        ),
        Op::SetLimits { org, read } => (
            org_id(*org),
            format!("org:{}", org_id(*org)),
            Event::from(OrgLimitsSet {
                org_id: org_id(*org),
                read_per_min: *read,
                write_per_min: 60,
                register_per_min: None,
            }),
        ),
        Op::Snapshot | Op::Restart => return None,
    })
}

async fn start(dir: &std::path::Path) -> (Log, ProjectionHandle<Models>) {
    let log = Log::open(dir, LogOptions::default()).expect("open log");
    let mut options = RunnerOptions::new(dir.join("snapshots"));
    // Snapshots also happen on their own now and then, as in production.
    options.snapshot_every_events = 7;
    let handle = ProjectionHandle::<Models>::start(log.clone(), options).await;
    assert!(handle.wait_for(log.head(), Duration::from_secs(10)).await);
    (log, handle)
}

async fn assert_equivalent(log: &Log, handle: &ProjectionHandle<Models>) {
    assert!(handle.wait_for(log.head(), Duration::from_secs(10)).await);
    let live = handle.load();
    let (replayed, position) = replay::<Models>(log).expect("replay");
    assert_eq!(live.position, position, "live projection is at the head");
    assert_eq!(
        live.state, replayed,
        "live state equals a replay from scratch"
    );
}

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut handle) = start(dir.path()).await;
        for op in &ops {
            match op {
                Op::Snapshot => handle.snapshot_now().await.expect("snapshot"),
                Op::Restart => {
                    assert_equivalent(&log, &handle).await;
                    let before = handle.load();
                    handle.stop();
                    log.close();
                    drop(handle);
                    drop(log);
                    (log, handle) = start(dir.path()).await;
                    assert_eq!(
                        handle.load().state,
                        before.state,
                        "restart never changes an answer"
                    );
                }
                other => {
                    let (org_id, stream, event) = event_for(other).expect("an event");
                    log.append(AppendRequest {
                        org_id,
                        actor: Actor::system("test"),
                        request_id: "req".into(),
                        expectations: vec![(stream.clone(), Expected::Any)],
                        events: vec![NewEvent::new(stream, event)],
                        idempotency: None,
                    })
                    .await
                    .expect("append");
                }
            }
        }
        assert_equivalent(&log, &handle).await;

        // Snapshot + replay of the tail equals the live state too.
        let snap_dir = dir.path().join("snapshots");
        if let Ok(snap) = snapshot::read::<Models>(
            &snap_dir,
            "models",
            <Models as projections::Projection>::VERSION,
        ) {
            let mut state: Models = snap.state;
            let tail = log
                .read_forward(snap.position + 1, usize::MAX)
                .expect("tail");
            for r in &tail {
                projections::Projection::apply(&mut state, r);
            }
            assert_eq!(
                state,
                handle.load().state,
                "snapshot + tail equals live state"
            );
        }
        handle.stop();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn live_projections_equal_replay_and_snapshot_plus_replay_across_restarts(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(ops);
    }
}

#[test]
fn a_snapshot_from_another_version_is_ignored_and_the_state_rebuilt() {
    let ops = vec![
        Op::CreateOrg(1),
        Op::CreateToken { org: 1, token: 3 },
        Op::Snapshot,
    ];
    run(ops.clone());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (log, handle) = start(dir.path()).await;
        for op in &ops[..2] {
            let (org_id, stream, event) = event_for(op).unwrap();
            log.append(AppendRequest {
                org_id,
                actor: Actor::system("test"),
                request_id: "req".into(),
                expectations: vec![],
                events: vec![NewEvent::new(stream, event)],
                idempotency: None,
            })
            .await
            .unwrap();
        }
        assert!(handle.wait_for(log.head(), Duration::from_secs(5)).await);
        let expected = handle.load().state.clone();
        // The log's own MAC, so only the version tells this snapshot apart.
        let mac = log.get(2).unwrap().unwrap().envelope.mac;
        handle.stop();
        log.close();
        drop(log);
        // A snapshot claiming the head but written by another code version, holding garbage.
        let snap_dir = dir.path().join("snapshots");
        snapshot::write(&snap_dir, "models", 0xdead, 2, &mac, &Models::default()).unwrap();
        let (log, handle) = start(dir.path()).await;
        assert_eq!(handle.load().state, expected);
        assert_eq!(handle.position(), log.head());
        handle.stop();
    });
}
