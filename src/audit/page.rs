//! One page of an organization's audit log: the query language of `GET /audit-log` and
//! `GET /events` turned into an index query over a range of sequence numbers, and the page.
//!
//! The cursor is the last served event's `id` (its organization sequence number), sealed with
//! the query it belongs to; with `chain=true` it also carries that event's chain hash, so the
//! next page links on without reading the events before it.

use events::query::Query;
use events::store::Direction;
use serde::Deserialize;
use utoipa::IntoParams;

use super::chain::{self, GENESIS};
use super::digests::link_run;
use super::types::TypeFilter;
use crate::http::event_view::EventView;
use crate::http::filter::{Filter, Sort};
use crate::http::list::nonempty;
use crate::http::pagination::{CursorPosition, Page, PageParams};
use crate::http::problem::Problem;
use crate::state::AppState;

/// Parameters of `GET /audit-log` (and of `GET /events` without `stream=true`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `time:desc` (default: most recent first) or `time:asc`; `id` is the same order.
    pub sort: Option<String>,
    /// Events recorded at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Events recorded before this time (RFC 3339).
    pub until: Option<String>,
    /// Exact types or prefixes, comma-separated: `device.registered`, `device.*,key.*`.
    pub event_type: Option<String>,
    /// Who caused the events: a token id (`tok_…`), a device id (`dev_…`), `system` or
    /// `console`.
    pub actor: Option<String>,
    /// What the events are about: a device, key, token or organization id.
    pub subject: Option<String>,
    /// `key:value` terms; `+` or space = AND, `,` = OR. Keys: `type` (as `event_type`),
    /// `actor`, `subject`, `since`, `until`.
    pub filter: Option<String>,
    /// `true` adds each event's link in the organization's audit chain (`chain`); only without
    /// type, actor and subject filters, so that the events are a contiguous run.
    #[param(value_type = Option<bool>)]
    pub chain: Option<String>,
}

const FILTER_KEYS: &[&str] = &["type", "event_type", "actor", "subject", "since", "until"];
const SORT_FIELDS: &[&str] = &["time", "id"];
const MAX_VALUE_LEN: usize = 256;

/// A parsed audit query.
struct Plan {
    query: Query,
    since: Option<i64>,
    until: Option<i64>,
    descending: bool,
    chain: bool,
    limit: usize,
    after: Option<CursorPosition>,
    binding: String,
}

fn parse_time(name: &str, value: &str) -> Result<i64, Problem> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .map_err(|e| {
            Problem::invalid_argument(format!(
                "{name} '{}' is not an RFC 3339 time ({e}); e.g. 2026-01-01T00:00:00Z",
                crate::domain::text::echo(value)
            ))
        })
}

fn check_value(name: &str, value: &str) -> Result<(), Problem> {
    if value.is_empty() || value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(Problem::invalid_argument(format!(
            "{name} must be 1–{MAX_VALUE_LEN} printable characters"
        )));
    }
    Ok(())
}

fn types_query(value: &str) -> Result<Option<Query>, Problem> {
    let f = TypeFilter::parse(value).map_err(|e| Problem::invalid_argument(e.to_string()))?;
    Ok(f.query())
}

fn actor_query(value: &str) -> Result<Query, Problem> {
    check_value("actor", value)?;
    Ok(Query::Actor(value.to_owned()))
}

/// A subject id as its stream: `dev_…` is `device:dev_…`; `device:dev_…` is accepted too.
fn subject_query(value: &str) -> Result<Query, Problem> {
    check_value("subject", value)?;
    let id = value.split_once(':').map_or(value, |(_, id)| id);
    let kind = match id.split_once('_').map(|(p, _)| p) {
        Some("dev") => "device",
        Some("key") => "key",
        Some("tok") => "token",
        Some("org") => "org",
        Some("wh") => "webhook",
        _ => {
            return Err(Problem::invalid_argument(format!(
                "subject '{}' is not a device, key, token, webhook or organization id",
                crate::domain::text::echo(value)
            )));
        }
    };
    Ok(Query::Stream(format!("{kind}:{id}")))
}

impl Plan {
    fn parse(
        state: &AppState,
        org_id: &str,
        resource: &str,
        q: &AuditQuery,
    ) -> Result<Plan, Problem> {
        let page = PageParams::from_query(q.limit.as_deref(), nonempty(&q.cursor))?;
        let sort = Sort::parse(nonempty(&q.sort).unwrap_or("time:desc"), SORT_FIELDS)?;
        let mut since = nonempty(&q.since)
            .map(|v| parse_time("since", v))
            .transpose()?;
        let mut until = nonempty(&q.until)
            .map(|v| parse_time("until", v))
            .transpose()?;
        let mut parts = Vec::new();
        if let Some(v) = nonempty(&q.event_type) {
            parts.extend(types_query(v)?);
        }
        if let Some(v) = nonempty(&q.actor) {
            parts.push(actor_query(v)?);
        }
        if let Some(v) = nonempty(&q.subject) {
            parts.push(subject_query(v)?);
        }
        let filter = Filter::parse(nonempty(&q.filter).unwrap_or(""), FILTER_KEYS)?;
        for clause in &filter.clauses {
            let is_time = |k: &str| k == "since" || k == "until";
            if clause.iter().any(|t| is_time(&t.key)) {
                let [term] = clause.as_slice() else {
                    return Err(Problem::invalid_argument(
                        "since and until cannot be ORed with other terms in filter",
                    ));
                };
                let t = parse_time(&term.key, &term.value)?;
                if term.key == "since" {
                    since = Some(since.map_or(t, |s| s.max(t)));
                } else {
                    until = Some(until.map_or(t, |u| u.min(t)));
                }
                continue;
            }
            let mut alternatives = Vec::new();
            for term in clause {
                match term.key.as_str() {
                    "type" | "event_type" => {
                        alternatives.push(types_query(&term.value)?.unwrap_or(Query::All))
                    }
                    "actor" => alternatives.push(actor_query(&term.value)?),
                    _ => alternatives.push(subject_query(&term.value)?),
                }
            }
            parts.push(Query::Or(alternatives));
        }
        // An empty `chain=` is not a boolean: a 400 like any other (the schema says boolean).
        let chain = match q.chain.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Problem::invalid_argument(format!(
                    "chain must be true or false, not '{}'",
                    crate::domain::text::echo(other)
                )));
            }
        };
        if chain && !parts.is_empty() {
            return Err(Problem::invalid_argument(
                "chain=true needs every event in the range: it cannot be combined with \
                 event_type, actor or subject filters",
            ));
        }
        let query = match parts.len() {
            0 => Query::All,
            1 => parts.pop().expect("one part"),
            _ => Query::And(parts),
        };
        let binding = format!(
            "{resource}|{query:?}|{since:?}|{until:?}|{}|{chain}",
            sort.descending
        );
        let after = match &page.cursor {
            Some(c) => Some(state.cursor_key().open(c, org_id, &binding)?),
            None => None,
        };
        Ok(Plan {
            query,
            since,
            until,
            descending: sort.descending,
            chain,
            limit: page.limit,
            after,
            binding,
        })
    }
}

/// The first sequence number of `org_id` that is still served: events older than the
/// organization's audit retention are not (see [`crate::audit::retention`]).
pub fn first_retained(state: &AppState, org_id: &str) -> Result<u64, Problem> {
    state
        .first_retained_seq(org_id, events::now_micros())
        .map_err(Problem::internal)
}

/// One page of `org_id`'s audit log. `resource` binds cursors to the endpoint.
pub async fn page(
    state: &AppState,
    org_id: &str,
    resource: &'static str,
    q: &AuditQuery,
) -> Result<Page<EventView>, Problem> {
    let plan = Plan::parse(state, org_id, resource, q)?;
    let log = state.log().clone();
    let (org, st) = (org_id.to_owned(), state.clone());
    let (records, plan) = tokio::task::spawn_blocking(move || {
        let last_served = match &plan.after {
            Some(p) => Some(p.sort_key.parse::<u64>().map_err(|_| bad_cursor())?),
            None => None,
        };
        // A cursor already lies inside the time window, so the bound behind it needs no search
        // (an export walking forward from `since` searches for it once, not on every page).
        let mut from = first_retained(&st, &org)?;
        if let Some(since) = plan.since
            && (last_served.is_none() || plan.descending)
        {
            from = from.max(
                log.org_seq_at_time(&org, since)
                    .map_err(Problem::internal)?,
            );
        }
        let mut to = log.org_last_seq(&org).map_err(Problem::internal)?;
        if let Some(until) = plan.until
            && (last_served.is_none() || !plan.descending)
        {
            let first_after = log
                .org_seq_at_time(&org, until)
                .map_err(Problem::internal)?;
            to = to.min(first_after.saturating_sub(1));
        }
        let direction = if plan.descending {
            if let Some(l) = last_served {
                to = to.min(l.saturating_sub(1));
            }
            Direction::Backward
        } else {
            if let Some(l) = last_served {
                // Walking forward, the events right after the cursor have aged out: the client
                // would skip them unknowingly (and a chain walk would lose its link). Like the
                // SSE stream, say so.
                if from > l.saturating_add(1) {
                    return Err(Problem::cursor_expired(format!(
                        "the events after id {l} are past this organization's retention; \
                         start again without a cursor"
                    )));
                }
                from = from.max(l.saturating_add(1));
            }
            Direction::Forward
        };
        let records = log
            .query_org(&org, &plan.query, from, to, direction, plan.limit + 1)
            .map_err(Problem::internal)?;
        Ok::<_, Problem>((records, plan))
    })
    .await
    .map_err(Problem::internal)??;
    let more = records.len() > plan.limit;
    let mut items: Vec<EventView> = records
        .iter()
        .take(plan.limit)
        .map(|r| EventView::of(r))
        .collect();
    let mut last_hash = None;
    if plan.chain && !items.is_empty() {
        let lowest = items.iter().map(|v| v.id).min().unwrap_or(1);
        // The cursor's hash links on only if this page starts right after it.
        let carried = match (&plan.after, plan.descending) {
            (Some(p), false) if p.sort_key.parse::<u64>().ok() == Some(lowest - 1) => {
                chain::parse_hash(&p.id)
            }
            _ => None,
        };
        let before = match carried {
            Some(h) => h,
            None => state
                .audit_chain_hash(org_id, lowest - 1)
                .await
                .map_err(Problem::internal)?
                .unwrap_or(GENESIS),
        };
        last_hash = Some(link_run(&mut items, before));
    }
    let next_cursor = match items.last() {
        Some(last) if more => {
            let id = match (last_hash, plan.descending) {
                (Some(h), false) => hex::encode(h),
                _ => "-".to_owned(),
            };
            let pos = CursorPosition {
                sort_key: format!("{:020}", last.id),
                id,
            };
            Some(state.cursor_key().seal(org_id, &plan.binding, &pos))
        }
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

fn bad_cursor() -> Problem {
    Problem::invalid_argument("the cursor is not valid for this list")
}

/// The organization's events about one subject stream, newest first, within retention: a
/// device's audit history.
pub async fn history(
    state: &AppState,
    org_id: &str,
    stream: &str,
    limit: usize,
) -> Result<Vec<EventView>, Problem> {
    let (st, org, stream) = (state.clone(), org_id.to_owned(), stream.to_owned());
    tokio::task::spawn_blocking(move || {
        let from = first_retained(&st, &org)?;
        let to = st.log().org_last_seq(&org).map_err(Problem::internal)?;
        let records = st
            .log()
            .query_org(
                &org,
                &Query::Stream(stream),
                from,
                to,
                Direction::Backward,
                limit,
            )
            .map_err(Problem::internal)?;
        Ok(records.iter().map(|r| EventView::of(r)).collect())
    })
    .await
    .map_err(Problem::internal)?
}

/// The organization's event `id_or_event_id` (its sequence number, or its ULID `event_id`)
/// with its chain link, if it exists and is within retention.
pub async fn one(
    state: &AppState,
    org_id: &str,
    id_or_event_id: &str,
) -> Result<EventView, Problem> {
    let not_found = || {
        Problem::not_found(format!(
            "no event '{}'",
            crate::domain::text::echo(id_or_event_id)
        ))
    };
    let wanted = if id_or_event_id.bytes().all(|b| b.is_ascii_digit()) && !id_or_event_id.is_empty()
    {
        Wanted::Seq(id_or_event_id.parse::<u64>().map_err(|_| not_found())?)
    } else {
        // Not a ULID: no event has it (a 404 like any unknown id, not a 400, so a foreign
        // event id and a made-up one answer alike).
        let ulid = ulid::Ulid::from_string(id_or_event_id).map_err(|_| not_found())?;
        Wanted::Ulid(ulid.to_bytes())
    };
    let (st, org) = (state.clone(), org_id.to_owned());
    let found = tokio::task::spawn_blocking(move || {
        let from = first_retained(&st, &org)?;
        let record = match wanted {
            Wanted::Seq(seq) => st.log().org_record(&org, seq),
            Wanted::Ulid(id) => find_by_event_id(st.log(), &org, id),
        }
        .map_err(Problem::internal)?;
        Ok::<_, Problem>(record.filter(|r| r.envelope.org_seq >= from))
    })
    .await
    .map_err(Problem::internal)??;
    let record = found.ok_or_else(not_found)?;
    let mut view = [EventView::of(&record)];
    let before = state
        .audit_chain_hash(org_id, record.envelope.org_seq - 1)
        .await
        .map_err(Problem::internal)?
        .unwrap_or(GENESIS);
    link_run(&mut view, before);
    let [view] = view;
    Ok(view)
}

enum Wanted {
    Seq(u64),
    Ulid([u8; 16]),
}

/// Records searched near an event id's time when the binary search misses (only after the
/// clock went back across a restart, which can break the ids' order).
const NEARBY: usize = 2048;

/// Event ids are minted in log order by a monotonic generator, so they increase with the
/// sequence number: a binary search finds one in O(log n) reads. If the clock went back across
/// a restart, the search can miss; the records around the id's own time are searched then.
fn find_by_event_id(
    log: &events::Log,
    org: &str,
    id: [u8; 16],
) -> Result<Option<std::sync::Arc<events::Recorded>>, events::Error> {
    let lo = log.org_partition_point(org, |r| r.envelope.event_id < id)?;
    if let Some(r) = log.org_record(org, lo)?
        && r.envelope.event_id == id
    {
        return Ok(Some(r));
    }
    let millis = ulid::Ulid::from_bytes(id).timestamp_ms() as i64;
    let start = log.org_seq_at_time(org, (millis - 1000) * 1000)?;
    // Only the records of the id's own second: a made-up id costs a page of reads, not more.
    let until = (millis + 1000).saturating_mul(1000);
    let nearby = log.read_org(org, start, u64::MAX, NEARBY)?;
    Ok(nearby
        .into_iter()
        .take_while(|r| r.envelope.recorded_at <= until)
        .find(|r| r.envelope.event_id == id))
}
