//! `GET /events?stream=true`, the Server-Sent Events stream, through the real server: message
//! shape, exact resume across disconnects and restarts, filters, fan-out to a thousand
//! subscribers, a stalled subscriber, tenant isolation, plans, errors, keep-alives and caps.

use std::pin::Pin;
use std::time::Duration;

use events::event::Plan;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use quickztna::state::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    AppOptions, TestApp, assert_problem, header, json, spawn_app, spawn_app_with,
};

/// Upper bound for waits that only guard against a hang.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

type Events = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct Msg {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// An open stream, parsed with a maintained SSE parser.
pub struct Sub {
    events: Events,
}

/// `GET /api/v1/events?stream=true&<query>`, with `Last-Event-ID` if given.
pub async fn open(
    app: &TestApp,
    token: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = app.request_as(
        token,
        Method::GET,
        &format!("/api/v1/events?stream=true&{query}"),
    );
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    tokio::time::timeout(HANG_GUARD, req.send())
        .await
        .expect("the stream's headers arrive")
        .expect("GET /events?stream=true")
}

pub async fn subscribe(app: &TestApp, token: &str, query: &str, last: Option<u64>) -> Sub {
    let last = last.map(|l| l.to_string());
    let resp = open(app, token, query, last.as_deref()).await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    Sub {
        events: Box::pin(resp.bytes_stream().eventsource()),
    }
}

impl Sub {
    /// Parses an open stream's body.
    pub fn of(resp: reqwest::Response) -> Sub {
        Sub {
            events: Box::pin(resp.bytes_stream().eventsource()),
        }
    }

    /// The next message; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Msg> {
        let e = tokio::time::timeout(HANG_GUARD, self.events.next())
            .await
            .expect("a message within the hang guard")?
            .ok()?;
        Some(Msg {
            id: e.id.parse().expect("a numeric id"),
            event: e.event,
            data: serde_json::from_str(&e.data).expect("JSON data"),
        })
    }

    /// Messages until the one with id `last` (inclusive).
    pub async fn until(&mut self, last: u64) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await.expect("the stream goes on");
            let id = m.id;
            out.push(m);
            if id >= last {
                return out;
            }
        }
    }
}

/// The organization's latest event id.
pub fn org_head(app: &TestApp, org_id: &str) -> u64 {
    app.state.log().org_head(org_id).expect("org head")
}

/// Writes `n` events (`token.created`) in the owner's organization, 32 at a time.
pub async fn write(app: &TestApp, n: usize) {
    write_as(app, &app.token, n).await;
}

pub async fn write_as(app: &TestApp, token: &str, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let resp = app
                .request_as(token, Method::POST, "/api/v1/tokens")
                .json(&json!({"scopes": ["read"], "description": format!("t{i}"), "expires_in": "2h"}))
                .send()
                .await
                .expect("POST /tokens");
            assert_eq!(resp.status(), 201);
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

pub fn ids(msgs: &[Msg]) -> Vec<u64> {
    msgs.iter().map(|m| m.id).collect()
}

pub fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_the_event_view_with_its_org_sequence_as_id_and_its_type_as_event() {
    let app = spawn_app().await;
    let resp = open(&app, &app.token, "since_id=0", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header(&resp, "x-accel-buffering").as_deref(), Some("no"));
    let mut sub = Sub {
        events: Box::pin(resp.bytes_stream().eventsource()),
    };
    write(&app, 5).await;
    let head = org_head(&app, &app.org_id);
    let msgs = sub.until(head).await;
    assert_eq!(
        ids(&msgs),
        range(1, head),
        "history then live, from the first event"
    );
    // The same events as the page serves, newest first there.
    let page = json(app.get("/api/v1/events?limit=200").await).await;
    let mut items = page["items"].as_array().expect("items").clone();
    items.reverse();
    assert_eq!(items.len(), msgs.len());
    for (m, item) in msgs.iter().zip(&items) {
        assert_eq!(m.data, *item, "data is the event view");
        assert_eq!(m.data["id"], m.id);
        assert_eq!(m.data["type"], m.event.as_str());
        assert_eq!(m.data["org_id"], app.org_id.as_str());
    }
    assert_eq!(msgs.last().unwrap().event, "token.created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cursor_the_stream_starts_at_the_head() {
    let app = spawn_app().await;
    write(&app, 3).await;
    let head = org_head(&app, &app.org_id);
    let mut sub = subscribe(&app, &app.token, "", None).await;
    write(&app, 2).await;
    assert_eq!(ids(&sub.until(head + 2).await), range(head + 1, head + 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_is_exact_across_a_disconnect_and_a_server_restart() {
    let app = spawn_app().await;
    write(&app, 20).await;
    let mut sub = subscribe(&app, &app.token, "since_id=0", None).await;
    let first = sub.until(10).await;
    drop(sub);
    write(&app, 20).await;
    // Last-Event-ID wins over since_id (an EventSource reconnects to its first URL).
    let mut sub = subscribe(&app, &app.token, "since_id=3", Some(10)).await;
    let head = org_head(&app, &app.org_id);
    let second = sub.until(head).await;
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(ids(&all), range(1, head), "no gap, no duplicate");

    // A stream open at shutdown ends, so the server stops instead of waiting for it.
    let mut open_at_restart = subscribe(&app, &app.token, "", None).await;
    let app = tokio::time::timeout(HANG_GUARD, app.restart())
        .await
        .expect("the restart is not held up by an open stream");
    assert!(open_at_restart.next().await.is_none(), "the stream ended");
    write(&app, 10).await;
    let mut sub = subscribe(&app, &app.token, &format!("since_id={}", head - 5), None).await;
    let after = org_head(&app, &app.org_id);
    assert_eq!(ids(&sub.until(after).await), range(head - 4, after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_type_filters_the_stream_and_a_bad_filter_is_a_400() {
    let app = spawn_app().await;
    write(&app, 3).await;
    let mut sub = subscribe(
        &app,
        &app.token,
        "since_id=0&event_type=org.*,token.created",
        None,
    )
    .await;
    let head = org_head(&app, &app.org_id);
    let msgs = sub.until(head).await;
    assert!(
        msgs.iter()
            .all(|m| m.event.starts_with("org.") || m.event == "token.created")
    );
    let mut only = subscribe(&app, &app.token, "since_id=0&event_type=org.created", None).await;
    let m = only.next().await.expect("org.created");
    assert_eq!(m.event, "org.created");
    assert_eq!(m.data["id"], m.id);
    for bad in ["nope", "device.*x", "", "token.created,,key.*"] {
        let q = format!("event_type={bad}");
        let resp = open(&app, &app.token, &q, None).await;
        if bad.is_empty() {
            assert_eq!(resp.status(), 200, "an empty filter is no filter");
            continue;
        }
        assert_problem(resp, 400, "invalid_argument").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_future_cursors_are_400_and_page_parameters_do_not_stream() {
    let app = spawn_app().await;
    let head = org_head(&app, &app.org_id);
    for q in [
        "since_id=abc",
        "since_id=-1",
        "since_id=1.5",
        "since_id=99999999999999999999999",
    ] {
        assert_problem(
            open(&app, &app.token, q, None).await,
            400,
            "invalid_argument",
        )
        .await;
    }
    // (Surrounding spaces are not part of a header's value.)
    for id in ["x", "", "3a", "-2"] {
        let resp = open(&app, &app.token, "", Some(id)).await;
        assert_problem(resp, 400, "invalid_argument").await;
    }
    let above = format!("since_id={}", head + 1);
    let body = assert_problem(
        open(&app, &app.token, &above, None).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("above"), "{body}");
    let resp = open(&app, &app.token, "", Some(&(head + 1).to_string())).await;
    assert_problem(resp, 400, "invalid_argument").await;
    for q in ["limit=5", "cursor=abc", "sort=time:asc"] {
        assert_problem(
            open(&app, &app.token, q, None).await,
            400,
            "invalid_argument",
        )
        .await;
    }
    let resp = app.get("/api/v1/events?stream=yes").await;
    assert_problem(resp, 400, "invalid_argument").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_needs_events_read_and_the_workforce_plan() {
    let app = spawn_app().await;
    let devices = app.token_with(&["devices:read"]).await;
    assert_problem(
        open(&app, &devices, "", None).await,
        403,
        "permission_denied",
    )
    .await;
    let events = app.token_with(&["events:read"]).await;
    let mut sub = subscribe(&app, &events, "since_id=0", None).await;
    assert_eq!(sub.next().await.expect("a message").id, 1);
    for plan in [Plan::Free, Plan::Business] {
        let app = spawn_app_with(AppOptions {
            plan,
            ..AppOptions::default()
        })
        .await;
        let body =
            assert_problem(open(&app, &app.token, "", None).await, 403, "plan_required").await;
        assert!(body["detail"].as_str().unwrap().contains("workforce"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_organizations_own_events_reach_its_stream() {
    let app = spawn_app().await;
    let (other_org, other_token) = app.second_org("globex").await;
    let mut ours = subscribe(&app, &app.token, "since_id=0", None).await;
    let mut theirs = subscribe(&app, &other_token, "since_id=0", None).await;
    write_as(&app, &other_token, 10).await;
    write(&app, 10).await;
    write_as(&app, &other_token, 10).await;
    let our_head = org_head(&app, &app.org_id);
    let their_head = org_head(&app, &other_org);
    let mine = ours.until(our_head).await;
    assert_eq!(ids(&mine), range(1, our_head));
    assert!(mine.iter().all(|m| m.data["org_id"] == app.org_id.as_str()));
    let other = theirs.until(their_head).await;
    assert_eq!(ids(&other), range(1, their_head));
    assert!(other.iter().all(|m| m.data["org_id"] == other_org.as_str()));
    // Ids are per organization: a cursor above the other's head is simply above ours.
    let q = format!("since_id={}", our_head.max(their_head) + 1);
    assert_problem(
        open(&app, &other_token, &q, None).await,
        400,
        "invalid_argument",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_keep_alives_outlives_the_write_timeout_and_filtered_ones_move_the_id()
{
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.connections.response_write_timeout = Duration::from_secs(2);
            s.event_stream_keep_alive = Duration::from_millis(300);
        }),
        ..AppOptions::default()
    })
    .await;
    let resp = open(&app, &app.token, "since_id=0&event_type=key.*", None).await;
    assert_eq!(resp.status(), 200);
    let mut bytes = resp.bytes_stream();
    let mut text = String::new();
    write(&app, 2).await;
    let head = org_head(&app, &app.org_id);
    let started = tokio::time::Instant::now();
    // Longer than the write timeout: the keep-alives keep the stream moving.
    while started.elapsed() < Duration::from_secs(4) {
        let chunk = tokio::time::timeout(HANG_GUARD, bytes.next())
            .await
            .expect("a chunk")
            .expect("the stream goes on")
            .expect("bytes");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(text.contains(": keep-alive\n\n"), "{text}");
    // No key events: the filter left every event out, and an id-only message says so.
    assert!(text.contains(&format!("id: {head}\n\n")), "{text}");
    assert!(!text.contains("data:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_organizations_cap_get_503_with_retry_after() {
    let app = spawn_app_with(AppOptions {
        settings: Some(|s: &mut Settings| {
            s.event_streams.per_org = 2;
        }),
        ..AppOptions::default()
    })
    .await;
    let a = subscribe(&app, &app.token, "", None).await;
    let _b = subscribe(&app, &app.token, "", None).await;
    let resp = open(&app, &app.token, "", None).await;
    assert!(header(&resp, "retry-after").is_some());
    assert_problem(resp, 503, "unavailable").await;
    drop(a);
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let resp = open(&app, &app.token, "", None).await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed stream frees its place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stream_true_events_is_a_page_newest_first() {
    let app = spawn_app().await;
    write(&app, 4).await;
    let head = org_head(&app, &app.org_id);
    let page = json(app.get("/api/v1/events?limit=3").await).await;
    let got: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![head, head - 1, head - 2]);
    let devices = app.token_with(&["devices:read"]).await;
    let resp = app
        .request_as(&devices, Method::GET, "/api/v1/events")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;
}

/// The connection of a stream ends cleanly when read to its end: a raw request sees the
/// chunked body's terminator once the server shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_a_complete_response() {
    let mut app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let req = format!(
        "GET /api/v1/events?stream=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.expect("status line");
    assert_eq!(&head, b"HTTP/1.1 200");
    tokio::time::timeout(HANG_GUARD, app.stop())
        .await
        .expect("shutdown does not wait for the stream");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("read to the end");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}
