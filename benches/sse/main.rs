//! SSE fan-out (issue 10, DESIGN §4: p99 delivery < 100 ms): `QZ_SSE_SUBSCRIBERS` (default
//! 1,000) clients follow `GET /events?stream=true` of one organization while a writer creates
//! API tokens (one durable event each) at `QZ_SSE_RATE` events a second (default 1,000) for
//! `QZ_SSE_SECONDS` (default 20).
//!
//! Each subscriber reads its stream's messages (a light scan for `id:` and the event's `time`)
//! and records, for every event,
//! the delivery lag: the time it parsed the message minus the event's `time` (when the log
//! recorded it, before its fsync; same machine, same clock). It also checks that ids follow one
//! another with no gap and no duplicate. The report gives p50/p99/max over every (subscriber,
//! event) pair, the gaps, and the rate the writer reached.
//!
//! Runs the real release binary (`quickztna init`, `org set-limits`, `serve`) on a temp data
//! dir: `cargo bench --bench sse`. Results are printed and written to `target/sse.txt`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;
use support::{BIN, Server, env_or, free_port, percentile_ms, unlimited_org};

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Delivery lags, in microseconds.
    lags: Vec<u32>,
    gaps: u64,
    duplicates: u64,
    last: u64,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `id:` and the event's `time` of one SSE message (`None` for a comment), read without
/// parsing the whole event: a thousand subscribers parse a thousand events a second on the two
/// cores that also serve them, so a full SSE and JSON parse per delivery would measure the
/// client (the tests check the messages with a full SSE parser).
fn parse_message(message: &[u8]) -> Option<(u64, i64)> {
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.strip_prefix("id: ")?;
    let id = rest[..rest.find('\n')?].parse().ok()?;
    let key = "\"time\":\"";
    let at = text.find(key)? + key.len();
    let end = at + text[at..].find('"')?;
    let time = text[at..end]
        .parse::<jiff::Timestamp>()
        .ok()?
        .as_microsecond();
    Some((id, time))
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let subscribers: usize = env_or("QZ_SSE_SUBSCRIBERS", 1_000);
    let rate: u64 = env_or("QZ_SSE_RATE", 1_000);
    let seconds: u64 = env_or("QZ_SSE_SECONDS", 20);
    quickztna::server::raise_open_file_limit().expect("raise the open-file limit");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");
    let token = unlimited_org("sse", data_s);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let per_org = (subscribers + 10).to_string();
    let _server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data_s,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--max-event-streams-per-org", &per_org])
            .env("QUICKZTNA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async move {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let up = client.get(format!("{base}/api/v1/health")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let expected = rate * seconds;
        let head: Value = client
            .get(format!("{base}/api/v1/events?limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("head")
            .json()
            .await
            .expect("JSON");
        let start = head["items"][0]["id"].as_u64().expect("an event");
        let end = start + expected;

        // Subscribers, all open before the first write.
        let mut readers = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let resp = client
                .get(format!("{base}/api/v1/events?stream=true&since_id={start}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("subscribe");
            assert_eq!(resp.status(), 200, "subscribe");
            readers.push(tokio::spawn(async move {
                let mut seen = Seen {
                    last: start,
                    lags: Vec::with_capacity(expected as usize),
                    ..Seen::default()
                };
                let mut body = resp.bytes_stream();
                let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
                'read: while let Some(Ok(chunk)) = body.next().await {
                    let received = now_micros();
                    buf.extend_from_slice(&chunk);
                    let mut used = 0;
                    while let Some(len) = find(&buf[used..], b"\n\n") {
                        let message = &buf[used..used + len];
                        used += len + 2;
                        let Some((id, time)) = parse_message(message) else { continue };
                        if id <= seen.last {
                            seen.duplicates += 1;
                            continue;
                        }
                        if id != seen.last + 1 {
                            seen.gaps += id - seen.last - 1;
                        }
                        seen.last = id;
                        seen.lags.push((received - time).clamp(0, i64::from(u32::MAX)) as u32);
                        if id >= end {
                            break 'read;
                        }
                    }
                    buf.drain(..used);
                }
                seen
            }));
        }

        // The writer: one request every 1/rate s, each on its own task, never waiting for one
        // to finish before starting the next.
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut writes = Vec::with_capacity(expected as usize);
        for i in 0..expected {
            tick.tick().await;
            let (client, base, token, failed) = (client.clone(), base.clone(), token.clone(), failed.clone());
            writes.push(tokio::spawn(async move {
                let resp = client
                    .post(format!("{base}/api/v1/tokens"))
                    .bearer_auth(&token)
                    .json(&json!({"scopes": ["read"], "description": format!("sse bench {i}"), "expires_in": "2h"}))
                    .send()
                    .await;
                if !resp.is_ok_and(|r| r.status() == 201) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for w in writes {
            let _ = w.await;
        }
        let wrote_in = started.elapsed();

        let mut lags = Vec::with_capacity(subscribers * expected as usize);
        let (mut gaps, mut duplicates, mut incomplete) = (0, 0, 0);
        for r in readers {
            match tokio::time::timeout(Duration::from_secs(60), r).await {
                Ok(Ok(seen)) => {
                    gaps += seen.gaps;
                    duplicates += seen.duplicates;
                    if seen.last < end {
                        incomplete += 1;
                    }
                    lags.extend(seen.lags);
                }
                _ => incomplete += 1,
            }
        }
        lags.sort_unstable();
        format!(
            "SSE fan-out: {subscribers} subscribers, {expected} events written in {:.1} s \
             ({:.0} events/s asked {rate}/s, {} failed writes)\n\
             deliveries: {} of {} (subscribers that did not get every event: {incomplete})\n\
             gaps: {gaps}, duplicates: {duplicates}\n\
             delivery lag (receive time - event time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            wrote_in.as_secs_f64(),
            expected as f64 / wrote_in.as_secs_f64(),
            failed.load(Ordering::Relaxed),
            lags.len(),
            subscribers as u64 * expected,
            percentile_ms(&lags, 0.5),
            percentile_ms(&lags, 0.99),
            percentile_ms(&lags, 1.0),
        )
    });
    print!("{report}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    if let Ok(mut f) = std::fs::File::create(format!("{target}/sse.txt")) {
        let _ = f.write_all(report.as_bytes());
    }
}
