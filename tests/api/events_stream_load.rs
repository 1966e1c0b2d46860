//! The SSE stream under load, through the real server: a thousand subscribers in step, and
//! stalled subscribers measured on the real binary's own memory.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::events_stream::{HANG_GUARD, Sub, ids, org_head, range, subscribe, write};
use quickztna::state::Settings;

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_the_same_complete_sequence() {
    const SUBSCRIBERS: usize = 1_000;
    const EVENTS: usize = 300;
    quickztna::server::raise_open_file_limit().expect("raise the open-file limit");
    let app = spawn_app().await;
    let start = org_head(&app, &app.org_id);
    let query = format!("since_id={start}");
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS / 100 {
        let opened =
            futures::future::join_all((0..100).map(|_| subscribe(&app, &app.token, &query, None)))
                .await;
        subs.extend(opened);
    }
    assert_eq!(app.state.event_streams().open(), SUBSCRIBERS);
    let end = start + EVENTS as u64;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| tokio::spawn(async move { ids(&s.until(end).await) }))
        .collect();
    write(&app, EVENTS).await;
    let expected = range(start + 1, end);
    for r in readers {
        assert_eq!(r.await.expect("reader"), expected);
    }
}

/// The real binary serving a new data dir, for what must be measured on its own process.
struct Served {
    child: tokio::process::Child,
    address: String,
    token: String,
    _dir: tempfile::TempDir,
}

const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

fn run_bin(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run quickztna");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

impl Served {
    /// `quickztna serve` with `extra` flags, on an organization without rate limits.
    async fn start(extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_str().expect("utf-8 path").to_owned();
        let init: Value = serde_json::from_str(&run_bin(&[
            "init",
            "--org",
            "acme",
            "--plan",
            "workforce",
            "--data-dir",
            &data,
        ]))
        .expect("init prints JSON");
        run_bin(&[
            "org",
            "set-limits",
            "--org",
            "acme",
            "--data-dir",
            &data,
            "--read-per-min",
            "1000000",
            "--write-per-min",
            "1000000",
        ]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--data-dir", &data, "--listen", &listen];
        args.extend_from_slice(extra);
        let child = tokio::process::Command::new(BIN)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the server");
        let address = format!("http://{listen}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            let up = client.get(format!("{address}/api/v1/health")).send().await;
            if up.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server starts");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Served {
            child,
            address,
            token: init["token"].as_str().expect("token").to_owned(),
            _dir: dir,
        }
    }

    /// The server's resident memory, in kB.
    fn vm_rss_kb(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Sends a stream request on a raw connection that then never reads.
async fn stalled_stream(address: &str, token: &str) -> tokio::net::TcpStream {
    let addr = address
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so that the server's side fills quickly.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut s = socket.connect(addr).await.expect("connect");
    let req = format!(
        "GET /api/v1/events?stream=true&since_id=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscribers_do_not_hold_up_writes_or_grow_memory_and_are_cut_off() {
    const STALLED: usize = 40;
    const EVENTS: usize = 8_000;
    let cap = (STALLED + 1).to_string();
    let server = Served::start(&[
        "--response-write-timeout",
        "10s",
        "--max-event-streams-per-org",
        &cap,
    ])
    .await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stalled_stream(&server.address, &server.token).await);
    }
    // The cap is one above the stalled streams: a subscriber that gets the last place, and a
    // 503 for the next, show that every stalled stream is open.
    let client = reqwest::Client::new();
    let stream_req = || {
        client
            .get(format!("{}/api/v1/events?stream=true", server.address))
            .bearer_auth(&server.token)
    };
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let live = loop {
        let resp = stream_req().send().await.expect("GET stream");
        if resp.status() == 200 {
            break resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a place for the live subscriber"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stream_req().send().await.expect("GET").status(), 503);
    let mut live = Sub::of(live);
    let before = server.vm_rss_kb();
    let app_like = |i: usize| {
        client
            .post(format!("{}/api/v1/tokens", server.address))
            .bearer_auth(&server.token)
            .json(&json!({"scopes": ["read"], "description": format!("{i:0>200}"), "expires_in": "2h"}))
            .send()
    };
    let writes = futures::stream::iter(0..EVENTS)
        .map(|i| async move { app_like(i).await.expect("POST").status() })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let statuses = tokio::time::timeout(HANG_GUARD, writes)
        .await
        .expect("writes go on while subscribers stall");
    assert!(statuses.iter().all(|s| *s == 201));
    let page: Value = client
        .get(format!("{}/api/v1/events?limit=1", server.address))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("GET page")
        .json()
        .await
        .expect("JSON");
    let head = page["items"][0]["id"].as_u64().expect("the head");
    let msgs = live.until(head).await;
    assert_eq!(msgs.len(), EVENTS, "the live subscriber is served");
    let after = server.vm_rss_kb();
    // Each stalled stream is ~6 MB behind (8,000 events of ~800 B), more than the kernel's
    // socket buffers take (4 MB at most here), so were the server to buffer what a stream is
    // behind by, 40 of them would hold ~100 MB. Each holds at most a page and hyper's write
    // buffer: well under 1 MB. (Without stalled streams, these writes alone grow it by ~50 MB:
    // the log's 32 MB page cache and the read models.)
    assert!(
        after < before + 80 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    // A client that reads nothing runs into the write deadline and loses its place.
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if stream_req().send().await.expect("GET").status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled streams are closed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("RSS before {before} kB, after {after} kB");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_one_group_broadcast_buffer_lagging_subscribers_catch_up_from_the_log_exactly() {
    const SUBSCRIBERS: usize = 20;
    const EVENTS: usize = 400;
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| s.log.broadcast_capacity = 1),
        ..AppOptions::default()
    })
    .await;
    let start = org_head(&app, &app.org_id);
    let end = start + EVENTS as u64;
    let query = format!("since_id={start}");
    let mut readers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let mut sub = subscribe(&app, &app.token, &query, None).await;
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.last().is_none_or(|l| *l < end) {
                got.push(sub.next().await.expect("the stream goes on").id);
                // Some read slowly: the one-group ring has moved on by their next receive.
                if n % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            got
        }));
    }
    write(&app, EVENTS).await;
    for r in readers {
        assert_eq!(r.await.expect("reader"), range(start + 1, end));
    }
}
