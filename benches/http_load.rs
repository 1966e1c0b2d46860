//! The HTTP load scenario of issue 4: register 10,000 devices through `POST /machine/register`,
//! then page through `GET /devices?limit=200`, then create pre-auth keys (`POST /keys`, one
//! durable event per request) with `wrk -t2 -c64` — with our own client for registration and with
//! `wrk -t2 -c64 -d10s` for the pages, beside nginx serving the same bytes from a file with the
//! same wrk settings in the same run.
//!
//! Runs the real release binary (`quickztna init`, `org set-limits`, `serve`) on a temp data dir.
//! `cargo bench --bench http_load`; `QZ_LOAD_DEVICES` (default 10000), `QZ_LOAD_CONCURRENCY`
//! (default 64), `QZ_LOAD_WRK_DURATION` (default 10s) and `QZ_LOAD_QUERY_SIZES` (fleet sizes at
//! which a selective filter and a sort are timed; default 1000,10000) tune it. Results are printed and written
//! to `target/http_load.txt`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/mod.rs"]
#[allow(dead_code)] // what other benches use
mod support;
use support::{BIN, Server, env_or, free_port, public_key, unlimited_org};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either way.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let devices: usize = env_or("QZ_LOAD_DEVICES", 10_000);
    let concurrency: usize = env_or("QZ_LOAD_CONCURRENCY", 64);
    let wrk_duration: String = env_or("QZ_LOAD_WRK_DURATION", "10s".to_owned());
    // Fleet sizes at which a selective filter and a sort are timed (`QZ_LOAD_QUERY_SIZES`,
    // comma-separated; empty to skip).
    let query_sizes: Vec<usize> = std::env::var("QZ_LOAD_QUERY_SIZES")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n <= devices)
        .collect();
    let mut query_report = String::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");

    let token = unlimited_org("load", data_s);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data_s,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
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
    let mut report = String::new();
    let (pages, first_page) = rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{base}/api/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let key: Value = client
            .post(format!("{base}/api/v1/keys"))
            .bearer_auth(&token)
            .json(&json!({"reusable": true, "tags": ["tag:load"], "expires_in": "1d", "description": "load test"}))
            .send()
            .await
            .expect("create key")
            .json()
            .await
            .expect("key json");
        let auth_key = Arc::new(key["key"].as_str().expect("key").to_owned());

        // Registration: `concurrency` workers share the devices to register, in stages so that
        // the index-served queries can be timed at each fleet size.
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut failures = 0;
        let mut stages: Vec<usize> = query_sizes.iter().copied().filter(|n| *n < devices).collect();
        stages.push(devices);
        for stage in stages {
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (client, base, auth_key, next) = (client.clone(), base.clone(), auth_key.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= stage {
                        // Hand the number back: the next stage starts there.
                        next.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        return (latencies, failures);
                    }
                    let t = Instant::now();
                    let resp = client
                        .post(format!("{base}/api/v1/machine/register"))
                        .json(&json!({
                            "auth_key": auth_key.as_str(),
                            "hostname": format!("host-{i}"),
                            "os": "linux",
                            "os_version": "6.1.0",
                            "public_key": public_key(i as u64),
                        }))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().as_u16() == 201 => latencies.push(t.elapsed()),
                        _ => failures += 1,
                    }
                }
            }));
        }
        for w in workers {
            let (l, f) = w.await.expect("worker");
            latencies.extend(l);
            failures += f;
        }
        if query_sizes.contains(&stage) {
            query_report += &selective_queries(&client, &base, &token, stage).await;
        }
        }
        let elapsed = started.elapsed();
        latencies.sort();
        report += &format!(
            "register {devices} devices, {concurrency} concurrent clients: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, failures {failures}, {:.1} s total\n",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            elapsed.as_secs_f64(),
        );
        report += &query_report;

        // Paging: follow the cursors once, timing each page, and keep the page URLs for wrk.
        let mut pages = Vec::new();
        let mut page_latencies = Vec::new();
        let mut seen = 0usize;
        let mut first_page = Vec::new();
        let mut path = "/api/v1/devices?limit=200".to_owned();
        loop {
            let t = Instant::now();
            let body = client
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("page")
                .bytes()
                .await
                .expect("page body");
            page_latencies.push(t.elapsed());
            if first_page.is_empty() {
                first_page = body.to_vec();
            }
            pages.push(path.clone());
            let v: Value = serde_json::from_slice(&body).expect("page json");
            seen += v["items"].as_array().map_or(0, Vec::len);
            match v["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/devices?limit=200&cursor={c}"),
                None => break,
            }
        }
        page_latencies.sort();
        report += &format!(
            "one sequential walk of GET /devices?limit=200: {} pages, {seen} devices, p50 {:.2} ms, p99 {:.2} ms, page size {} bytes\n",
            pages.len(),
            percentile(&page_latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&page_latencies, 0.99).as_secs_f64() * 1e3,
            first_page.len(),
        );
        (pages, first_page)
    });

    if Command::new("wrk").arg("--version").output().is_err() {
        report += "wrk not installed (apt-get install wrk nginx): skipping the wrk comparison\n";
    } else {
        let script = dir.path().join("pages.lua");
        write_wrk_script(&script, &pages, &token);
        report += &wrk(
            "quickztna GET /devices?limit=200 (all pages, rotating)",
            &format!("{base}/api/v1/devices"),
            Some(&script),
            &wrk_duration,
        );
        let single = dir.path().join("first.lua");
        write_wrk_script(&single, &pages[..1], &token);
        report += &wrk(
            "quickztna GET /devices?limit=200 (first page)",
            &format!("{base}/api/v1/devices"),
            Some(&single),
            &wrk_duration,
        );
        report += &nginx_same_bytes(dir.path(), &first_page, &wrk_duration);
        // Mutations: every request creates a pre-auth key, one durable event each (DESIGN §4
        // compares this with PostgreSQL's 16-client append rate from the same window).
        let post = dir.path().join("post.lua");
        std::fs::write(
            &post,
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{{\"expires_in\":\"1d\",\"description\":\"bench\"}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
            ),
        )
        .expect("write wrk script");
        report += &wrk(
            "quickztna POST /keys (one durable event per request)",
            &format!("{base}/api/v1/keys"),
            Some(&post),
            &wrk_duration,
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    report += &format!("load average at the end: {load}");
    print!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/http_load.txt");
    if let Ok(mut f) = std::fs::File::create(out) {
        let _ = f.write_all(report.as_bytes());
    }
}

/// The `i`th query of a kind: distinct for every `i`.
type Query = fn(usize) -> String;

/// p50/p99 of `GET /devices` with filters that match nothing and with sorts, each
/// query distinct so none is answered from the page cache: what the indexes cost at `fleet`.
async fn selective_queries(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    fleet: usize,
) -> String {
    let mut out = String::new();
    let queries: [(&str, Query); 4] = [
        ("filter=tag:x (matches nothing)", |i| {
            format!("limit=200&filter=tag:x{i}")
        }),
        ("sort=hostname (first page)", |i| {
            format!("limit={}&sort=hostname", 101 + i % 100)
        }),
        ("sort=last_seen:desc (first page)", |i| {
            format!("limit={}&sort=last_seen:desc", 101 + i % 100)
        }),
        (
            "filter=last_seen_before:2001-01-01 (matches nothing)",
            |i| {
                format!(
                    "limit={}&filter=last_seen_before:2001-01-01T00:00:00Z",
                    1 + i % 200
                )
            },
        ),
    ];
    for (name, query) in queries {
        let mut times = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            let resp = client
                .get(format!("{base}/api/v1/devices?{}", query(i)))
                .bearer_auth(token)
                .send()
                .await
                .expect("query");
            assert!(resp.status().is_success(), "{name}: {}", resp.status());
            let _ = resp.bytes().await;
            times.push(t.elapsed());
        }
        times.sort();
        out += &format!(
            "GET /devices?{name} at {fleet} devices: p50 {:.2} ms, p99 {:.2} ms (200 uncached queries)\n",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
        );
    }
    out
}

/// A wrk script that rotates through `paths` with the bearer token.
fn write_wrk_script(path: &Path, paths: &[String], token: &str) {
    let list = paths
        .iter()
        .map(|p| format!("  \"{p}\","))
        .collect::<Vec<_>>()
        .join("\n");
    let lua = format!(
        "local paths = {{\n{list}\n}}\nlocal i = 0\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\nrequest = function()\n  i = (i % #paths) + 1\n  return wrk.format(\"GET\", paths[i])\nend\n"
    );
    std::fs::write(path, lua).expect("write wrk script");
}

/// Runs `wrk -t2 -c64 --latency` and summarises it as one line.
fn wrk(name: &str, url: &str, script: Option<&Path>, duration: &str) -> String {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c64", &format!("-d{duration}"), "--latency"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = match cmd.arg(url).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return format!("{name}: wrk failed: {e}\n"),
    };
    let field = |prefix: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect();
    format!(
        "{name}: {} req/s, p50 {}, p99 {}{}\n",
        field("Requests/sec:"),
        field("50%"),
        field("99%"),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" [{}]", errors.join("; "))
        }
    )
}

/// nginx serving the same page bytes from a file, same wrk settings (the ceiling).
fn nginx_same_bytes(dir: &Path, page: &[u8], duration: &str) -> String {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("page.json"), page).expect("page file");
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  sendfile on; tcp_nopush on; tcp_nodelay on;\n  keepalive_requests 1000000;\n  types {{ application/json json; }}\n  server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("nginx.err").display(),
            root = www.display(),
        ),
    )
    .expect("nginx conf");
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|n| Command::new(n).arg("-v").output().is_ok());
    let Some(nginx) = nginx else {
        return "nginx not installed: skipping the ceiling\n".into();
    };
    let mut child = match Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return format!("nginx failed to start: {e}\n"),
    };
    std::thread::sleep(Duration::from_millis(500));
    let line = wrk(
        "nginx, the same first-page bytes from a file",
        &format!("http://127.0.0.1:{port}/page.json"),
        None,
        duration,
    );
    let _ = Command::new("kill")
        .arg("-QUIT")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    line
}
