//! Memory of the server (DESIGN §4: under 500 MB resident at 100,000 devices and 1,000,000
//! events), measured on the real release binary the way `benches/http_load.rs` drives it:
//! `quickztna init`, `org set-limits` to lift the rate limits, `serve` on a temp data dir, and
//! everything else over HTTP.
//!
//! 1. Registers N devices (`POST /machine/register`, one reusable pre-auth key) and sends one
//!    heartbeat from each (`POST /machine/heartbeat`), as a fleet's agents would.
//! 2. Adds real events until the log holds E: tag changes with `PATCH /devices/{id}`
//!    (`tags: [tag:load, tag:r<round>]`, so after the first round each request records a
//!    `device.tagged` and a `device.untagged`). The log's head is read back from the org's
//!    sequence (a final `PATCH` of a hostname, then `recent_events[0].id` of that device; the
//!    bench's organization is the log's only one).
//! 3. Stops the server with SIGTERM, starts it again on the same data dir, waits for
//!    `/health`, then pages through every device once (`GET /devices?limit=200`).
//!
//! After each step it reads `VmRSS`, `VmHWM` (the peak), `RssAnon` and `RssFile` from
//! `/proc/<pid>/status`. Then it stops the server again and opens its data dir in this process
//! to count the live bytes of each part ([`breakdown`]). `cargo bench --bench memory`; `QZ_MEM_DEVICES` (default 100000),
//! `QZ_MEM_EVENTS` (default 1000000; 0 skips step 2) and `QZ_MEM_CONCURRENCY` (default 64) tune
//! it. The report is printed and written to `target/memory.txt`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../support/mod.rs"]
#[allow(dead_code)] // what other benches use
mod support;
use support::{BIN, env_or, free_port, public_key, unlimited_org};

mod breakdown;

/// The server's allocator, counted: see [`breakdown`].
#[global_allocator]
static GLOBAL: breakdown::Counting = breakdown::Counting::new();

/// A running `quickztna serve`; killed if the bench panics, stopped with SIGTERM otherwise.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn spawn(data: &str) -> Server {
        let port = free_port();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("QUICKZTNA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn memory(&self) -> Memory {
        Memory::of(self.child.id())
    }

    /// SIGTERM, as an operator stops it: the server drains and writes its snapshots.
    fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reading of `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Default)]
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }

    fn line(&self, label: &str) -> String {
        let mb = |kb: u64| kb as f64 / 1024.0;
        format!(
            "{label}: VmRSS {:.1} MB, VmHWM {:.1} MB (RssAnon {:.1} MB, RssFile {:.1} MB)\n",
            mb(self.rss),
            mb(self.hwm),
            mb(self.anon),
            mb(self.file)
        )
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let devices: usize = env_or("QZ_MEM_DEVICES", 100_000);
    let target_events: u64 = env_or("QZ_MEM_EVENTS", 1_000_000);
    let concurrency: usize = env_or("QZ_MEM_CONCURRENCY", 64);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");

    let token = unlimited_org("mem", data_s);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::new();
    let mut report = format!(
        "memory bench: {devices} devices, target {target_events} events, {concurrency} concurrent clients\n"
    );

    let server = Server::spawn(data_s);
    let base = server.base.clone();
    rt.block_on(wait_healthy(&client, &base));
    report += &server.memory().line("empty server (one organization)");

    // Step 1: register and heartbeat.
    let started = Instant::now();
    let ids = rt.block_on(register(&client, &base, &token, devices, concurrency));
    report += &format!(
        "registered {} devices and sent one heartbeat each in {:.1} s\n",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let ids = Arc::new(ids);
    let mut head = rt.block_on(log_head(&client, &base, &token, &ids[0]));
    report += &format!("log head: {head} events\n");
    report += &server
        .memory()
        .line(&format!("(a) after registering {devices} devices"));

    // Step 2: real events up to the target.
    if target_events > head {
        let started = Instant::now();
        let requests = rt.block_on(retag(
            &client,
            &base,
            &token,
            &ids,
            // The final probe records one more.
            (target_events - head - 1) as usize,
            concurrency,
        ));
        let elapsed = started.elapsed();
        head = rt.block_on(log_head(&client, &base, &token, &ids[0]));
        report += &format!(
            "{requests} PATCH /devices/{{id}} (tag changes) in {:.1} s ({:.0} req/s); log head: {head} events\n",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64()
        );
        report += &server.memory().line(&format!("(b) after {head} events"));
    }

    // Step 3: restart, then page through every device.
    let stopped_in = server.stop();
    report += &format!(
        "stopped with SIGTERM in {:.1} s; data dir: {}\n",
        stopped_in.as_secs_f64(),
        sizes(&data)
    );
    let started = Instant::now();
    let server = Server::spawn(data_s);
    let base = server.base.clone();
    rt.block_on(wait_healthy(&client, &base));
    report += &format!(
        "restarted: /health ok after {:.2} s\n",
        started.elapsed().as_secs_f64()
    );
    report += &server.memory().line("(c) after the restart");
    let started = Instant::now();
    let (pages, seen) = rt.block_on(walk(&client, &base, &token));
    report += &format!(
        "paged through {seen} devices ({pages} pages of 200) in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    report += &server
        .memory()
        .line("(c) after paging through every device");
    server.stop();
    report += &breakdown::breakdown(&data, devices, head);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    report += &format!("load average at the end: {load}");
    print!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/memory.txt");
    if let Ok(mut f) = std::fs::File::create(out) {
        let _ = f.write_all(report.as_bytes());
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..6000 {
        let ok = client
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server did not become healthy within a minute");
}

/// Registers `n` devices with one reusable key and sends one heartbeat from each; returns their
/// ids in registration order.
async fn register(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
    concurrency: usize,
) -> Vec<String> {
    let key: Value = client
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(token)
        .json(&json!({"reusable": true, "tags": ["tag:load"], "expires_in": "1d", "description": "memory bench"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key json");
    let auth_key: Arc<str> = key["key"].as_str().expect("key").into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, base, auth_key, next) = (
            client.clone(),
            base.to_owned(),
            auth_key.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return ids;
                }
                let registered: Value = send_ok(
                    client
                        .post(format!("{base}/api/v1/machine/register"))
                        .json(&json!({
                            "auth_key": &*auth_key,
                            "hostname": format!("host-{i}"),
                            "os": "linux",
                            "os_version": "6.1.0",
                            "public_key": public_key(i as u64),
                        })),
                )
                .await;
                let credential = registered["node_credential"].as_str().expect("credential");
                send_ok(
                    client
                        .post(format!("{base}/api/v1/machine/heartbeat"))
                        .bearer_auth(credential)
                        .json(&json!({
                            "os_version": "6.1.0",
                            "client_version": "1.4.0",
                            "posture": {"disk_encrypted": true, "firewall": true},
                        })),
                )
                .await;
                let id = registered["device"]["id"].as_str().expect("device id");
                ids.push((i, id.to_owned()));
            }
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for w in workers {
        ids.extend(w.await.expect("worker"));
    }
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

/// Sends tag changes until they have recorded `events` events; returns the number of requests.
/// Request `r` retags device `r % n` with its round's tag: the first round only adds a tag (one
/// event), later rounds add one and remove the previous (two events).
async fn retag(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &Arc<Vec<String>>,
    events: usize,
    concurrency: usize,
) -> usize {
    let n = ids.len();
    // Rounds of `n` requests: the first records n events, each later one 2n.
    let requests = if events <= n {
        events
    } else {
        n + (events - n).div_ceil(2)
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, base, token, ids, next) = (
            client.clone(),
            base.to_owned(),
            token.to_owned(),
            ids.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return;
                }
                let round = r / n + 1;
                send_ok(
                    client
                        .patch(format!("{base}/api/v1/devices/{}", ids[r % n]))
                        .bearer_auth(&token)
                        .json(&json!({"tags": ["tag:load", format!("tag:r{round}")]})),
                )
                .await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    requests
}

/// The log's head: one more event (a hostname change of `device`), then that event's org
/// sequence number. The bench's organization is the only one, so its sequence is the head.
async fn log_head(client: &reqwest::Client, base: &str, token: &str, device: &str) -> u64 {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let url = format!("{base}/api/v1/devices/{device}");
    let hostname = format!("probe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
    send_ok(
        client
            .patch(&url)
            .bearer_auth(token)
            .json(&json!({ "hostname": hostname })),
    )
    .await;
    let detail = send_ok(client.get(&url).bearer_auth(token)).await;
    detail["recent_events"][0]["id"]
        .as_u64()
        .expect("an event id")
}

/// Follows `next_cursor` through every device; returns (pages, devices).
async fn walk(client: &reqwest::Client, base: &str, token: &str) -> (usize, usize) {
    let (mut pages, mut seen) = (0, 0);
    let mut path = "/api/v1/devices?limit=200".to_owned();
    loop {
        let page = send_ok(client.get(format!("{base}{path}")).bearer_auth(token)).await;
        pages += 1;
        seen += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/devices?limit=200&cursor={c}"),
            None => return (pages, seen),
        }
    }
}

/// Sends a request, retrying a 429 or 503 after its `Retry-After`; panics on anything else
/// that is not a 2xx, so a miscounted run cannot pass for a measurement.
async fn send_ok(request: reqwest::RequestBuilder) -> Value {
    loop {
        let resp = request
            .try_clone()
            .expect("a cloneable request")
            .send()
            .await
            .expect("the server answers");
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.unwrap_or(Value::Null);
        }
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        panic!("{status}: {}", resp.text().await.unwrap_or_default());
    }
}

/// The data dir's parts on disk, in MB.
fn sizes(data: &Path) -> String {
    let du = |p: &Path| -> u64 {
        let out = Command::new("du").arg("-sb").arg(p).output();
        out.ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    };
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "log/ {:.0} MB, snapshots/ {:.1} MB, index.snap {:.1} MB, heartbeats.bin {:.1} MB",
        mb(du(&data.join("log"))),
        mb(du(&data.join("snapshots"))),
        mb(du(&data.join("index.snap"))),
        mb(du(&data.join("heartbeats.bin"))),
    )
}
