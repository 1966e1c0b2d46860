//! Slow, idle and numerous clients, over raw TCP against the real server: they cannot hold
//! connections forever, cannot keep others from being served, and meet the connection cap.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use quickztna::state::Settings;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, TestApp, spawn_app_with};

/// Held connections: half idle, half stopped in the middle of their headers.
const HELD: usize = 2_000;

/// Upper bound for waits that only guard against a hang.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn socket_addr(app: &TestApp) -> SocketAddr {
    app.address
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address")
}

/// Both ends of every held connection live in this process.
fn make_room_for_connections() {
    let files = quickztna::server::raise_open_file_limit().expect("raise the open-file limit");
    assert!(
        files >= 2 * HELD as u64 + 1_024,
        "this test needs an open-file limit of at least {}; it is {files}",
        2 * HELD + 1_024
    );
}

/// Opens `n` connections that send nothing, and `n` that stop in the middle of their headers.
async fn hold(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let mut idle = Vec::with_capacity(n);
    let mut half_sent = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .expect("send half the headers");
        half_sent.push(stream);
    }
    (idle, half_sent)
}

/// A response read off a raw connection.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads one response with a `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read a response");
        assert!(n > 0, "the connection closed before a whole response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("a text head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read a body");
        assert!(n > 0, "the connection closed before the whole body");
        body.extend_from_slice(&chunk[..n]);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Sends a health check on a new connection and reads the answer (the connection stays open).
async fn health_on_new_connection(addr: SocketAddr) -> (TcpStream, RawResponse) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send a request");
    let response = read_response(&mut stream).await;
    (stream, response)
}

/// Waits until the server closes `stream`: a read returns end-of-file (or a reset).
async fn closed_by_server(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_and_half_sent_connections_do_not_keep_others_waiting() {
    make_room_for_connections();
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.connections.header_read_timeout = Duration::from_secs(3_600);
            s.connections.idle_timeout = Duration::from_secs(3_600);
        }),
        ..AppOptions::default()
    })
    .await;
    let addr = socket_addr(&app);
    let (idle, mut half_sent) = hold(addr, HELD / 2).await;

    // While they are held, another client reads and writes.
    for _ in 0..20 {
        assert_eq!(app.get("/api/v1/health").await.status(), 200);
    }
    let token = app.token_with(&["read"]).await;
    let resp = app
        .request_as(&token, reqwest::Method::GET, "/api/v1/tokens")
        .send()
        .await
        .expect("GET /tokens");
    assert_eq!(resp.status(), 200);

    // The held connections are still open: one finishes its headers and is answered.
    let last = half_sent.last_mut().expect("a held connection");
    last.write_all(b"1\r\n\r\n")
        .await
        .expect("finish the headers");
    assert_eq!(read_response(last).await.status, 200);
    drop((idle, half_sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_past_their_timeouts() {
    make_room_for_connections();
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.connections.header_read_timeout = Duration::from_millis(500);
            s.connections.idle_timeout = Duration::from_millis(500);
        }),
        ..AppOptions::default()
    })
    .await;
    let addr = socket_addr(&app);
    let (idle, half_sent) = hold(addr, HELD / 2).await;
    // A kept-alive connection that was served once and then goes quiet.
    let (kept_alive, answer) = health_on_new_connection(addr).await;
    assert_eq!(answer.status, 200);

    let all = idle
        .into_iter()
        .chain(half_sent)
        .chain(std::iter::once(kept_alive))
        .map(closed_by_server);
    tokio::time::timeout(HANG_GUARD, join_all(all))
        .await
        .expect("the server closes every idle and half-sent connection");

    // Reclaimed, the server serves new connections as before.
    let (_, answer) = health_on_new_connection(addr).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_read_timeout_gets_a_408_problem() {
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.connections.body_read_timeout = Duration::from_secs(1);
        }),
        ..AppOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(socket_addr(&app))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"scopes\":",
        app.token
    );
    stream.write_all(head.as_bytes()).await.expect("send");

    let response = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .expect("an answer to the unfinished body");
    assert_eq!(response.status, 408);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.header("connection"), Some("close"));
    let body = response.json();
    assert_eq!(
        body["type"],
        "https://quickztna.com/docs/api/#errors-request_timeout"
    );
    assert_eq!(body["status"], 408);
    assert_eq!(body["instance"], "/api/v1/tokens");
    assert_eq!(body["request_id"].as_str(), response.header("x-request-id"));
    tokio::time::timeout(HANG_GUARD, closed_by_server(stream))
        .await
        .expect("the connection is closed after the 408");

    // Nothing was created.
    let (tokens, _) = app
        .list_all(&app.token, "/api/v1/tokens", "limit=200")
        .await;
    assert_eq!(tokens.len(), 1, "only the owner token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_connection_gets_503_until_one_closes() {
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.connections.max_connections = 50;
            s.connections.idle_timeout = Duration::from_secs(3_600);
        }),
        ..AppOptions::default()
    })
    .await;
    let addr = socket_addr(&app);
    // Each has been answered, so each holds one of the 50 places.
    let mut held = Vec::new();
    for _ in 0..50 {
        let (stream, answer) = health_on_new_connection(addr).await;
        assert_eq!(answer.status, 200);
        held.push(stream);
    }

    let (refused, answer) = health_on_new_connection(addr).await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.header("retry-after"), Some("5"));
    assert_eq!(
        answer.json()["type"],
        "https://quickztna.com/docs/api/#errors-unavailable"
    );
    tokio::time::timeout(HANG_GUARD, closed_by_server(refused))
        .await
        .expect("a refused connection is closed");
    // The held connections are still served.
    let first = &mut held[0];
    first
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(read_response(first).await.status, 200);

    // One leaves; its place is given to the next connection.
    drop(held.pop());
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let (_, answer) = health_on_new_connection(addr).await;
            if answer.status == 200 {
                return;
            }
            assert_eq!(answer.status, 503);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a new connection is served once one closed");
}
