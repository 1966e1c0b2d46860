//! Retention in the log: purging an organization's index entries, dropping the log's prefix
//! behind a signed anchor, and everything that must still hold after it — the chain verifies
//! from the anchor (online and offline), reads below it find nothing, the index (from its
//! snapshot or rebuilt from the anchor's bases) goes on numbering revisions and sequences where
//! they were, across restarts.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use events::Error;
use events::query::Query;
use events::store::{Direction, Group, IdempotencyRow, LogStore, Recovered};
use events::{Actor, AppendRequest, Expected, Log, NewEvent, VerifyOptions, verify_data_dir};
use proptest::prelude::*;

use common::{open, tagged};

const ORGS: [&str; 3] = ["org_a", "org_b", "org_c"];

/// The tests' fixed chain key, written where `audit-log verify` looks for it.
fn verify_options(dir: &Path) -> VerifyOptions {
    std::fs::write(dir.join("chain.key"), [42u8; 32]).expect("writes the key");
    VerifyOptions::default()
}

fn append(log: &Log, org: &str, stream: &str, count: usize) {
    let req = AppendRequest {
        org_id: org.into(),
        actor: Actor::system("tests"),
        request_id: "req".into(),
        expectations: Vec::new(),
        events: (0..count)
            .map(|i| NewEvent::new(stream, tagged(stream, i as u64)))
            .collect(),
        idempotency: None,
    };
    log.append_blocking(req).expect("appends");
}

/// What the log should serve: every record `(position, org, seq, stream, revision)`, and per
/// organization the first sequence number retention kept.
#[derive(Default)]
struct Model {
    records: Vec<(u64, String, u64, String, u64)>,
    kept_from: HashMap<String, u64>,
    dropped: u64,
    /// `kept_from` when the prefix was dropped: the anchor's bases, what an index rebuilt
    /// without its snapshot starts from (retention purges the rest again on its next run).
    kept_at_drop: HashMap<String, u64>,
}

impl Model {
    fn append(&mut self, org: &str, stream: &str, count: usize) {
        for _ in 0..count {
            let position = self.records.len() as u64 + 1;
            let seq = self.records.iter().filter(|r| r.1 == org).count() as u64 + 1;
            let rev = self.records.iter().filter(|r| r.3 == stream).count() as u64;
            self.records
                .push((position, org.into(), seq, stream.into(), rev));
        }
    }

    /// The positions `read_org(org, 1, ∞)` must answer.
    fn served(&self, org: &str) -> Vec<u64> {
        let from = self.kept_from.get(org).copied().unwrap_or(1);
        self.records
            .iter()
            .filter(|r| r.1 == org && r.2 >= from && r.0 > self.dropped)
            .map(|r| r.0)
            .collect()
    }

    /// The positions of `stream` still served: past the drop, and not purged with their org.
    fn stream(&self, stream: &str) -> Vec<u64> {
        self.records
            .iter()
            .filter(|r| {
                r.3 == stream
                    && r.0 > self.dropped
                    && r.2 >= self.kept_from.get(&r.1).copied().unwrap_or(1)
            })
            .map(|r| r.0)
            .collect()
    }
}

fn check(log: &Log, model: &Model) {
    assert_eq!(log.check_indexes().expect("checks"), Vec::<String>::new());
    let report = log.verify_chain().expect("walks");
    assert_eq!(report.first_bad, None, "{report:?}");
    assert_eq!(report.first, model.dropped + 1);
    assert_eq!(log.first_position(), model.dropped + 1);
    for org in ORGS {
        let got: Vec<u64> = log
            .read_org(org, 1, u64::MAX, usize::MAX)
            .expect("reads")
            .iter()
            .map(|r| r.position())
            .collect();
        assert_eq!(got, model.served(org), "{org}");
        // The audit log's postings lose what the sequence list loses.
        let by_type: Vec<u64> = log
            .query_org(
                org,
                &Query::Type("device.tagged".into()),
                1,
                u64::MAX,
                Direction::Forward,
                usize::MAX,
            )
            .expect("queries")
            .iter()
            .map(|r| r.position())
            .collect();
        assert_eq!(by_type, model.served(org), "{org} by type");
        let seq = model.records.iter().filter(|r| r.1 == org).count() as u64;
        assert_eq!(log.org_head(org).expect("head"), seq, "{org}");
    }
    for s in ["dev_1", "dev_2", "dev_3", "dev_4"] {
        let got: Vec<u64> = log
            .read_stream(s, 0, usize::MAX)
            .expect("reads")
            .iter()
            .map(|r| r.position())
            .collect();
        assert_eq!(got, model.stream(s), "{s}");
        let rev = model.records.iter().filter(|r| r.3 == s).count() as u64;
        assert_eq!(
            log.stream_revision(s).expect("revision"),
            rev.checked_sub(1),
            "{s}"
        );
    }
    let forward: Vec<u64> = log
        .read_forward(1, usize::MAX)
        .expect("reads")
        .iter()
        .map(|r| r.position())
        .collect();
    assert_eq!(
        forward,
        ((model.dropped + 1)..=log.head()).collect::<Vec<_>>()
    );
    assert!(log.get(model.dropped).expect("gets").is_none() || model.dropped == 0);
}

/// Each stream is one org's (device ids are unique across organizations).
fn org_of(stream: &str) -> &'static str {
    match stream {
        "dev_1" | "dev_2" => "org_a",
        "dev_3" => "org_b",
        _ => "org_c",
    }
}

#[test]
fn a_dropped_prefix_leaves_a_signed_anchor_the_chain_and_the_index_go_on_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut model = Model::default();
    let log = open(dir.path());
    for (stream, n) in [
        ("dev_1", 3),
        ("dev_3", 2),
        ("dev_4", 2),
        ("dev_1", 1),
        ("dev_2", 2),
    ] {
        append(&log, org_of(stream), stream, n);
        model.append(org_of(stream), stream, n);
    }
    // org_a keeps from its 3rd event: dev_1's first two leave the index.
    assert_eq!(log.purge_org_index("org_a", 3).expect("purges"), 2);
    model.kept_from.insert("org_a".into(), 3);
    check(&log, &model);
    assert!(log.drop_prefix(5).expect("drops"));
    model.dropped = 5;
    check(&log, &model);
    // Nothing new to drop, and never the head.
    assert!(!log.drop_prefix(4).expect("no-op"));
    let head = log.head();
    assert!(
        log.drop_prefix(head + 10)
            .expect("drops up to the head's predecessor")
    );
    model.dropped = head - 1;
    check(&log, &model);
    let anchor = log.anchor().expect("reads").expect("anchored");
    assert_eq!(anchor.position(), head - 1);
    assert_eq!(
        log.mac_at(head - 1).expect("the anchor's MAC"),
        anchor.checkpoint.mac
    );
    assert!(log.mac_at(head - 2).is_err());
    // Revisions and sequences go on where they were.
    log.append_blocking({
        let mut req = AppendRequest {
            org_id: "org_a".into(),
            actor: Actor::system("tests"),
            request_id: "req".into(),
            expectations: vec![("dev_1".into(), Expected::Exact(3))],
            events: vec![NewEvent::new("dev_1", tagged("dev_1", 9))],
            idempotency: None,
        };
        req.request_id = "req2".into();
        req
    })
    .expect("dev_1 is at revision 3 though its records are gone");
    model.append("org_a", "dev_1", 1);
    check(&log, &model);
    log.close();
    drop(log);

    for lose_index_snapshot in [false, true] {
        if lose_index_snapshot {
            std::fs::remove_file(dir.path().join("index.snap")).expect("removes");
        }
        let log = open(dir.path());
        check(&log, &model);
        append(&log, "org_b", "dev_3", 1);
        model.append("org_b", "dev_3", 1);
        check(&log, &model);
        log.close();
    }
    let report = verify_data_dir(dir.path(), &verify_options(dir.path())).expect("verifies");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chain.first, model.dropped + 1);
    assert_eq!(report.anchor.map(|a| a.position), Some(model.dropped));
}

#[test]
fn an_anchor_not_signed_by_the_given_checkpoint_key_fails_offline_verification() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    append(&log, "org_a", "dev_1", 6);
    assert!(log.drop_prefix(3).expect("drops"));
    log.close();
    drop(log);
    let other = tempfile::tempdir().expect("temp dir");
    let key = events::CheckpointKey::load_or_create(&other.path().join("k")).expect("key");
    let options = VerifyOptions {
        checkpoint_key_file: Some(other.path().join("k")),
        ..verify_options(dir.path())
    };
    let report = verify_data_dir(dir.path(), &options).expect("verifies");
    assert!(report.anchor_problem.is_some(), "{report:?}");
    drop(key);
    let ours = VerifyOptions {
        checkpoint_key_file: Some(dir.path().join("checkpoint.key")),
        ..VerifyOptions::default()
    };
    assert!(verify_data_dir(dir.path(), &ours).expect("verifies").ok());
}

/// The real store, whose prefix drop stops halfway: the anchor is written, only part of the
/// records below it are deleted (what a crash during the deletes leaves).
struct HalfDrop(events::sled_store::SledStore);

impl LogStore for HalfDrop {
    fn recover(&self) -> Result<Recovered, Error> {
        self.0.recover()
    }
    fn write(&self, group: &Group) -> Result<(), Error> {
        self.0.write(group)
    }
    fn sync(&self) -> Result<(), Error> {
        self.0.sync()
    }
    fn record(&self, position: u64) -> Result<Option<Vec<u8>>, Error> {
        self.0.record(position)
    }
    fn scan(
        &self,
        from: u64,
        to: u64,
        direction: Direction,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.0.scan(from, to, direction, visit)
    }
    fn idempotency(&self, org: &str, key: &str) -> Result<Option<IdempotencyRow>, Error> {
        self.0.idempotency(org, key)
    }
    fn close(&self) -> Result<(), Error> {
        self.0.close()
    }
    fn anchor(&self) -> Result<Option<Vec<u8>>, Error> {
        self.0.anchor()
    }
    fn anchor_bases(&self) -> Result<Option<Vec<u8>>, Error> {
        self.0.anchor_bases()
    }
    fn drop_prefix(&self, position: u64, anchor: &[u8], bases: &[u8]) -> Result<(), Error> {
        self.0.drop_prefix(position / 2, anchor, bases)?;
        self.0.sync()?;
        Err(Error::Storage("the power went out".into()))
    }
}

#[test]
fn a_drop_cut_short_after_its_anchor_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut model = Model::default();
    let log = open(dir.path());
    append(&log, "org_a", "dev_1", 10);
    model.append("org_a", "dev_1", 10);
    log.close();
    drop(log);

    let store = events::sled_store::SledStore::open(&dir.path().join("log"), 16 << 20)
        .expect("opens the store");
    let log = Log::open_with_store(dir.path(), Arc::new(HalfDrop(store)), common::options())
        .expect("opens");
    assert!(log.drop_prefix(8).is_err());
    // Readers already stay above the anchor; the records between are still on disk.
    assert_eq!(log.first_position(), 9);
    assert!(log.read_raw(1, usize::MAX).expect("reads")[0].0 == 9);
    log.close();
    drop(log);

    let log = open(dir.path());
    model.dropped = 8;
    check(&log, &model);
    log.close();
    let report = verify_data_dir(dir.path(), &verify_options(dir.path())).expect("verifies");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chain.first, 9);
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize, usize),
    Purge(usize, u64),
    Drop(u64),
    Reopen { lose_index_snapshot: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 1..4usize).prop_map(|(s, n)| Op::Append(s, n)),
        2 => (0..3usize, 0..12u64).prop_map(|(o, k)| Op::Purge(o, k)),
        2 => (0..40u64).prop_map(Op::Drop),
        1 => any::<bool>().prop_map(|lose_index_snapshot| Op::Reopen { lose_index_snapshot }),
    ]
}

fn run(dir: &Path, ops: &[Op]) {
    let streams = ["dev_1", "dev_2", "dev_3", "dev_4"];
    let mut model = Model::default();
    let mut log = open(dir);
    for op in ops {
        match op {
            Op::Append(s, n) => {
                let stream = streams[*s];
                append(&log, org_of(stream), stream, *n);
                model.append(org_of(stream), stream, *n);
            }
            Op::Purge(o, keep_from) => {
                let org = ORGS[*o];
                log.purge_org_index(org, *keep_from).expect("purges");
                // Only entries that exist leave: later events are kept.
                let seq = model.records.iter().filter(|r| r.1 == org).count() as u64;
                let kept = model.kept_from.entry(org.into()).or_insert(1);
                *kept = (*kept).max((*keep_from).min(seq + 1));
            }
            Op::Drop(p) => {
                // The caller's promise: nothing below a retained event of any org.
                let floor = ORGS
                    .iter()
                    .filter_map(|o| model.served(o).first().copied())
                    .min()
                    .unwrap_or(u64::MAX);
                let p = (*p).min(floor.saturating_sub(1));
                let head = log.head();
                let expect = p.min(head.saturating_sub(1)) > model.dropped;
                assert_eq!(log.drop_prefix(p).expect("drops"), expect);
                if expect {
                    model.dropped = p.min(head - 1);
                    model.kept_at_drop = model.kept_from.clone();
                }
            }
            Op::Reopen {
                lose_index_snapshot,
            } => {
                log.close();
                drop(log);
                if *lose_index_snapshot {
                    let _ = std::fs::remove_file(dir.join("index.snap"));
                    model.kept_from = model.kept_at_drop.clone();
                }
                log = open(dir);
            }
        }
        check(&log, &model);
    }
    log.close();
    let report = verify_data_dir(dir, &verify_options(dir)).expect("verifies");
    assert!(report.ok(), "{report:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn purges_drops_and_reopens_keep_the_log_sound(ops in prop::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().expect("temp dir");
        run(dir.path(), &ops);
    }
}
