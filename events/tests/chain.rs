//! The tamper-evident chain (invariant 4): it verifies on an honest log, and any change to a
//! stored record, made behind the log's back, is reported at exactly that record's position.

mod common;

use std::path::Path;

use events::{ChainKey, Log, LogOptions, codec};

use common::{assert_sound, open, options, request};

/// Writes ten events in four requests: positions 1..=10.
fn ten_events(dir: &Path) {
    let log = open(dir);
    for (stream, count) in [
        ("device:a", 1),
        ("device:b", 4),
        ("device:a", 2),
        ("device:c", 3),
    ] {
        log.append_blocking(request(stream, count))
            .expect("appends");
    }
    assert_eq!(log.head(), 10);
    log.close();
}

fn record_key(position: u64) -> Vec<u8> {
    let mut key = vec![b'L'];
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// A change made to a stored record behind the log's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// Flips the last byte of the event's payload (the record ends with payload ‖ mac).
    FlipPayloadByte,
    /// Flips a byte of the stream id, a header field the MAC covers.
    FlipStreamByte,
    FlipMacByte,
    DeleteRecord,
}

/// Opens the log's sled database directly (the log must be closed) and changes the stored
/// record at `position`. Returns the original bytes.
fn tamper(dir: &Path, position: u64, how: Tamper) -> Vec<u8> {
    let db = sled::open(dir.join("log")).expect("sled opens");
    let tree = db.open_tree("log").expect("the log tree opens");
    let key = record_key(position);
    let original = tree
        .get(&key)
        .expect("reads")
        .expect("the record exists")
        .to_vec();
    let mut record = original.clone();
    match how {
        Tamper::FlipPayloadByte => {
            let env = codec::decode_record(0, &record).expect("an honest record decodes");
            let payload_end = record.len() - codec::MAC_LEN;
            assert!(!env.payload.is_empty());
            assert_eq!(
                &record[payload_end - env.payload.len()..payload_end],
                &env.payload[..]
            );
            record[payload_end - 1] ^= 0x01;
        }
        Tamper::FlipStreamByte => {
            let at = record
                .windows(7)
                .position(|w| w == b"device:")
                .expect("the record names its stream");
            record[at + 7] ^= 0x01;
        }
        Tamper::FlipMacByte => {
            let last = record.len() - 1;
            record[last] ^= 0x80;
        }
        Tamper::DeleteRecord => {}
    }
    if how == Tamper::DeleteRecord {
        tree.remove(&key).expect("removes");
    } else {
        tree.insert(&key, record).expect("writes");
    }
    db.flush().expect("flushes");
    original
}

/// Puts the original record back, behind the log's back too.
fn restore(dir: &Path, position: u64, original: Vec<u8>) {
    let db = sled::open(dir.join("log")).expect("sled opens");
    let tree = db.open_tree("log").expect("the log tree opens");
    tree.insert(record_key(position), original).expect("writes");
    db.flush().expect("flushes");
}

#[test]
fn a_fresh_log_verifies_from_the_first_event_to_the_head() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let empty = log.verify_chain().expect("walks");
    assert_eq!((empty.verified, empty.head, empty.first_bad), (0, 0, None));
    drop(log);

    ten_events(dir.path());
    let log = open(dir.path());
    let report = log.verify_chain().expect("walks");
    assert_eq!(
        (report.verified, report.head, report.first_bad),
        (10, 10, None),
        "{report:?}"
    );
    assert_sound(&log);
}

/// Every file under `dir` with its bytes: what a read-only check must leave unchanged.
fn snapshot_of(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("lists") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("reads")));
            }
        }
    }
    out.sort();
    out
}

/// The test key, written to a file outside the data dir, as an operator would keep it.
fn key_file(scratch: &Path) -> std::path::PathBuf {
    let path = scratch.join("chain.key");
    std::fs::write(&path, [42u8; 32]).expect("writes the key file");
    path
}

fn verify_offline(dir: &Path, key: &Path) -> events::VerifyReport {
    events::verify_data_dir(
        dir,
        &events::VerifyOptions {
            chain_key_file: Some(key.to_path_buf()),
            checkpoint_key_file: None,
        },
    )
    .expect("the offline check runs")
}

#[test]
fn changing_a_stored_record_makes_the_offline_check_report_exactly_that_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("temp dir");
    let key = key_file(scratch.path());
    ten_events(dir.path());
    let all = [
        Tamper::FlipPayloadByte,
        Tamper::FlipStreamByte,
        Tamper::FlipMacByte,
        Tamper::DeleteRecord,
    ];
    for what in all {
        // The head record included: the offline check does not need the log to open.
        for position in [1, 6, 10] {
            let original = tamper(dir.path(), position, what);
            let before = snapshot_of(dir.path());
            let report = verify_offline(dir.path(), &key);
            assert_eq!(
                snapshot_of(dir.path()),
                before,
                "the offline check wrote into the data dir"
            );
            assert_eq!(
                report.chain.first_bad,
                Some(position),
                "{what:?} at {position}: {report:?}"
            );
            assert_eq!(
                report.chain.verified,
                position - 1,
                "{what:?} at {position}: {report:?}"
            );
            assert!(!report.ok());

            restore(dir.path(), position, original);
            let report = verify_offline(dir.path(), &key);
            assert_eq!(
                report.chain.first_bad, None,
                "restored {what:?} at {position}: {report:?}"
            );
            let log = open(dir.path());
            assert_sound(&log);
            drop(log);
        }
    }
}

#[test]
fn a_changed_head_record_stops_the_log_from_opening_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    ten_events(dir.path());
    let original = tamper(dir.path(), 10, Tamper::FlipPayloadByte);
    let err = Log::open(dir.path(), options()).expect_err("a changed head must not open");
    let message = err.to_string();
    assert!(
        message.contains("position 9") && message.contains("head record"),
        "{message}"
    );
    restore(dir.path(), 10, original);
    assert_sound(&open(dir.path()));
}

#[test]
fn another_chain_key_stops_the_log_from_opening() {
    let dir = tempfile::tempdir().expect("temp dir");
    ten_events(dir.path());
    let err = Log::open(
        dir.path(),
        LogOptions {
            chain_key: Some(ChainKey::from_bytes([7u8; 32])),
            ..options()
        },
    )
    .expect_err("a wrong key must not open the log");
    assert!(
        matches!(&err, events::Error::ChainKey { reason, .. } if reason.contains("not the key")),
        "{err}"
    );
    // The offline check says the same, at the first record.
    let scratch = tempfile::tempdir().expect("temp dir");
    let wrong = scratch.path().join("wrong.key");
    std::fs::write(&wrong, [7u8; 32]).expect("writes");
    let report = verify_offline(dir.path(), &wrong);
    assert_eq!(report.chain.first_bad, Some(1), "{report:?}");
    assert_eq!(report.chain.verified, 0);
}

#[test]
fn a_missing_chain_key_file_is_never_regenerated_for_a_log_with_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let default_key = || LogOptions {
        chain_key: None,
        ..options()
    };
    let log = Log::open(dir.path(), default_key()).expect("the log opens");
    log.append_blocking(request("device:a", 3))
        .expect("appends");
    drop(log);
    let key_path = dir.path().join("chain.key");
    let key = std::fs::read(&key_path).expect("the key was created for the empty log");
    std::fs::remove_file(&key_path).expect("removes");

    let err = Log::open(dir.path(), default_key()).expect_err("no key, no open");
    let message = err.to_string();
    assert!(
        message.contains(&key_path.display().to_string()) && message.contains("Restore"),
        "the error names the key file and what to do: {message}"
    );
    assert!(!key_path.exists(), "a new key was created");

    // A key file elsewhere (`--chain-key-file` on an unmounted path) is refused the same way.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let unmounted = elsewhere.path().join("keys/chain.key");
    let err = Log::open(
        dir.path(),
        LogOptions {
            chain_key_file: Some(unmounted.clone()),
            ..default_key()
        },
    )
    .expect_err("no key, no open");
    assert!(err.to_string().contains("keys/chain.key"), "{err}");
    assert!(!unmounted.exists());

    // A wrong key in the default place is refused too; the right one opens.
    std::fs::write(&key_path, [9u8; 32]).expect("writes");
    assert!(Log::open(dir.path(), default_key()).is_err());
    std::fs::write(&key_path, &key).expect("writes");
    let log = Log::open(dir.path(), default_key()).expect("the right key opens the log");
    assert_eq!(log.verify_chain().expect("walks").first_bad, None);
}

#[test]
fn a_truncated_log_fails_the_offline_check_against_its_signed_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("temp dir");
    let key = key_file(scratch.path());
    let cp_key = scratch.path().join("checkpoint.key");
    let with_cp_key = || LogOptions {
        checkpoint_key_file: Some(cp_key.clone()),
        ..options()
    };
    let log = Log::open(dir.path(), with_cp_key()).expect("opens");
    for stream in ["device:a", "device:b"] {
        log.append_blocking(request(stream, 5)).expect("appends");
    }
    // Closing publishes a checkpoint of the head, signed with the key outside the data dir.
    log.close();
    drop(log);
    let checks = |dir: &Path| {
        events::verify_data_dir(
            dir,
            &events::VerifyOptions {
                chain_key_file: Some(key.clone()),
                checkpoint_key_file: Some(cp_key.clone()),
            },
        )
        .expect("runs")
    };
    let report = checks(dir.path());
    assert!(report.ok(), "{report:?}");
    assert!(report.checkpoint_authenticated);
    assert_eq!(report.checkpoint.as_ref().map(|c| c.position), Some(10));

    // Cut the last two records and move the head back: the chain alone still verifies.
    {
        let db = sled::open(dir.path().join("log")).expect("sled opens");
        let tree = db.open_tree("log").expect("opens");
        tree.remove(record_key(10)).expect("removes");
        tree.remove(record_key(9)).expect("removes");
        tree.insert(b"Mhead", &8u64.to_be_bytes()).expect("writes");
        db.flush().expect("flushes");
    }
    let report = checks(dir.path());
    assert_eq!(report.chain.first_bad, None, "{report:?}");
    assert_eq!(report.chain.verified, 8);
    let problem = report
        .checkpoint_problem
        .clone()
        .expect("the truncation is caught");
    assert!(problem.contains("truncated"), "{problem}");
    assert!(!report.ok());

    // A checkpoint signed by another key is refused when the real key is given.
    let other = scratch.path().join("other.key");
    std::fs::write(&other, [3u8; 32]).expect("writes");
    let forged = events::CheckpointKey::load(&other)
        .expect("loads")
        .sign(8, [0; 32], 0);
    events::checkpoint::publish(dir.path(), &forged).expect("writes");
    let report = checks(dir.path());
    let problem = report.checkpoint_problem.expect("the forgery is caught");
    assert!(
        problem.contains("not by the given checkpoint key"),
        "{problem}"
    );
}

#[test]
fn the_default_chain_key_is_kept_in_the_data_dir_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let default_key = || LogOptions {
        chain_key: None,
        ..options()
    };
    let log = Log::open(dir.path(), default_key()).expect("the log opens");
    log.append_blocking(request("device:a", 3))
        .expect("appends");
    drop(log);
    let log = Log::open(dir.path(), default_key()).expect("the log reopens");
    let report = log.verify_chain().expect("walks");
    assert_eq!((report.verified, report.first_bad), (3, None), "{report:?}");
}
