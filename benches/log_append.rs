//! Durable appends through the `events` API (DESIGN.md §4, issue 2 item 6).
//!
//! One iteration = a batch of `N` appends spread over `C` concurrent tokio tasks; every append is
//! its own request (one event, ~300 B payload) on its own new stream, and resolves only after its
//! group was applied, `flush()`ed and `fdatasync`ed by the log's writer thread. Concurrency 1, 8
//! and 64. Criterion reports events/s (`Throughput::Elements(N)`); the writer's counters
//! (`Log::stats`) give the average group size, printed and written to
//! `target/bench-results/log_append.json` for BENCHMARKS.md.
//!
//! The log lives in a fresh directory under `target/tmp` (same disk as `/work`), one per
//! concurrency level. Run: `cargo bench --bench log_append`.

/// Chosen by measurement: see BENCHMARKS.md ("Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use events::event::DeviceUpdated;
use events::{Actor, AppendRequest, ChainKey, Event, Log, LogOptions, NewEvent};

/// Payload bytes per event (postcard-encoded `DeviceUpdated`), like sled-raw's 300 B values.
const PAYLOAD_BYTES: usize = 300;

fn data_root() -> PathBuf {
    // Set by cargo for benches: `<target>/tmp`, on the same disk as /work.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn results_dir() -> PathBuf {
    data_root()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(data_root)
        .join("bench-results")
}

/// A `device.updated` whose encoded payload is `PAYLOAD_BYTES` long: postcard writes
/// len(device_id) ‖ device_id ‖ Some-tag ‖ len(hostname) (2-byte varint here) ‖ hostname.
fn event(device: &str) -> Event {
    let want = PAYLOAD_BYTES.saturating_sub(device.len() + 4).max(128);
    let mut hostname = String::with_capacity(want);
    hostname.push_str("edge-gateway-");
    while hostname.len() < want {
        hostname.push((b'a' + (hostname.len() % 26) as u8) as char);
    }
    Event::from(DeviceUpdated {
        device_id: device.to_owned(),
        hostname: Some(hostname),
    })
}

fn request(stream: String) -> AppendRequest {
    let ev = event(&stream);
    AppendRequest {
        org_id: "org_bench".into(),
        actor: Actor::system("bench"),
        request_id: format!("req-{stream}"),
        expectations: Vec::new(),
        events: vec![NewEvent::new(stream, ev)],
        idempotency: None,
    }
}

fn options() -> LogOptions {
    LogOptions {
        chain_key: Some(ChainKey::from_bytes([7u8; 32])),
        ..LogOptions::default()
    }
}

struct Level {
    concurrency: usize,
    /// Appends per iteration.
    batch: usize,
}

const LEVELS: &[Level] = &[
    Level {
        concurrency: 1,
        batch: 256,
    },
    Level {
        concurrency: 8,
        batch: 1024,
    },
    Level {
        concurrency: 64,
        batch: 4096,
    },
];

fn bench_appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::fs::create_dir_all(data_root()).expect("bench data dir");
    let mut summary = Vec::new();

    eprintln!(
        "log_append: payload {} B per event (device.updated, postcard)",
        event("device:c64-t0-n100000").encode_payload().len()
    );

    let mut group = c.benchmark_group("log_append");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));

    for level in LEVELS {
        let dir = tempfile::Builder::new()
            .prefix("log-append-")
            .tempdir_in(data_root())
            .expect("temp dir");
        let log = rt
            .block_on(async { Log::open(dir.path(), options()) })
            .expect("log opens");
        let seq = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicU64::new(0));
        let before = log.stats();
        let wall = Instant::now();
        let conc = level.concurrency;
        let per_task = level.batch / conc;

        group.throughput(Throughput::Elements((per_task * conc) as u64));
        group.bench_with_input(BenchmarkId::new("durable_c", conc), &conc, |b, &conc| {
            b.to_async(&rt).iter_custom(|iters| {
                let log = log.clone();
                let seq = seq.clone();
                let busy = busy.clone();
                async move {
                    let start = Instant::now();
                    let mut tasks = Vec::with_capacity(conc);
                    for t in 0..conc {
                        let log = log.clone();
                        let seq = seq.clone();
                        let busy = busy.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..iters as usize * per_task {
                                let n = seq.fetch_add(1, Ordering::Relaxed);
                                let req = request(format!("device:c{conc}-t{t}-n{n}"));
                                loop {
                                    match log.append(req.clone()).await {
                                        Ok(_) => break,
                                        Err(events::AppendError::Busy) => {
                                            busy.fetch_add(1, Ordering::Relaxed);
                                            tokio::task::yield_now().await;
                                        }
                                        Err(e) => panic!("append failed: {e}"),
                                    }
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("append task");
                    }
                    start.elapsed()
                }
            })
        });

        let after = log.stats();
        let secs = wall.elapsed().as_secs_f64();
        let events = after.events - before.events;
        let groups = after.groups - before.groups;
        let avg = events as f64 / groups.max(1) as f64;
        if events == 0 {
            // Filtered out on the command line.
            continue;
        }
        eprintln!(
            "log_append c={conc}: {events} events in {groups} groups (avg group {avg:.1} events, \
             {} fdatasyncs), {:.0} events/s over the whole run incl. warm-up, busy retries {}",
            after.fdatasyncs - before.fdatasyncs,
            events as f64 / secs,
            busy.load(Ordering::Relaxed)
        );
        summary.push(format!(
            "{{\"concurrency\":{conc},\"events\":{events},\"groups\":{groups},\"avg_group\":{avg:.2},\
             \"fdatasyncs\":{},\"wall_events_per_s\":{:.0},\"busy\":{}}}",
            after.fdatasyncs - before.fdatasyncs,
            events as f64 / secs,
            busy.load(Ordering::Relaxed)
        ));
        log.close();
        drop(log);
        drop(dir);
    }
    group.finish();

    let _ = std::fs::create_dir_all(results_dir());
    let _ = std::fs::write(
        results_dir().join("log_append.json"),
        format!("[{}]\n", summary.join(",\n")),
    );
}

criterion_group!(benches, bench_appends);
criterion_main!(benches);
