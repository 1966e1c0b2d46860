//! `GET /devices`: filters and sorts served from the organization's device indexes, and whole
//! answers cached as bytes.
//!
//! **Plan.** Each filter clause (an OR of terms) whose terms all have an index (`tag`, `os`,
//! `owner`, `hostname`, `ephemeral:true`, `last_seen_before`/`_after`) can drive the page; the
//! one with the fewest candidates does, and the other clauses are checked on each candidate. So
//! a filter matching nothing costs a map lookup, and a page in the default order costs the
//! candidates it skips plus `limit`. Without a driving clause the page walks the organization's
//! creation, hostname or last-seen order from the cursor. `sort=last_seen` uses the last-seen
//! order kept beside the heartbeat store ([`crate::last_seen`]); a selective driving clause is
//! sorted instead (see [`walk_last_seen`]), as is `sort=hostname` under a driving clause.
//!
//! **Cache.** An answer depends on the organization's read-model version, the heartbeat store's
//! generation, the query and the clock (a device goes offline two minutes after its last
//! heartbeat, a key expires at a given time). The cache keys on the first three and stores with
//! each answer the first instant the clock would change it, so no entry is ever served stale and
//! none expires on a timer. See [`super::page_cache`].

use axum::body::Bytes;
use projections::OrgView;
use std::ops::Bound::{self, Excluded, Unbounded};

use projections::device_index::{ByCreated, IdSet, OrgDevices, seek};
use projections::devices::Device;

use super::devices::{DeviceView, ONLINE_WITHIN_MICROS, view};
use super::filter::Term;
use super::list::Listing;
use super::pagination::{CursorPosition, Page};
use super::problem::Problem;
use crate::domain::devices::Tag;
use crate::last_seen::OrgSeen;
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

    /// The last-seen interval this term selects, if it is a time term.
    fn bounds(&self) -> Option<Interval> {
        match self {
            Cond::Before(t) => Some((Unbounded, Excluded(*t))),
            Cond::After(t) => Some((Excluded(*t), Unbounded)),
            _ => None,
        }
    }

    /// The devices satisfying this term, from an index; `None` when it has no index.
    fn candidates<'a>(
        &self,
        org: OrgView<'a>,
        index: &'a OrgDevices,
        seen: Option<&OrgSeen>,
    ) -> Option<Vec<ByCreated>> {
        let set = |s: Option<&'a IdSet>| -> Vec<ByCreated> {
            s.map(|s| s.iter().cloned().collect()).unwrap_or_default()
        };
        // The hostname and last-seen orders hold only live devices of this organization; look
        // up the creation time to merge them into creation order.
        let created = |id: &str| -> Option<ByCreated> {
            org.live_device(id).map(|d| (d.created_at, d.id.clone()))
        };
        if let (Some(bounds), Some(seen)) = (self.bounds(), seen) {
            return Some(
                seen.seek(None, bounds, false)
                    .filter_map(|(_, id)| created(id))
                    .collect(),
            );
        }
        Some(match self {
            Cond::Tag(t) => set(index.tagged(t)),
            Cond::Os(os) => set(index.with_os(os)),
            Cond::Owner(o) => set(index.owned_by(o)),
            Cond::Ephemeral(true) => index.ephemeral.iter().cloned().collect(),
            Cond::Hostname(h) => index
                .hostname_is(h)
                .filter_map(|(_, id)| created(id))
                .collect(),
            Cond::HostnamePrefix(p) => index
                .hostname_prefix(p)
                .filter_map(|(_, id)| created(id))
                .collect(),
            Cond::Ephemeral(false) | Cond::Before(_) | Cond::After(_) => return None,
        })
    }

    /// How many devices [`Cond::candidates`] would yield, counting no further than `cap`
    /// where it has to count; `None` when it has no index.
    fn estimate(&self, index: &OrgDevices, seen: Option<&OrgSeen>, cap: usize) -> Option<usize> {
        let len = |s: Option<&IdSet>| s.map_or(0, |s| s.len());
        if let (Some(bounds), Some(seen)) = (self.bounds(), seen) {
            return Some(seen.count(bounds, cap));
        }
        Some(match self {
            Cond::Tag(t) => len(index.tagged(t)),
            Cond::Os(os) => len(index.with_os(os)),
            Cond::Owner(o) => len(index.owned_by(o)),
            Cond::Ephemeral(true) => index.ephemeral.len(),
            Cond::Hostname(h) => index.hostname_is(h).take(cap).count(),
            Cond::HostnamePrefix(p) => index.hostname_prefix(p).take(cap).count(),
            Cond::Ephemeral(false) | Cond::Before(_) | Cond::After(_) => return None,
        })
    }
}

/// A last-seen interval: `(from, to)`.
type Interval = (Bound<i64>, Bound<i64>);

/// The clause that drives a page: its devices in creation order.
struct Driver {
    set: IdSet,
    /// True if the clause has a last-seen term: the last-seen order serves it as well.
    timed: bool,
}

/// The devices of the clause with the fewest candidates, in creation order; `None` when no
/// clause can be answered from the indexes alone.
fn driver(
    org: OrgView<'_>,
    index: &OrgDevices,
    seen: Option<&OrgSeen>,
    conds: &[Vec<Cond>],
) -> Option<Driver> {
    let mut best: Option<(usize, &Vec<Cond>)> = None;
    for clause in conds {
        // Counting stops once a clause cannot beat the best so far.
        let cap = best.map_or(usize::MAX, |(n, _)| n.saturating_add(1));
        let n = clause
            .iter()
            .map(|c| c.estimate(index, seen, cap))
            .sum::<Option<usize>>();
        if let Some(n) = n
            && best.is_none_or(|(b, _)| n < b)
        {
            best = Some((n, clause));
        }
    }
    let (_, clause) = best?;
    let mut set = IdSet::new();
    for cond in clause {
        set.extend(cond.candidates(org, index, seen).unwrap_or_default());
    }
    Some(Driver {
        set,
        timed: clause.iter().any(|c| c.bounds().is_some()),
    })
}

/// The last-seen interval every match lies in: the intersection of the clauses made of time
/// terms alone (a clause `last_seen_after:a,last_seen_after:b` lies after the earlier one).
fn time_bounds(conds: &[Vec<Cond>]) -> Interval {
    let mut low: Option<i64> = None;
    let mut high: Option<i64> = None;
    // The clause's times if every term is of one kind, as `pick` reads it.
    let only = |clause: &[Cond], pick: fn(&Cond) -> Option<i64>| -> Option<Vec<i64>> {
        clause.iter().map(pick).collect()
    };
    for clause in conds {
        let after = |c: &Cond| match c {
            Cond::After(t) => Some(*t),
            _ => None,
        };
        let before = |c: &Cond| match c {
            Cond::Before(t) => Some(*t),
            _ => None,
        };
        if let Some(t) = only(clause, after).and_then(|ts| ts.into_iter().min()) {
            low = Some(low.map_or(t, |l| l.max(t)));
        }
        if let Some(t) = only(clause, before).and_then(|ts| ts.into_iter().max()) {
            high = Some(high.map_or(t, |h| h.min(t)));
        }
    }
    (
        low.map_or(Unbounded, Excluded),
        high.map_or(Unbounded, Excluded),
    )
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
    let Some(index) = org.device_index() else {
        return finish(state, Vec::new(), None, now);
    };
    let timed =
        list.sort.field == "last_seen" || conds.iter().flatten().any(|c| c.bounds().is_some());
    if !timed {
        return plan(state, org, index, None, list, conds, now);
    }
    let heartbeats = state.heartbeats();
    heartbeats.last_seen_index().with(
        org.id(),
        &index.by_created,
        |id| heartbeats.last_seen(id),
        |seen| plan(state, org, index, Some(seen), list, conds, now),
    )
}

fn plan(
    state: &AppState,
    org: OrgView<'_>,
    index: &OrgDevices,
    seen: Option<&OrgSeen>,
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
    let driving = driver(org, index, seen, conds);
    let descending = list.sort.descending;
    let time_key = |t: i64| format!("{:020}", t.max(0));
    let (items, next) = match (list.sort.field.as_str(), &driving) {
        ("created_at", _) => {
            let after = match &list.after {
                Some(pos) => Some((parse_key(&pos.sort_key)?, pos.id.clone())),
                None => None,
            };
            let set = driving.as_ref().map_or(&index.by_created, |d| &d.set);
            let rows = seek(set, after, descending).filter_map(|(_, id)| org.live_device(id));
            take(rows.filter(wanted), list.limit, |d| CursorPosition {
                sort_key: time_key(d.created_at),
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
        ("last_seen", driving) if walk_last_seen(driving.as_ref(), list.limit, index) => {
            let seen = seen.ok_or_else(|| Problem::internal("last-seen order not loaded"))?;
            let after = match &list.after {
                Some(pos) => Some((parse_key(&pos.sort_key)?, pos.id.clone())),
                None => None,
            };
            let rows = seen
                .seek(after, time_bounds(conds), descending)
                .filter_map(|(t, id)| org.live_device(id).map(|d| (*t, d)));
            // The order's time is the one the cursor must carry: a heartbeat arriving while
            // this page is built moves the device in the order and in the store at once.
            let mut rows = rows.filter(|(_, d)| wanted(d));
            let items: Vec<(i64, &Device)> = rows.by_ref().take(list.limit).collect();
            let next = match items.last() {
                Some((t, d)) if rows.next().is_some() => Some(CursorPosition {
                    sort_key: time_key(*t),
                    id: d.id.clone(),
                }),
                _ => None,
            };
            (items.into_iter().map(|(_, d)| d).collect(), next)
        }
        (field, _) => {
            // Sorted after collecting the driving clause's candidates: fewer than walking an
            // order and filtering (see `walk_last_seen`).
            let rows: Vec<&Device> = match &driving {
                Some(d) => d
                    .set
                    .iter()
                    .filter_map(|(_, id)| org.live_device(id))
                    .filter(wanted)
                    .collect(),
                None => org.devices().filter(wanted).collect(),
            };
            let sort_key = |d: &&Device| match field {
                "hostname" => d.hostname.clone(),
                _ => time_key(last_seen(d)),
            };
            let page = list.page(state, rows, sort_key, |d| &d.id, |d| d);
            return finish(state, page.items, page.next_cursor, now);
        }
    };
    let next_cursor = next.map(|pos| list.seal(state, &pos));
    finish(state, items, next_cursor, now)
}

/// Whether `sort=last_seen` walks the last-seen order rather than sorting the driving clause's
/// candidates. Walking filters about `limit × fleet / candidates` devices, sorting costs the
/// candidates: walk when that is fewer, when no clause drives, or when the driving clause is
/// itself a last-seen interval (the walk is bounded by it).
fn walk_last_seen(driving: Option<&Driver>, limit: usize, index: &OrgDevices) -> bool {
    match driving {
        None => true,
        Some(d) if d.timed => true,
        Some(d) => {
            let n = d.set.len();
            n.saturating_mul(n) > limit.saturating_mul(index.by_created.len())
        }
    }
}

fn parse_key(key: &str) -> Result<i64, Problem> {
    key.parse::<i64>()
        .map_err(|_| Problem::invalid_argument("cursor is malformed"))
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

    fn ids(driver: Option<Driver>) -> Option<Vec<String>> {
        driver.map(|d| d.set.into_iter().map(|(_, id)| id).collect())
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
        let plan = |conds: Vec<Vec<Cond>>| ids(driver(org, index, None, &conds));
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
        // Without the last-seen order (no time term or sort asked for it), such a clause
        // cannot drive.
        assert_eq!(plan(vec![vec![Cond::Before(0)]]), None);
        assert_eq!(plan(vec![]), None);
    }
}
