//! kill -9 with projections: a child appends while its read models snapshot every few events;
//! the parent kills it at random moments, then restarts from whatever snapshot survived and
//! checks that the read models equal a replay from scratch and hold every acknowledged write.
//!
//! The child is this test binary re-run with `QZ_PROJ_CRASH_DIR` set, running only
//! [`the_child_appends_and_snapshots_until_killed`]; without the variable that test does nothing.
//! `QZ_PROJ_CRASH_ITERATIONS` sets the number of kills (default 20).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use events::event::{OrgCreated, Plan, TokenCreated};
use events::{Actor, AppendRequest, Event, Expected, Log, LogOptions, NewEvent};
use projections::{Models, ProjectionHandle, RunnerOptions, replay};

const CHILD_DIR: &str = "QZ_PROJ_CRASH_DIR";
const CHILD_TEST: &str = "the_child_appends_and_snapshots_until_killed";

fn options(dir: &Path) -> RunnerOptions {
    let mut o = RunnerOptions::new(dir.join("snapshots"));
    // Snapshot constantly, so kills land in the middle of snapshot writes too.
    o.snapshot_every_events = 25;
    o
}

fn token_event(n: u64) -> Event {
    Event::from(TokenCreated {
        token_id: format!("tok_{n}"),
        prefix: "qz_x".into(),
        secret_hash: [(n % 251) as u8; 32],
        scopes: vec!["read".into()],
        description: format!("token {n}"),
        expires_at: 4_000_000_000_000_000,
        parent_token_id: None,
        user_id: None,
    })
}

#[test]
fn the_child_appends_and_snapshots_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir).to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Log::open(&dir, LogOptions::default()).expect("open");
        let handle = ProjectionHandle::<Models>::start(log.clone(), options(&dir)).await;
        if log.head() == 0 {
            log.append(AppendRequest {
                org_id: "org_a".into(),
                actor: Actor::system("test"),
                request_id: "setup".into(),
                expectations: vec![],
                events: vec![NewEvent::new(
                    "org:org_a",
                    OrgCreated {
                        org_id: "org_a".into(),
                        name: "a".into(),
                        plan: Plan::Workforce,
                        read_per_min: 1,
                        write_per_min: 1,
                    },
                )],
                idempotency: None,
            })
            .await
            .unwrap();
        }
        let base = log.head() * 1000;
        println!("READY");
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let n = base + w * 100_000 + i;
                    let stream = format!("token:tok_{n}");
                    let r = log
                        .append(AppendRequest {
                            org_id: "org_a".into(),
                            actor: Actor::system("test"),
                            request_id: "r".into(),
                            expectations: vec![(stream.clone(), Expected::NoStream)],
                            events: vec![NewEvent::new(stream, token_event(n))],
                            idempotency: None,
                        })
                        .await;
                    if r.is_ok() {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK tok_{n}");
                        let _ = out.flush();
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(handle);
    });
}

#[test]
fn after_kill_9_the_read_models_equal_a_replay_and_hold_every_acknowledged_write() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let iterations: u64 = std::env::var("QZ_PROJ_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = Vec::new();
    let mut seed = 0x5eed_u64;
    for iteration in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is appending, then kill it after a pseudo-random delay.
        let started = Instant::now();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
            if line.contains("READY") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "child never got ready"
            );
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(
            rx.try_iter()
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned)),
        );

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let log = Log::open(dir.path(), LogOptions::default()).expect("reopen");
            let handle = ProjectionHandle::<Models>::start(log.clone(), options(dir.path())).await;
            assert!(handle.wait_for(log.head(), Duration::from_secs(30)).await);
            let live = handle.load();
            let (replayed, position) = replay::<Models>(&log).unwrap();
            assert_eq!(live.position, position, "iteration {iteration}: caught up");
            assert!(
                live.state == replayed,
                "iteration {iteration}: snapshot + tail differs from a replay from scratch"
            );
            for id in &acked {
                assert!(
                    live.state.tokens.get(id).is_some(),
                    "iteration {iteration}: acknowledged {id} missing from the read models"
                );
            }
            handle.stop();
            log.close();
        });
    }
    assert!(!acked.is_empty(), "the child acknowledged nothing");
}
