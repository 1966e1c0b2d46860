//! A real HTTP receiver for webhook tests: an axum server on 127.0.0.1 that records every
//! request (headers and body) and answers as the test scripts it: a queue of statuses (then
//! 200), an optional delay per request, and `Retry-After` on demand.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it answered (or was about to, when the sender gave up first).
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Script {
    statuses: VecDeque<u16>,
    delay: Duration,
    /// Requests still to be answered only after `slow_delay`.
    slow_left: usize,
    slow_delay: Duration,
    /// The body of every answer (default `ok`).
    body: Option<String>,
    retry_after: Option<String>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A receiver on `addr` (e.g. the port of one that was stopped: a receiver back up).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(receive).with_state(script.clone());
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await;
        });
        Receiver { addr, script, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests with these statuses, in order (then 200), instead of what
    /// was scripted before.
    pub fn answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().statuses = statuses.iter().copied().collect();
    }

    pub fn delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    /// Answers the next `n` requests only after `delay` (then as scripted otherwise).
    pub fn slow_first(&self, n: usize, delay: Duration) {
        let mut s = self.script.lock().unwrap();
        s.slow_left = n;
        s.slow_delay = delay;
    }

    /// Answers with this body.
    pub fn body(&self, body: &str) {
        self.script.lock().unwrap().body = Some(body.to_owned());
    }

    pub fn retry_after(&self, value: &str) {
        self.script.lock().unwrap().retry_after = Some(value.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// The requests it answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Waits (up to 20 s) until `done` holds for what it received.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        for _ in 0..400 {
            if done(&self.received()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the receiver got {:#?}", self.received());
    }

    /// Stops listening and closes its idle connections: connections are refused from then on.
    pub async fn stop(&self) {
        self.stop.notify_one();
        // Until the listener is closed, a connection could still be accepted.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the receiver on {} did not stop", self.addr);
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (delay, status, retry_after, answer) = {
        let mut s = script.lock().unwrap();
        let status = s.statuses.pop_front().unwrap_or(200);
        let delay = if s.slow_left > 0 {
            s.slow_left -= 1;
            s.slow_delay
        } else {
            s.delay
        };
        let answer = s.body.clone().unwrap_or_else(|| "ok".into());
        // Recorded as it arrives: a sender that gives up waiting drops the connection, and
        // this handler with it.
        s.received.push(Received {
            headers,
            body,
            status,
        });
        (delay, status, s.retry_after.clone(), answer)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut out = HeaderMap::new();
    if let Some(v) = retry_after {
        out.insert("retry-after", v.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out, answer)
}
