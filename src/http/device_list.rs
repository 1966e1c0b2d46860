//! `GET /devices`: filters and sorts served from the organization's device indexes, and whole
//! answers cached as bytes.
//!
//! **Plan.** Each filter clause (an OR of terms) whose terms all have an index (`tag`, `os`,
//! `owner`, `hostname`, `ephemeral:true`) can drive the page; the one with the fewest candidates
//! does, and the other clauses are checked on each candidate. So a filter matching nothing costs
//! a map lookup, and a page in the default order costs the candidates it skips plus `limit`.
//! Without a driving clause the page walks the organization's creation or hostname order from
//! the cursor. What is left as a sort after collecting: `sort=hostname` or `sort=last_seen`
//! under a driving clause (O(its candidates)), and `sort=last_seen` without one (O(fleet)):
//! last-seen times are not events, so they have no index in the read models.
//!
//! **Cache.** An answer depends on the organization's read-model version, the heartbeat store's
//! generation, the query and the clock (a device goes offline two minutes after its last
//! heartbeat, a key expires at a given time). The cache keys on the first three and stores with
//! each answer the first instant the clock would change it, so no entry is ever served stale and
//! none expires on a timer. See [`super::page_cache`].

use axum::body::Bytes;
use projections::OrgView;
use projections::device_index::{ByCreated, IdSet, OrgDevices, seek};
use projections::devices::Device;

use super::devices::{DeviceView, ONLINE_WITHIN_MICROS, view};
use super::filter::Term;
use super::list::Listing;
use super::pagination::{CursorPosition, Page};
use super::problem::Problem;
use crate::domain::devices::Tag;
use crate::state::AppState;

/// One filter term, parsed once per request.
pub enum Cond {
    Tag(String),
    Os(String),
    Owner(String),
    Hostname(String),
    HostnamePrefix(String),
    Before(i64),
    After(i64),
    Ephemeral(bool),
}

impl Cond {
    pub fn parse(term: &Term) -> Result<Cond, Problem> {
        let bad = |expected: &str| {
            Problem::invalid_argument(format!(
                "filter '{}:{}': expected {expected}",
                term.key, term.value
            ))
        };
        let time = || {
            term.value
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_microsecond())
                .map_err(|_| bad("an RFC 3339 time such as 2026-01-01T00:00:00Z"))
        };
        let v = term.value.as_str();
        Ok(match term.key.as_str() {
            "tag" => Cond::Tag(
                Tag::parse_lenient(v)
                    .map_err(|_| bad("a tag such as tag:production"))?
                    .into_string(),
            ),
            "os" => Cond::Os(v.to_ascii_lowercase()),
            "owner" => Cond::Owner(v.to_owned()),
            "hostname" => match v.strip_suffix('*') {
                Some(prefix) => Cond::HostnamePrefix(prefix.to_ascii_lowercase()),
                None => Cond::Hostname(v.to_ascii_lowercase()),
            },
            "last_seen_before" => Cond::Before(time()?),
            "last_seen_after" => Cond::After(time()?),
            "ephemeral" => Cond::Ephemeral(match v {
                "true" => true,
                "false" => false,
                _ => return Err(bad("true or false")),
            }),
            other => return Err(Problem::internal(format!("unhandled filter key {other}"))),
        })
    }

    fn matches(&self, d: &Device, last_seen: i64) -> bool {
        match self {
            Cond::Tag(t) => d.tags.iter().any(|x| x == t),
            Cond::Os(os) => d.os.eq_ignore_ascii_case(os),
            Cond::Owner(o) => d
                .owner
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(o)),
            Cond::Hostname(h) => d.hostname == *h,
            Cond::HostnamePrefix(p) => d.hostname.starts_with(p.as_str()),
            Cond::Before(t) => last_seen < *t,
            Cond::After(t) => last_seen > *t,
            Cond::Ephemeral(e) => d.ephemeral == *e,
        }
    }

    /// The devices satisfying this term, from an index; `None` when it has no index.
    fn candidates<'a>(&self, org: OrgView<'a>, index: &'a OrgDevices) -> Option<Vec<ByCreated>> {
        let set = |s: Option<&'a IdSet>| -> Vec<ByCreated> {
            s.map(|s| s.iter().cloned().collect()).unwrap_or_default()
        };
        let created = |(_, id): &(String, String)| -> Option<ByCreated> {
            // The hostname set holds only live devices of this organization; look up the
            // creation time to merge them into creation order.
            org.live_device(id).map(|d| (d.created_at, id.clone()))
        };
        Some(match self {
            Cond::Tag(t) => set(index.tagged(t)),
            Cond::Os(os) => set(index.with_os(os)),
            Cond::Owner(o) => set(index.owned_by(o)),
            Cond::Ephemeral(true) => index.ephemeral.iter().cloned().collect(),
            Cond::Hostname(h) => index.hostname_is(h).filter_map(created).collect(),
            Cond::HostnamePrefix(p) => index.hostname_prefix(p).filter_map(created).collect(),
            Cond::Ephemeral(false) | Cond::Before(_) | Cond::After(_) => return None,
        })
    }

    /// How many devices [`Cond::candidates`] would yield, without collecting them where the
    /// index knows its size; `None` when it has no index.
    fn estimate(&self, index: &OrgDevices) -> Option<usize> {
        let len = |s: Option<&IdSet>| s.map_or(0, |s| s.len());
        Some(match self {
            Cond::Tag(t) => len(index.tagged(t)),
            Cond::Os(os) => len(index.with_os(os)),
            Cond::Owner(o) => len(index.owned_by(o)),
            Cond::Ephemeral(true) => index.ephemeral.len(),
            Cond::Hostname(h) => index.hostname_is(h).count(),
            // Counting a prefix walks it: bounded by the fleet, and only when it is asked for.
            Cond::HostnamePrefix(p) => index.hostname_prefix(p).count(),
            Cond::Ephemeral(false) | Cond::Before(_) | Cond::After(_) => return None,
        })
    }
}

/// The devices of the clause with the fewest candidates, in creation order; `None` when no
/// clause can be answered from the indexes alone.
fn driver(org: OrgView<'_>, index: &OrgDevices, conds: &[Vec<Cond>]) -> Option<IdSet> {
    let best = conds
        .iter()
        .filter_map(|clause| {
            clause
                .iter()
                .map(|c| c.estimate(index))
                .sum::<Option<usize>>()
                .map(|n| (n, clause))
        })
        .min_by_key(|(n, _)| *n)?;
    let mut union = IdSet::new();
    for cond in best.1 {
        union.extend(cond.candidates(org, index).unwrap_or_default());
    }
    Some(union)
}

/// One page of the organization's devices as `application/json` bytes, and the first instant
/// at which the clock alone would change them.
pub fn render(
    state: &AppState,
    org: OrgView<'_>,
    list: &Listing,
    conds: &[Vec<Cond>],
    now: i64,
) -> Result<(Bytes, i64), Problem> {
    let heartbeats = state.heartbeats();
    let last_seen = |d: &Device| heartbeats.last_seen(&d.id).unwrap_or(d.created_at);
    let wanted = |d: &&Device| {
        conds.iter().all(|clause| {
            let seen = last_seen(d);
            clause.iter().any(|c| c.matches(d, seen))
        })
    };
    let Some(index) = org.device_index() else {
        return finish(state, Vec::new(), None, now);
    };
    let driving = driver(org, index, conds);
    let descending = list.sort.descending;
    let (items, next) = match (list.sort.field.as_str(), &driving) {
        ("created_at", _) => {
            let after = match &list.after {
                Some(pos) => Some((
                    pos.sort_key
                        .parse::<i64>()
                        .map_err(|_| Problem::invalid_argument("cursor is malformed"))?,
                    pos.id.clone(),
                )),
                None => None,
            };
            let set = driving.as_ref().unwrap_or(&index.by_created);
            let rows = seek(set, after, descending).filter_map(|(_, id)| org.live_device(id));
            take(rows.filter(wanted), list.limit, |d| CursorPosition {
                sort_key: format!("{:020}", d.created_at.max(0)),
                id: d.id.clone(),
            })
        }
        ("hostname", None) => {
            let after = list
                .after
                .as_ref()
                .map(|p| (p.sort_key.clone(), p.id.clone()));
            let rows = seek(&index.by_hostname, after, descending)
                .filter_map(|(_, id)| org.live_device(id));
            take(rows.filter(wanted), list.limit, |d| CursorPosition {
                sort_key: d.hostname.clone(),
                id: d.id.clone(),
            })
        }
        (field, _) => {
            // Sorted after collecting: the driving clause's candidates, or the whole fleet for
            // `last_seen` (see the module documentation).
            let rows: Vec<&Device> = match &driving {
                Some(set) => set
                    .iter()
                    .filter_map(|(_, id)| org.live_device(id))
                    .filter(wanted)
                    .collect(),
                None => org.devices().filter(wanted).collect(),
            };
            let sort_key = |d: &&Device| match field {
                "hostname" => d.hostname.clone(),
                _ => format!("{:020}", last_seen(d).max(0)),
            };
            let page = list.page(state, rows, sort_key, |d| &d.id, |d| d);
            return finish(state, page.items, page.next_cursor, now);
        }
    };
    let next_cursor = next.map(|pos| list.seal(state, &pos));
    finish(state, items, next_cursor, now)
}

/// Up to `limit` rows and, if more follow, the position of the last one.
fn take<'a>(
    mut rows: impl Iterator<Item = &'a Device>,
    limit: usize,
    position: impl Fn(&Device) -> CursorPosition,
) -> (Vec<&'a Device>, Option<CursorPosition>) {
    let items: Vec<&Device> = rows.by_ref().take(limit).collect();
    let next = match items.last() {
        Some(last) if rows.next().is_some() => Some(position(last)),
        _ => None,
    };
    (items, next)
}

fn finish(
    state: &AppState,
    items: Vec<&Device>,
    next_cursor: Option<String>,
    now: i64,
) -> Result<(Bytes, i64), Problem> {
    let heartbeats = state.heartbeats();
    let mut valid_until = i64::MAX;
    let views: Vec<DeviceView> = items
        .into_iter()
        .map(|d| {
            let seen = heartbeats.get(&d.id);
            if let Some(s) = &seen
                && s.last_seen > 0
                && now.saturating_sub(s.last_seen) <= ONLINE_WITHIN_MICROS
            {
                valid_until = valid_until.min(s.last_seen + ONLINE_WITHIN_MICROS + 1);
            }
            if let Some(t) = d.key_expires_at
                && t > now
                && !d.key_expired
            {
                valid_until = valid_until.min(t);
            }
            view(d, seen, now)
        })
        .collect();
    let body = serde_json::to_vec(&Page {
        items: views,
        next_cursor,
    })
    .map_err(Problem::internal)?;
    Ok((Bytes::from(body), valid_until))
}

#[cfg(test)]
mod tests {
    use events::event::DeviceRegistered;
    use events::{Actor, Envelope, Event, Recorded};
    use projections::{Models, Projection};

    use super::*;

    fn registered(n: u64, tag: &str, os: &str) -> Recorded {
        let id = format!("dev_{n}");
        let event = Event::from(DeviceRegistered {
            device_id: id.clone(),
            key_id: "key_1".into(),
            hostname: format!("host-{n}"),
            os: os.into(),
            os_version: "6.1".into(),
            public_key: "pk".into(),
            ipv4: "100.64.0.1".into(),
            ipv6: "fd00::1".into(),
            tags: vec![tag.into()],
            owner: None,
            ephemeral: false,
            credential_hash: [n as u8; 32],
            key_expires_at: None,
        });
        Recorded {
            envelope: Envelope {
                position: n,
                org_seq: n,
                stream: events::stream::Stream::device(id.as_str()).to_string(),
                revision: 0,
                event_id: [n as u8; 16],
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                recorded_at: n as i64,
                org_id: "org_1".into(),
                actor: Actor::system("test"),
                request_id: "req".into(),
                payload: event.encode_payload(),
                mac: [0; 32],
            },
            event,
        }
    }

    fn ids(set: Option<IdSet>) -> Option<Vec<String>> {
        set.map(|s| s.into_iter().map(|(_, id)| id).collect())
    }

    #[test]
    fn the_most_selective_indexed_clause_drives_the_page() {
        let mut m = Models::default();
        for n in 1..=20 {
            let tag = if n == 7 { "tag:rare" } else { "tag:common" };
            m.apply(&registered(
                n,
                tag,
                if n % 2 == 0 { "linux" } else { "macos" },
            ));
        }
        let org = m.org("org_1");
        let index = org.device_index().unwrap();
        let plan = |conds: Vec<Vec<Cond>>| ids(driver(org, index, &conds));
        // A tag no device carries: an empty plan, whatever the fleet's size.
        assert_eq!(plan(vec![vec![Cond::Tag("tag:x".into())]]), Some(vec![]));
        assert_eq!(
            plan(vec![
                vec![Cond::Os("linux".into())],
                vec![Cond::Tag("tag:rare".into())]
            ]),
            Some(vec!["dev_7".to_owned()])
        );
        assert_eq!(
            plan(vec![vec![
                Cond::Hostname("host-3".into()),
                Cond::Tag("tag:rare".into())
            ]]),
            Some(vec!["dev_3".to_owned(), "dev_7".to_owned()])
        );
        // Last-seen times have no index here: such a clause cannot drive.
        assert_eq!(plan(vec![vec![Cond::Before(0)]]), None);
        assert_eq!(plan(vec![]), None);
    }
}
