//! Each organization sees its own gap-free sequence (DESIGN §3.5): assigned in the commit,
//! carried by every record, served by the derived (org, sequence) index — including the records
//! the indexer has not reached yet — and kept across restarts.

mod common;

use std::collections::HashMap;

use events::{Actor, AppendRequest, Log, NewEvent};

use common::{assert_sound, open, tagged};

fn request_for(org: &str, stream: &str, count: usize) -> AppendRequest {
    AppendRequest {
        org_id: org.into(),
        actor: Actor::system("tests"),
        request_id: "req".into(),
        expectations: Vec::new(),
        events: (0..count)
            .map(|i| NewEvent::new(stream, tagged(stream, i as u64)))
            .collect(),
        idempotency: None,
    }
}

/// Every org's events, read through the org index, are exactly its records in log order,
/// numbered 1..=n.
fn assert_org_sequences(log: &Log, orgs: &[&str]) {
    let mut expected: HashMap<String, Vec<u64>> = HashMap::new();
    for r in log.read_forward(1, usize::MAX).expect("reads") {
        expected
            .entry(r.envelope.org_id.clone())
            .or_default()
            .push(r.position());
    }
    for org in orgs {
        let want = expected.get(*org).cloned().unwrap_or_default();
        let got = log
            .read_org(org, 1, u64::MAX, usize::MAX)
            .expect("reads the org");
        assert_eq!(
            got.iter().map(|r| r.position()).collect::<Vec<_>>(),
            want,
            "{org}: the org index names its records in order"
        );
        assert_eq!(
            got.iter().map(|r| r.org_seq()).collect::<Vec<_>>(),
            (1..=want.len() as u64).collect::<Vec<_>>(),
            "{org}: sequence numbers are 1..=n without gaps"
        );
        assert_eq!(log.org_head(org).expect("head"), want.len() as u64);
        let newest = log
            .read_org_backward(org, 1, u64::MAX, 3)
            .expect("reads backward");
        assert_eq!(
            newest.iter().map(|r| r.org_seq()).collect::<Vec<_>>(),
            (1..=want.len() as u64).rev().take(3).collect::<Vec<_>>(),
            "{org}: newest first"
        );
        // A window in the middle.
        if want.len() >= 5 {
            let window = log.read_org(org, 2, 4, 10).expect("reads a window");
            assert_eq!(
                window.iter().map(|r| r.org_seq()).collect::<Vec<_>>(),
                vec![2, 3, 4]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orgs_each_get_a_gap_free_sequence_that_survives_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let orgs = ["org_a", "org_b", "org_c"];
    let log = open(dir.path());
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let log = log.clone();
        let org = orgs[i % orgs.len()];
        tasks.push(tokio::spawn(async move {
            log.append(request_for(
                org,
                &format!("device:{org}-{}", i % 4),
                1 + i % 3,
            ))
            .await
            .expect("appends")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Read at once: some records are past the index checkpoint and come from the log's tail.
    assert_org_sequences(&log, &orgs);
    assert_eq!(log.org_head("org_nobody").expect("head"), 0);
    assert!(
        log.read_org("org_nobody", 1, u64::MAX, 10)
            .expect("reads")
            .is_empty()
    );
    assert_sound(&log);
    drop(log);

    // After a restart the sequences continue where they stopped.
    let log = open(dir.path());
    let before = log.org_head("org_b").expect("head");
    let appended = log
        .append(request_for("org_b", "device:org_b-9", 2))
        .await
        .expect("appends");
    let new = log.read_forward(appended.first, 2).expect("reads");
    assert_eq!(
        new.iter().map(|r| r.org_seq()).collect::<Vec<_>>(),
        vec![before + 1, before + 2]
    );
    assert_org_sequences(&log, &orgs);
    assert_sound(&log);
}

#[test]
fn a_lost_index_is_derived_again_from_the_log_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    for i in 0..20 {
        log.append_blocking(request_for(
            if i % 2 == 0 { "org_a" } else { "org_b" },
            &format!("device:{}", i % 5),
            2,
        ))
        .expect("appends");
    }
    log.close();
    drop(log);
    // Drop the whole derived index behind the log's back, as a crash before it was flushed would.
    {
        let db = sled::open(dir.path().join("log")).expect("sled opens");
        db.drop_tree("index").expect("drops the index");
        db.flush().expect("flushes");
    }
    let log = open(dir.path());
    assert_eq!(
        log.indexed(),
        log.head(),
        "open derives the index up to the head"
    );
    assert_org_sequences(&log, &["org_a", "org_b"]);
    assert_eq!(
        log.stream_revision("device:3").expect("revision"),
        Some(7),
        "stream heads come back too"
    );
    assert_sound(&log);
}
