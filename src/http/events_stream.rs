//! `GET /events`: with `stream=true`, the organization's events as Server-Sent Events, live and
//! resumable; without it, a page like the audit log's.
//!
//! Each subscriber follows one organization on its own cursor (the last org sequence it scanned):
//! it subscribes to the log's live broadcast first, reads the org's history from the log a page
//! at a time up to the head, then takes live events of its org. A live event at or below the
//! cursor is dropped, the next one is sent, and one that skips ahead (or a `Lagged` broadcast: a
//! slow reader) sends the subscriber back to the log. So a subscriber holds at most one page, a
//! client that stops reading is simply not polled, and writers never wait for anyone.
//!
//! Resuming: `Last-Event-ID` (what an `EventSource` sends when it reconnects) wins over
//! `?since_id=` (the URL it reconnects with still carries the original start); the stream then
//! carries exactly the events with a greater id. Without either it starts at the org's head.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use events::Recorded;
use events::event::Plan;
use events::log::Group as LiveGroup;
use futures::{FutureExt, Stream};
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit_log::events_page;
use super::auth::Principal;
use super::event_streams::{Admitted, Full, KEEP_ALIVE, id_only};
use super::event_view::EventView;
use super::extract::{Json, Query};
use super::list::nonempty;
use super::pagination::Page;
use super::problem::Problem;
use crate::audit::page::AuditQuery;
use crate::audit::types::TypeFilter;
use crate::domain::scope::{Group, Need};
use crate::server::conn::Endless;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Events read from the log per step while catching up: the most a subscriber holds.
const PAGE: usize = 256;

/// Most bytes sent in one write: live groups that are already waiting are sent together.
const MAX_BATCH: usize = 256 * 1024;

/// Shortest time between two writes of one live stream. Under a high event rate, a write per
/// committed group per subscriber would be a system call per event per subscriber; waiting
/// this long after the previous write gathers the groups in between into one. At low rates
/// (a group less often than this) nothing waits.
const COALESCE: Duration = Duration::from_millis(10);

/// When a client refused at the stream caps should come back.
const FULL_RETRY_SECS: u64 = 5;

/// The parameters of `GET /events`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `true`: a Server-Sent Events stream (`text/event-stream`) instead of a page.
    #[param(value_type = Option<bool>)]
    pub stream: Option<String>,
    /// Stream only: send the events with an `id` greater than this one. A `Last-Event-ID`
    /// header wins over it. Without either, the stream starts with the next new event.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub since_id: Option<String>,
    /// Exact types or prefixes, comma-separated: `device.registered,key.*`.
    pub event_type: Option<String>,
    /// Page only: page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Page only: `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page only: `time:desc` (default) or `time:asc`.
    pub sort: Option<String>,
    /// Page only: RFC 3339, inclusive.
    pub since: Option<String>,
    /// Page only: RFC 3339, exclusive.
    pub until: Option<String>,
    /// Page only: an actor id (`tok_…`, `dev_…`, `system`, `console`).
    pub actor: Option<String>,
    /// Page only: a subject id (`dev_…`, `tok_…`, `key_…`, `org_…`).
    pub subject: Option<String>,
    /// Page only: `type:device.*+actor:tok_1` terms; `,` = OR.
    pub filter: Option<String>,
    /// Page only: `true` adds each item's audit-chain link.
    #[param(value_type = Option<bool>)]
    pub chain: Option<String>,
}

impl EventsQuery {
    /// The page-only parameters that were given, by name.
    fn page_params(&self) -> Vec<&'static str> {
        [
            ("limit", &self.limit),
            ("cursor", &self.cursor),
            ("sort", &self.sort),
            ("since", &self.since),
            ("until", &self.until),
            ("actor", &self.actor),
            ("subject", &self.subject),
            ("filter", &self.filter),
            ("chain", &self.chain),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect()
    }
}

/// The organization's events: a live SSE stream with `stream=true`, else one page, newest first.
#[utoipa::path(
    get, path = "/events", tag = "events",
    params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Stream only: resume after this event id (wins over `since_id`)")),
    responses(
        (status = 200, description = "Without `stream=true`: one page of events, newest first. With `stream=true`: an endless `text/event-stream`; each message has `id:` (the event's `id`, the organization's sequence), `event:` (its type) and `data:` (the event, as in the audit log); `: keep-alive` comments every 15 s; on a filtered stream a message with only an `id:` may move the client's cursor past events the filter left out",
            content((Page<EventView> = "application/json"), (String = "text/event-stream")),
            headers(("Cache-Control" = String, description = "Stream: `no-cache`"), ("X-Accel-Buffering" = String, description = "Stream: `no`, so that nginx passes events on at once"))),
        (status = 400, description = "A malformed `since_id`, `Last-Event-ID` or `event_type`, an id above the organization's latest, or page parameters on a stream", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `events:read`, or (`plan_required`) the stream needs the workforce plan", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "`cursor_expired`: the events after this id are past the organization's retention; start again without one", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open (on the server or for this organization); retry after `Retry-After`", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Response, Problem> {
    principal.require(Need::read(Group::Events))?;
    let streaming = match q.stream.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::invalid_argument("stream must be true or false")),
    };
    if !streaming {
        return page(&state, &principal, q)
            .await
            .map(IntoResponse::into_response);
    }
    stream(&state, &principal.org_id, &headers, &q).await
}

/// The oldest event id of `org_id` the server still serves (the audit log's retention floor).
pub fn first_retained_id(state: &AppState, org_id: &str) -> Result<u64, Problem> {
    crate::audit::page::first_retained(state, org_id)
}

/// Answers `stream=true`: checks, then the endless response.
async fn stream(
    state: &AppState,
    org_id: &str,
    headers: &HeaderMap,
    q: &EventsQuery,
) -> Result<Response, Problem> {
    let plan = state
        .models()
        .load()
        .state
        .org(org_id)
        .settings()
        .map(|o| o.plan);
    if plan != Some(Plan::Workforce) {
        return Err(Problem::plan_required(
            "the real-time event stream is part of the workforce plan; the audit log \
             (GET /audit-log) serves the same events on every plan",
        ));
    }
    let page_only = q.page_params();
    if !page_only.is_empty() {
        return Err(Problem::invalid_argument(format!(
            "{} cannot be used with stream=true",
            page_only.join(", ")
        )));
    }
    let filter = match nonempty(&q.event_type) {
        Some(t) => TypeFilter::parse(t).map_err(|e| Problem::invalid_argument(e.to_string()))?,
        None => TypeFilter::default(),
    };
    let after = resume_point(headers, q)?;
    // Subscribed before the head is read: whatever commits after it reaches this receiver.
    let live = state.log().subscribe_live();
    let head = org_head(state, org_id).await?;
    let after = match after {
        None => head,
        Some(n) if n > head => {
            return Err(Problem::invalid_argument(format!(
                "event id {n} is above this organization's latest event ({head})"
            )));
        }
        Some(n) if n.saturating_add(1) < first_retained_id(state, org_id)? => {
            return Err(cursor_expired(n));
        }
        Some(n) => n,
    };
    let admitted = state.event_streams().admit(org_id).map_err(|full| {
        let what = match full {
            Full::Server => "the server",
            Full::Org => "this organization",
        };
        Problem::unavailable(
            format!("{what} has as many event streams open as it may; retry shortly"),
            FULL_RETRY_SECS,
        )
    })?;
    let follow = Follow {
        state: state.clone(),
        org_id: org_id.to_owned(),
        filter,
        last: after,
        live,
        keep_alive: state.settings().event_stream_keep_alive,
        _admitted: admitted,
    };
    let mut resp = Response::new(Body::from_stream(follow.run()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.extensions_mut().insert(Endless);
    Ok(resp)
}

/// 410: the events right after `n` are no longer kept.
fn cursor_expired(n: u64) -> Problem {
    Problem::cursor_expired(format!(
        "the events after id {n} are past this organization's retention; reconnect without \
             Last-Event-ID or since_id to follow new events, and read what is left from the \
             audit log"
    ))
}

/// Where the stream starts: after `Last-Event-ID` if sent, else after `since_id`.
fn resume_point(headers: &HeaderMap, q: &EventsQuery) -> Result<Option<u64>, Problem> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value
            .to_str()
            .map_err(|_| Problem::invalid_argument("Last-Event-ID must be an event id"))?;
        return parse_id(text, "Last-Event-ID").map(Some);
    }
    q.since_id
        .as_deref()
        .map(|text| parse_id(text, "since_id"))
        .transpose()
}

/// An event id: decimal digits only (no sign, no spaces), at most `u64::MAX`.
pub fn parse_id(text: &str, what: &str) -> Result<u64, Problem> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::invalid_argument(format!(
            "{what} must be an event id (a non-negative integer)"
        )));
    }
    text.parse()
        .map_err(|_| Problem::invalid_argument(format!("{what} is too large")))
}

/// The organization's latest event id (0 before its first).
async fn org_head(state: &AppState, org_id: &str) -> Result<u64, Problem> {
    let (log, org) = (state.log().clone(), org_id.to_owned());
    tokio::task::spawn_blocking(move || log.org_head(&org))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

/// One subscriber.
struct Follow {
    state: AppState,
    org_id: String,
    filter: TypeFilter,
    /// The last org sequence scanned (sent, or left out by the filter).
    last: u64,
    live: broadcast::Receiver<LiveGroup>,
    keep_alive: Duration,
    /// Holds the subscriber's place under the stream caps until the body is dropped.
    _admitted: Admitted,
}

impl Follow {
    /// The body: history from the log, then live; a gap or a lag goes back to the log. It ends
    /// only when the log closes or fails (the client reconnects where it left off), or when
    /// the server shuts down (the connection layer ends it, see `server::conn::Endless`).
    fn run(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        let Follow {
            state,
            org_id,
            filter,
            mut last,
            mut live,
            keep_alive,
            _admitted,
        } = self;
        async_stream::stream! {
            let _admitted = _admitted;
            let streams = state.event_streams();
            // The last id the client has seen: an event, or an id-only message.
            let mut seen = last;
            let mut tick = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
            let mut last_write = Instant::now() - COALESCE;
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            'follow: loop {
                // History, from the log.
                loop {
                    let page = match read_page(&state, &org_id, last + 1).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::error!(error = %e, "event stream: cannot read the log");
                            break 'follow;
                        }
                    };
                    if page.is_empty() {
                        break;
                    }
                    let mut out = BytesMut::new();
                    for r in &page {
                        if r.org_seq() != last + 1 {
                            // Retention dropped what this subscriber had not read yet; it
                            // reconnects and learns so (410).
                            tracing::warn!(org_seq = r.org_seq(), last, "event stream: gap");
                            break 'follow;
                        }
                        last = r.org_seq();
                        if filter.matches(&r.envelope.event_type) {
                            out.extend_from_slice(&streams.frame(r));
                            seen = last;
                        }
                    }
                    if !out.is_empty() {
                        tick.reset();
                        yield Ok(out.freeze());
                    } else if tick.tick().now_or_never().is_some() {
                        // A long run of history the filter leaves out: the id-only message keeps
                        // the response moving (its write deadline) and the client's cursor too.
                        seen = last;
                        yield Ok(id_only(last));
                    }
                }
                // Live.
                loop {
                    let received = tokio::select! {
                        received = live.recv() => Some(received),
                        _ = tick.tick() => None,
                    };
                    let first = match received {
                        None => {
                            if seen < last {
                                seen = last;
                                yield Ok(id_only(last));
                            } else {
                                yield Ok(Bytes::from_static(KEEP_ALIVE));
                            }
                            continue;
                        }
                        Some(Ok(group)) => group,
                        Some(Err(RecvError::Lagged(_))) => continue 'follow,
                        Some(Err(RecvError::Closed)) => break 'follow,
                    };
                    let since = last_write.elapsed();
                    if since < COALESCE {
                        tokio::time::sleep(COALESCE - since).await;
                    }
                    let mut out = BytesMut::new();
                    let mut back_to_log = false;
                    let mut group = Some(first);
                    while let Some(g) = group.take() {
                        for r in g.iter() {
                            if r.envelope.org_id != org_id || r.org_seq() <= last {
                                continue;
                            }
                            if r.org_seq() != last + 1 {
                                back_to_log = true;
                                break;
                            }
                            last = r.org_seq();
                            if filter.matches(&r.envelope.event_type) {
                                out.extend_from_slice(&streams.frame(r));
                                seen = last;
                            }
                        }
                        if back_to_log || out.len() >= MAX_BATCH {
                            break;
                        }
                        // Groups already waiting go out in the same write.
                        match live.try_recv() {
                            Ok(next) => group = Some(next),
                            Err(TryRecvError::Lagged(_)) => back_to_log = true,
                            Err(TryRecvError::Empty | TryRecvError::Closed) => {}
                        }
                    }
                    if !out.is_empty() {
                        tick.reset();
                        last_write = Instant::now();
                        yield Ok(out.freeze());
                    }
                    if back_to_log {
                        continue 'follow;
                    }
                }
            }
        }
    }
}

/// Up to [`PAGE`] events of `org_id` from sequence `from`, read off the runtime's threads.
async fn read_page(
    state: &AppState,
    org_id: &str,
    from: u64,
) -> Result<Vec<Arc<Recorded>>, String> {
    let (log, org) = (state.log().clone(), org_id.to_owned());
    tokio::task::spawn_blocking(move || log.read_org(&org, from, u64::MAX, PAGE))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Without `stream=true`: the audit log's page (same parameters, same cursors' rules).
async fn page(
    state: &AppState,
    principal: &Principal,
    q: EventsQuery,
) -> Result<Json<Page<EventView>>, Problem> {
    if q.since_id.is_some() {
        return Err(Problem::invalid_argument(
            "since_id needs stream=true; pages take cursor",
        ));
    }
    let audit = AuditQuery {
        limit: q.limit,
        cursor: q.cursor,
        sort: q.sort,
        since: q.since,
        until: q.until,
        event_type: q.event_type,
        actor: q.actor,
        subject: q.subject,
        filter: q.filter,
        chain: q.chain,
    };
    Ok(Json(events_page(state, principal, &audit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_past_retention_is_410_cursor_expired() {
        let p = cursor_expired(7);
        assert_eq!(p.status, http::StatusCode::GONE);
        assert_eq!(p.code, "cursor_expired");
        assert_eq!(p.title, "Cursor expired");
        assert!(p.detail.contains("after id 7"));
    }

    #[test]
    fn event_ids_are_plain_decimal() {
        assert_eq!(parse_id("0", "x").unwrap(), 0);
        assert_eq!(parse_id("18446744073709551615", "x").unwrap(), u64::MAX);
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "0x10",
            "18446744073709551616",
            "abc",
        ] {
            assert!(parse_id(bad, "x").is_err(), "{bad:?}");
        }
    }
}
