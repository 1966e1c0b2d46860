//! Audit export throughput against the raw scan of the same events (issue 10, BENCHMARKS.md
//! "Audit export").
//!
//! Builds a data dir with one organization and `QZ_EXPORT_EVENTS` events (default 200,000;
//! the organization's limits set again and again, ~450 bytes each as JSON), then, with the
//! real release binary:
//! 1. `audit-log export` to `.jsonl.gz` and to `.jsonl` through a running server (pages of 200
//!    with chain links, the signed checkpoint at the end);
//! 2. the same pages fetched and discarded (what the server and HTTP cost without the file);
//! 3. the raw scan: `Log::scan_raw` over every record of the stopped server's log, the floor
//!    any reader of the log pays.
//!
//! Prints one table and the export's peak resident memory (GNU `time`); `QZ_EXPORT_RUNS` (default 3) repeats each measurement and reports the
//! median and range.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use events::event::OrgLimitsSet;
use events::{Actor, AppendRequest, Log, LogOptions, NewEvent};
use serde_json::Value;

#[path = "support/mod.rs"]
#[allow(dead_code)] // the device keys are for other benches
mod support;
use support::{BIN, env_or, free_port, unlimited_org};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

const SINCE: &str = "2000-01-01T00:00:00Z";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("QZ_EXPORT_EVENTS", 200_000);
    let runs: usize = env_or("QZ_EXPORT_RUNS", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8 path").to_owned();
    let token = unlimited_org("export", &data_s);
    let org_id = org_id(&data_s);
    let loaded = Instant::now();
    load(&data, &org_id, n);
    eprintln!("loaded {n} events in {:?}", loaded.elapsed());

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                &data_s,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("QUICKZTNA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    wait_healthy(&base);

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut gz = Vec::new();
    let mut plain = Vec::new();
    let mut pages = Vec::new();
    let mut exported = 0;
    let mut gz_bytes = 0;
    let mut plain_bytes = 0;
    let mut peak_kib = 0u64;
    for run in 0..runs {
        for (name, times) in [("a.jsonl.gz", &mut gz), ("a.jsonl", &mut plain)] {
            let file = out.join(format!("{run}-{name}"));
            let started = Instant::now();
            // GNU time reports the export's peak resident memory (KiB) on its last line.
            let out = Command::new("/usr/bin/time")
                .args([
                    "-f",
                    "%M",
                    BIN,
                    "audit-log",
                    "export",
                    "--since",
                    SINCE,
                    "--output",
                ])
                .arg(&file)
                .env("QUICKZTNA_SERVER", &base)
                .env("QUICKZTNA_TOKEN", &token)
                .stdin(Stdio::null())
                .output()
                .expect("export");
            times.push(started.elapsed());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "export failed: {stderr}");
            let kib: u64 = stderr
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
            let size = std::fs::metadata(&file).unwrap().len();
            if name.ends_with(".gz") {
                gz_bytes = size;
            } else {
                plain_bytes = size;
                exported = std::fs::read_to_string(&file).unwrap().lines().count() as u64 - 1;
            }
            std::fs::remove_file(&file).unwrap();
        }
        pages.push(walk_pages(&base, &token));
    }
    drop(server);

    // The raw scan, on the stopped server's log.
    let log = Log::open(&data, LogOptions::default()).expect("the log opens");
    let mut scans = Vec::new();
    let mut records = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut count = 0u64;
        let mut bytes = 0u64;
        log.scan_raw(1, u64::MAX, &mut |_, b| {
            count += 1;
            bytes += b.len() as u64;
            true
        })
        .expect("scans");
        scans.push(started.elapsed());
        records = count;
        std::hint::black_box(bytes);
    }
    log.close();

    let rate = |d: Duration, events: u64| events as f64 / d.as_secs_f64();
    let row = |label: &str, times: &mut Vec<Duration>, events: u64| {
        times.sort();
        let median = times[times.len() / 2];
        format!(
            "| {label} | {:.0} [{:.0}–{:.0}] events/s | {:.2} s |",
            rate(median, events),
            rate(*times.last().unwrap(), events),
            rate(times[0], events),
            median.as_secs_f64()
        )
    };
    let scan_median = {
        let mut s = scans.clone();
        s.sort();
        rate(s[s.len() / 2], records)
    };
    let gz_median = {
        let mut s = gz.clone();
        s.sort();
        rate(s[s.len() / 2], exported)
    };
    println!(
        "\n{exported} events exported ({records} records in the log), {runs} runs; median [min–max]"
    );
    println!("| what | throughput | time (median) |\n|---|---|---|");
    println!(
        "{}",
        row("`audit-log export` → .jsonl.gz", &mut gz, exported)
    );
    println!(
        "{}",
        row("`audit-log export` → .jsonl", &mut plain, exported)
    );
    println!(
        "{}",
        row("the same pages fetched and discarded", &mut pages, exported)
    );
    println!(
        "{}",
        row("raw scan of the log (`Log::scan_raw`)", &mut scans, records)
    );
    println!(
        "\nexport (.jsonl.gz) / raw scan = {:.3}; file sizes: .jsonl {} bytes ({:.0} B/event), \
         .jsonl.gz {} bytes ({:.1}x smaller)",
        gz_median / scan_median,
        plain_bytes,
        plain_bytes as f64 / exported as f64,
        gz_bytes,
        plain_bytes as f64 / gz_bytes.max(1) as f64
    );
    println!(
        "peak resident memory of `audit-log export`: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
}

fn org_id(data: &str) -> String {
    let out = Command::new(BIN)
        .args(["org", "list", "--data-dir", data])
        .output()
        .expect("org list");
    let orgs: Value = serde_json::from_slice(&out.stdout).expect("org list prints JSON");
    orgs[0]["id"].as_str().expect("an org").to_owned()
}

/// Appends `n` events to the stopped data dir's log, a thousand per request.
fn load(data: &std::path::Path, org_id: &str, n: u64) {
    let log = Log::open(data, LogOptions::default()).expect("the log opens");
    let mut done = 0;
    while done < n {
        let k = (n - done).min(1000);
        let events = (0..k)
            .map(|_| {
                NewEvent::new(
                    format!("org:{org_id}"),
                    OrgLimitsSet {
                        org_id: org_id.to_owned(),
                        read_per_min: 1_000_000,
                        write_per_min: 1_000_000,
                        register_per_min: None,
                    },
                )
            })
            .collect();
        log.append_blocking(AppendRequest {
            org_id: org_id.to_owned(),
            actor: Actor::console("bench loader"),
            request_id: format!("load-{done}"),
            expectations: vec![],
            events,
            idempotency: None,
        })
        .expect("appends");
        done += k;
    }
    log.close();
}

fn wait_healthy(base: &str) {
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..3000 {
            if client
                .get(format!("{base}/api/v1/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not become healthy");
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The export's requests, with the bodies read and dropped.
fn walk_pages(base: &str, token: &str) -> Duration {
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let first = format!(
            "{base}/api/v1/audit-log?sort=time:asc&limit=200&chain=true&since={}",
            SINCE.replace(':', "%3A")
        );
        let started = Instant::now();
        let mut url = first.clone();
        loop {
            let body = client
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .expect("GET")
                .bytes()
                .await
                .expect("body");
            #[derive(serde::Deserialize)]
            struct Page {
                next_cursor: Option<String>,
            }
            let page: Page = serde_json::from_slice(&body).expect("a page");
            match page.next_cursor {
                Some(c) => {
                    url = format!(
                        "{first}&cursor={}",
                        percent_encoding::utf8_percent_encode(
                            &c,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                }
                None => return started.elapsed(),
            }
        }
    })
}
