//! Webhook delivery (issue 13): deliveries/s to a local receiver with 10 webhooks, and the lag
//! from commit to delivery. Runs the release binary (`quickztna init`, `org set-limits`,
//! `serve --webhook-allow-cidr 127.0.0.0/8`) on a temp data dir: `cargo bench --bench webhooks`.
//! Results are printed and written to `target/webhooks.txt`.
//!
//! 1. **The limit, same window**: 10 loops, each POSTing a body of the same size to the same
//!    receiver one request at a time over a kept-alive connection (what an in-order delivery
//!    loop can do at best), for `QZ_WH_SECONDS` (5).
//! 2. **Throughput**: `QZ_WH_BACKLOG` (5,000) events are written while the 10 webhooks are
//!    disabled; enabling them starts the clock; it stops when the receiver has every event
//!    for every webhook. Order, gaps and duplicates are checked per webhook.
//! 3. **Lag**: writes at `QZ_WH_RATE` (200) events/s for `QZ_WH_SECONDS`; each delivery's lag
//!    is the time the receiver read it minus the event's `time` (stamped by the log before
//!    its fsync; same machine, same clock).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;
use support::{BIN, Server, env_or, free_port, percentile_ms, unlimited_org};

const HOOKS: usize = 10;

/// What the receiver saw, per webhook.
#[derive(Default)]
struct Seen {
    last: [u64; HOOKS],
    count: [u64; HOOKS],
    /// Deliveries whose id was not above the webhook's last one.
    out_of_order: u64,
    /// Lags in microseconds, while `recording`.
    lags: Vec<u32>,
    recording: bool,
}

type Shared = Arc<Mutex<Seen>>;

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// The event's `id` and `time`, scanned without a full parse (the receiver shares the cores).
fn scan(body: &[u8]) -> Option<(u64, i64)> {
    let text = std::str::from_utf8(body).ok()?;
    let id_at = text.find("\"id\":")? + 5;
    let id_end = id_at + text[id_at..].find(',')?;
    let id = text[id_at..id_end].parse().ok()?;
    let key = "\"time\":\"";
    let at = text.find(key)? + key.len();
    let end = at + text[at..].find('"')?;
    let time = text[at..end]
        .parse::<jiff::Timestamp>()
        .ok()?
        .as_microsecond();
    Some((id, time))
}

async fn receive(State(seen): State<Shared>, Path(n): Path<usize>, body: Bytes) -> &'static str {
    let at = now_micros();
    if let (Some((id, time)), true) = (scan(&body), n < HOOKS) {
        let mut s = seen.lock().unwrap();
        if id <= s.last[n] {
            // Delivered again, or out of order.
            s.out_of_order += 1;
        } else {
            s.last[n] = id;
            s.count[n] += 1;
            if s.recording {
                s.lags
                    .push((at - time).clamp(0, i64::from(u32::MAX)) as u32);
            }
        }
    }
    "ok"
}

/// CPU seconds process `pid` has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the state field.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

async fn write_tokens(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: u64,
    rate: Option<u64>,
) {
    let mut tick = rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_micros(1_000_000 / r));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut writes = Vec::new();
    for i in 0..n {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, url, token) = (
            client.clone(),
            format!("{base}/api/v1/tokens"),
            token.to_owned(),
        );
        writes.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"scopes": ["read"], "description": format!("webhook bench {i}"), "expires_in": "2h"}))
                .send()
                .await;
            assert!(resp.is_ok_and(|r| r.status() == 201), "write {i}");
            drop(permit);
        }));
    }
    for w in writes {
        w.await.unwrap();
    }
}

async fn set_enabled(client: &reqwest::Client, base: &str, token: &str, ids: &[String], on: bool) {
    for id in ids {
        let resp = client
            .patch(format!("{base}/api/v1/webhooks/{id}"))
            .bearer_auth(token)
            .json(&json!({"enabled": on}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let backlog: u64 = env_or("QZ_WH_BACKLOG", 5_000);
    let rate: u64 = env_or("QZ_WH_RATE", 200);
    let seconds: u64 = env_or("QZ_WH_SECONDS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");
    let token = unlimited_org("hooks", data_s);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data_s,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--webhook-allow-cidr", "127.0.0.0/8"])
            .env("QUICKZTNA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let pid = server.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async move {
        let seen: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rx = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook/{n}", axum::routing::post(receive))
            .route("/raw", axum::routing::post(|| async { "ok" }))
            .with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let up = client.get(format!("{base}/api/v1/health")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // 1. The limit: in-order POSTs, one at a time per loop, 10 loops, same body size.
        let body = Bytes::from(vec![b'x'; 560]);
        let stop = Instant::now() + Duration::from_secs(seconds);
        let mut loops = Vec::new();
        for _ in 0..HOOKS {
            let (client, body) = (reqwest::Client::new(), body.clone());
            let url = format!("http://{rx}/raw");
            loops.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop {
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    let _ = r.bytes().await;
                    n += 1;
                }
                n
            }));
        }
        let mut raw = 0;
        for l in loops {
            raw += l.await.unwrap();
        }
        let raw_rate = raw as f64 / seconds as f64;

        // 2. Throughput: a backlog, then 10 webhooks enabled at once.
        let mut ids = Vec::new();
        for n in 0..HOOKS {
            let created: Value = client
                .post(format!("{base}/api/v1/webhooks"))
                .bearer_auth(&token)
                .json(&json!({"url": format!("http://{rx}/hook/{n}"), "event_types": ["token.*"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(created["id"].as_str().expect("a webhook").to_owned());
        }
        set_enabled(&client, &base, &token, &ids, false).await;
        write_tokens(&client, &base, &token, backlog, None).await;
        let started = Instant::now();
        let cpu_before = cpu_seconds(pid);
        set_enabled(&client, &base, &token, &ids, true).await;
        loop {
            let done = seen.lock().unwrap().count.iter().all(|c| *c >= backlog);
            if done || started.elapsed() > Duration::from_secs(600) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = started.elapsed();
        let server_cpu = cpu_seconds(pid) - cpu_before;
        let delivered: u64 = seen.lock().unwrap().count.iter().sum();

        // 3. Lag at a steady rate.
        seen.lock().unwrap().recording = true;
        let before: u64 = seen.lock().unwrap().count.iter().sum();
        let steady = rate * seconds;
        write_tokens(&client, &base, &token, steady, Some(rate)).await;
        let waited = Instant::now();
        while seen.lock().unwrap().count.iter().sum::<u64>() < before + steady * HOOKS as u64
            && waited.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut s = seen.lock().unwrap();
        s.lags.sort_unstable();
        let total = backlog * HOOKS as u64;
        format!(
            "limit: 10 loops of in-order POSTs to the same receiver: {raw_rate:.0} requests/s\n\
             throughput: {delivered} of {total} deliveries (10 webhooks × {backlog} events) in \
             {:.2} s = {:.0} deliveries/s = {:.1}% of the limit; the server used {:.2} CPU s, \
             {:.1} µs a delivery\n\
             lag at {rate} events/s × 10 webhooks for {seconds} s: {} deliveries, p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms\n\
             order: {} deliveries out of order or repeated\n",
            drained.as_secs_f64(),
            delivered as f64 / drained.as_secs_f64(),
            100.0 * delivered as f64 / drained.as_secs_f64() / raw_rate,
            server_cpu,
            server_cpu * 1e6 / delivered.max(1) as f64,
            s.lags.len(),
            percentile_ms(&s.lags, 0.5),
            percentile_ms(&s.lags, 0.99),
            percentile_ms(&s.lags, 1.0),
            s.out_of_order,
        )
    });
    print!("{report}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    if let Ok(mut f) = std::fs::File::create(format!("{target}/webhooks.txt")) {
        let _ = f.write_all(report.as_bytes());
    }
}
