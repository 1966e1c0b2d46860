//! Replay and cold start over a 1,000,000-event log (DESIGN.md §4, issue 2 item 6).
//!
//! The log is built once and cached in `target/bench-data/replay-1m` (reused while it is complete;
//! delete the directory to rebuild). It is appended in requests of 1,000 events, so building
//! takes well under a minute. Event mix (position order): one `org.created`, then per 1,000
//! events 10 `token.created` (10,000 tokens in all), one `token.revoked`, and the rest device
//! events on 10,000 device streams: first `device.registered`, then `device.updated` with a
//! 300 B payload.
//!
//! Measured (criterion, 10 samples each, flat sampling). One `replay_1m` iteration is a tenth of
//! the log (100,000 events, segments in position order, cycling), so the ten samples cover the
//! whole log once; each is also timed once over the whole log before the benches start
//! (`projections::replay::<Models>` itself, and a full `read_raw` pass):
//! - `replay_1m/read_raw`: the log's records straight from sled (`Log::read_raw`: sled range scan
//!   + copy, no decode) — the raw-sled-scan-of-the-same-log reference;
//! - `replay_1m/read_forward`: `Log::read_forward` (decode envelopes + events), pages of 4,096;
//! - `replay_1m/replay_models`: the same reads folded into `Models` exactly as
//!   `projections::replay` does (state carried across segments, reset at position 1);
//! - `cold_start_1m/with_snapshot`: `Log::open` + `ProjectionHandle::<Models>::start` + wait until
//!   the projection has applied the head ("serving"), with a snapshot written at the head by
//!   `snapshot_now`. Without the snapshot (deleted before each run; default runner options) the
//!   same is timed in `QZ_COLD_RUNS` (default 3) plain runs: one takes too long for ten samples.
//!
//! When the log is (re)built, the first open after the build — when sled replays its own log —
//! is timed once and written with the build figures to `target/bench-results/replay_build.json`.
//! Run: `cargo bench --bench replay`.

/// Chosen by measurement: see BENCHMARKS.md ("Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use events::event::{
    DeviceRegistered, DeviceUpdated, OrgCreated, Plan, TokenCreated, TokenRevoked,
};
use events::{Actor, AppendRequest, ChainKey, Log, LogOptions, NewEvent};
use projections::{Models, ProjectionHandle, RunnerOptions};

const N: u64 = 1_000_000;
const REQUEST_EVENTS: u64 = 1_000;
const PAYLOAD_BYTES: usize = 300;
/// Bump when the generated log changes, so a stale cache is rebuilt.
const DATA_VERSION: &str = "replay-1m v4";

fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

fn data_dir() -> PathBuf {
    target_dir().join("bench-data").join("replay-1m")
}

fn snapshot_dir() -> PathBuf {
    data_dir().join("snapshots")
}

fn results_dir() -> PathBuf {
    target_dir().join("bench-results")
}

/// The log's default options (fixed chain key). `QZ_CACHE_MB` overrides sled's page cache: the
/// figures in BENCHMARKS.md were measured at 512, the default of the time.
fn options() -> LogOptions {
    let mut o = LogOptions {
        chain_key: Some(ChainKey::from_bytes([9u8; 32])),
        ..LogOptions::default()
    };
    if let Some(mb) = std::env::var("QZ_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        o.cache_capacity = mb * 1024 * 1024;
    }
    o
}

/// The event at index `i` (0-based) of the generated log, and its stream.
fn event_at(i: u64) -> NewEvent {
    if i == 0 {
        return NewEvent::new(
            "org:org_bench",
            OrgCreated {
                org_id: "org_bench".into(),
                name: "bench".into(),
                plan: Plan::Workforce,
                read_per_min: 6000,
                write_per_min: 600,
            },
        );
    }
    match (i % 1000, i % 100) {
        // Revokes the token created 50 events earlier, in the same request.
        (51, _) => NewEvent::new(
            format!("token:t{}", i - 50),
            TokenRevoked {
                token_id: format!("t{}", i - 50),
            },
        ),
        (_, 1) => {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&i.to_be_bytes());
            NewEvent::new(
                format!("token:t{i}"),
                TokenCreated {
                    token_id: format!("t{i}"),
                    prefix: format!("qz_{:06x}", i & 0xff_ffff),
                    secret_hash: hash,
                    scopes: vec!["devices:read".into(), "devices:write".into()],
                    description: format!("automation token {i} for the bench fleet"),
                    expires_at: 4_102_444_800_000_000,
                    parent_token_id: None,
                    user_id: None,
                },
            )
        }
        // The first pass over the 10,000 device streams registers them (the few slots taken by
        // the org and token events leave 111 devices unregistered: their updates are no-ops).
        _ if i < 10_000 => {
            let device = format!("dev-{:05}", i);
            let mut credential_hash = [0u8; 32];
            credential_hash[..8].copy_from_slice(&i.to_be_bytes());
            NewEvent::new(
                format!("device:{device}"),
                DeviceRegistered {
                    device_id: device.clone(),
                    key_id: "k1".into(),
                    hostname: format!("edge-gateway-{i}"),
                    os: "linux".into(),
                    os_version: "6.1".into(),
                    public_key: format!("nodekey:{i:064x}"),
                    ipv4: format!("100.64.{}.{}", i / 256, i % 256),
                    ipv6: format!("fd7a:115c:a1e0::{i:x}"),
                    tags: vec!["tag:prod".into(), format!("tag:site-{}", i % 7)],
                    owner: None,
                    ephemeral: false,
                    credential_hash,
                    key_expires_at: None,
                },
            )
        }
        _ => {
            let device = format!("dev-{:05}", i % 10_000);
            let want = PAYLOAD_BYTES.saturating_sub(device.len() + 4).max(128);
            let mut hostname = format!("edge-gateway-{i}-");
            while hostname.len() < want {
                hostname.push((b'a' + (hostname.len() % 26) as u8) as char);
            }
            NewEvent::new(
                format!("device:{device}"),
                DeviceUpdated {
                    device_id: device,
                    hostname: Some(hostname),
                },
            )
        }
    }
}

fn request(chunk: u64) -> AppendRequest {
    let first = chunk * REQUEST_EVENTS;
    AppendRequest {
        org_id: "org_bench".into(),
        actor: Actor::system("bench loader"),
        request_id: format!("load-{chunk}"),
        expectations: Vec::new(),
        events: (first..first + REQUEST_EVENTS).map(event_at).collect(),
        idempotency: None,
    }
}

fn disk_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// Waits until no process or task holds the log directory's lock (an aborted projection task
/// drops its handle asynchronously).
fn wait_unlocked(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("LOCK"))
            && f.try_lock().is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "the log stayed locked");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `Log::open` + projection start + wait until it has applied the head. Returns (open, serving)
/// times; the log is closed (outside the timing) before returning.
fn cold_start(rt: &tokio::runtime::Runtime) -> (Duration, Duration) {
    wait_unlocked(&data_dir());
    let t = Instant::now();
    let log = Log::open(&data_dir(), options()).expect("log opens");
    let opened = t.elapsed();
    let head = log.head();
    let handle = rt.block_on(async {
        let h = ProjectionHandle::<Models>::start(log.clone(), RunnerOptions::new(snapshot_dir()))
            .await;
        assert!(
            h.wait_for(head, Duration::from_secs(600)).await,
            "projection caught up"
        );
        h
    });
    let serving = t.elapsed();
    assert!(handle.caught_up() && !handle.failed());
    handle.stop();
    drop(handle);
    log.close();
    drop(log);
    (opened, serving)
}

fn snapshot_file() -> PathBuf {
    projections::snapshot::path_for(&snapshot_dir(), <Models as projections::Projection>::NAME)
}

/// Builds the log unless a complete one is cached; returns its head.
fn ensure_log(rt: &tokio::runtime::Runtime) -> u64 {
    let marker = data_dir().join("COMPLETE");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(DATA_VERSION) {
        let log = Log::open(&data_dir(), options()).expect("cached log opens");
        let head = log.head();
        log.close();
        drop(log);
        if head == N {
            eprintln!("replay: reusing the cached log in {}", data_dir().display());
            return head;
        }
    }
    let _ = std::fs::remove_dir_all(data_dir());
    eprintln!("replay: building {N} events in {}", data_dir().display());
    let t = Instant::now();
    let log = Log::open(&data_dir(), options()).expect("log opens");
    let chunks = N / REQUEST_EVENTS;
    rt.block_on(async {
        // Two producers, so building the next request overlaps the writer's commit.
        let mut tasks = Vec::new();
        for p in 0..2u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut chunk = p;
                while chunk < chunks {
                    // Requests of one producer are appended in order; the two interleave, which
                    // only changes which device event lands where.
                    let req = tokio::task::spawn_blocking(move || request(chunk))
                        .await
                        .expect("build request");
                    log.append(req).await.expect("append");
                    chunk += 2;
                }
            }));
        }
        for t in tasks {
            t.await.expect("producer");
        }
    });
    let head = log.head();
    let stats = log.stats();
    let build = t.elapsed();
    // As a server does at shutdown: the read models snapshot at the head, then the log closes
    // (which also snapshots its index). The first open below is then what a restart costs.
    rt.block_on(async {
        let h = ProjectionHandle::<Models>::start(log.clone(), RunnerOptions::new(snapshot_dir()))
            .await;
        assert!(h.wait_for(head, Duration::from_secs(600)).await);
        h.snapshot_now().await.expect("snapshot");
        h.stop();
    });
    log.close();
    drop(log);
    assert_eq!(head, N);
    wait_unlocked(&data_dir());
    let disk = disk_bytes(&data_dir());

    // The first open after the writer exited: sled replays its own log here; the read models
    // and the index start from their snapshots at the head.
    let (first_open, first_serving) = cold_start(rt);
    eprintln!(
        "replay: built in {:.1} s ({:.0} events/s, {} groups), {:.0} MB on disk ({:.0} B/event); \
         first open after build: Log::open {:.0} ms, serving (snapshot at the head) {:.0} ms",
        build.as_secs_f64(),
        N as f64 / build.as_secs_f64(),
        stats.groups,
        disk as f64 / 1e6,
        disk as f64 / N as f64,
        first_open.as_secs_f64() * 1e3,
        first_serving.as_secs_f64() * 1e3
    );
    let _ = std::fs::create_dir_all(results_dir());
    let _ = std::fs::write(
        results_dir().join("replay_build.json"),
        format!(
            "{{\"events\":{N},\"build_s\":{:.3},\"build_events_per_s\":{:.0},\"groups\":{},\
             \"disk_bytes\":{disk},\"first_open_ms\":{:.1},\"first_serving_ms\":{:.1}}}\n",
            build.as_secs_f64(),
            N as f64 / build.as_secs_f64(),
            stats.groups,
            first_open.as_secs_f64() * 1e3,
            first_serving.as_secs_f64() * 1e3
        ),
    );
    std::fs::write(&marker, DATA_VERSION).expect("marker");
    head
}

/// Writes the projection's snapshot at the head (start, catch up, `snapshot_now`).
fn snapshot_at_head(rt: &tokio::runtime::Runtime) {
    wait_unlocked(&data_dir());
    let log = Log::open(&data_dir(), options()).expect("log opens");
    let head = log.head();
    rt.block_on(async {
        let h = ProjectionHandle::<Models>::start(log.clone(), RunnerOptions::new(snapshot_dir()))
            .await;
        assert!(h.wait_for(head, Duration::from_secs(600)).await);
        h.snapshot_now().await.expect("snapshot");
        h.stop();
    });
    log.close();
    drop(log);
}

/// Events per measured iteration of the `replay_1m` benches: a tenth of the log, in position
/// order, so ten samples read the whole log once (a full pass per iteration would take minutes
/// on this shared machine, times the ten samples criterion insists on).
const SEGMENT: u64 = N / 10;

/// Reads (and with `apply`, folds) positions `from..=to` the way `projections::replay` does:
/// `read_forward` pages of 4,096.
fn read_segment(log: &Log, from: u64, to: u64, mut apply: impl FnMut(&events::Recorded)) -> u64 {
    let (mut n, mut next) = (0u64, from);
    while next <= to {
        let want = (to - next + 1).min(4096) as usize;
        let page = log.read_forward(next, want).expect("read_forward");
        let Some(last) = page.last() else { break };
        next = last.position() + 1;
        for r in &page {
            apply(r);
        }
        n += page.len() as u64;
    }
    n
}

fn bench_replay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let head = ensure_log(&rt);
    assert_eq!(head, N);
    let _ = std::fs::create_dir_all(results_dir());

    {
        let log = Log::open(&data_dir(), options()).expect("log opens");
        // One full pass of each, timed once: record sizes, and the whole-log figures that the
        // segmented criterion benches below must agree with.
        let t = Instant::now();
        let (mut n, mut bytes, mut from) = (0u64, 0u64, 1u64);
        loop {
            let page = log.read_raw(from, 4096).expect("read_raw");
            if page.is_empty() {
                break;
            }
            for (pos, rec) in &page {
                n += 1;
                bytes += rec.len() as u64;
                from = pos + 1;
            }
        }
        let raw_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (models, pos) = projections::replay::<Models>(&log).expect("replay");
        let replay_s = t.elapsed().as_secs_f64();
        eprintln!(
            "replay: {n} records, average record {:.0} B (envelope + payload + MAC); one full pass: \
             read_raw {raw_s:.2} s ({:.0} events/s), projections::replay::<Models> {replay_s:.2} s \
             ({:.0} events/s); Models at {pos}: {} orgs, {} tokens, {} devices",
            bytes as f64 / n as f64,
            n as f64 / raw_s,
            pos as f64 / replay_s,
            models.orgs.by_id.len(),
            models.tokens.by_id.len(),
            models.devices.by_id.len()
        );
        let _ = std::fs::write(
            results_dir().join("replay_records.json"),
            format!(
                "{{\"records\":{n},\"avg_record_bytes\":{:.1},\"tokens\":{},\"devices\":{},\
                 \"disk_bytes\":{},\"full_read_raw_s\":{raw_s:.3},\"full_replay_models_s\":{replay_s:.3}}}\n",
                bytes as f64 / n as f64,
                models.tokens.by_id.len(),
                models.devices.by_id.len(),
                disk_bytes(&data_dir())
            ),
        );
        drop(models);

        let mut group = c.benchmark_group("replay_1m");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Elements(SEGMENT));
        let mut k = 0u64;
        group.bench_function("read_raw", |b| {
            b.iter(|| {
                let (first, last) = (k * SEGMENT + 1, (k + 1) * SEGMENT);
                k = (k + 1) % 10;
                let (mut n, mut next, mut chk) = (0u64, first, 0u64);
                while next <= last {
                    let want = (last - next + 1).min(4096) as usize;
                    let page = log.read_raw(next, want).expect("read_raw");
                    let Some((p, _)) = page.last() else { break };
                    next = p + 1;
                    for (_, rec) in &page {
                        chk = chk.wrapping_add(rec[rec.len() / 2] as u64);
                    }
                    n += page.len() as u64;
                }
                assert_eq!(n, SEGMENT);
                std::hint::black_box(chk)
            })
        });
        let mut k = 0u64;
        group.bench_function("read_forward", |b| {
            b.iter(|| {
                let first = k * SEGMENT + 1;
                k = (k + 1) % 10;
                let n = read_segment(&log, first, first + SEGMENT - 1, |r| {
                    std::hint::black_box(r);
                });
                assert_eq!(n, SEGMENT);
            })
        });
        let (mut k, mut state) = (0u64, Models::default());
        group.bench_function("replay_models", |b| {
            b.iter(|| {
                if k == 0 {
                    state = Models::default();
                }
                let first = k * SEGMENT + 1;
                k = (k + 1) % 10;
                let n = read_segment(&log, first, first + SEGMENT - 1, |r| {
                    projections::Projection::apply(&mut state, r)
                });
                assert_eq!(n, SEGMENT);
            })
        });
        group.finish();
        log.close();
    }

    snapshot_at_head(&rt);
    let mut group = c.benchmark_group("cold_start_1m");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut opens = Vec::new();
    group.bench_function("with_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                assert!(snapshot_file().exists());
                let (open, serving) = cold_start(&rt);
                opens.push(open);
                total += serving;
            }
            total
        })
    });
    group.finish();
    let open_with = median_ms(&mut opens);

    // Without a snapshot the projection folds all 1M events: far too long for criterion's ten
    // samples here, so a few plain runs (QZ_COLD_RUNS, default 3), with the median reported.
    let runs: usize = std::env::var("QZ_COLD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (mut opens, mut servings) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let _ = std::fs::remove_file(snapshot_file());
        let (open, serving) = cold_start(&rt);
        eprintln!(
            "cold_start_1m/without_snapshot run {}: Log::open {:.0} ms, serving {:.0} ms",
            i + 1,
            open.as_secs_f64() * 1e3,
            serving.as_secs_f64() * 1e3
        );
        opens.push(open);
        servings.push(serving);
    }
    let open_without = median_ms(&mut opens);
    let serving_without = median_ms(&mut servings);
    eprintln!(
        "cold_start_1m: median Log::open {open_with:.1} ms (with-snapshot runs); without snapshot \
         ({runs} runs): median Log::open {open_without:.1} ms, median serving {serving_without:.0} ms"
    );
    let _ = std::fs::write(
        results_dir().join("cold_start.json"),
        format!(
            "{{\"open_ms_with\":{open_with:.2},\"open_ms_without\":{open_without:.2},\
             \"serving_ms_without\":{serving_without:.1},\"runs_without\":{runs},\
             \"serving_ms_without_each\":[{}]}}\n",
            servings
                .iter()
                .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    // Leave the cache with a snapshot at the head.
    snapshot_at_head(&rt);
}

fn median_ms(v: &mut [Duration]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
