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

#[test]
fn changing_a_stored_record_makes_verification_report_exactly_that_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    ten_events(dir.path());
    let all = [
        Tamper::FlipPayloadByte,
        Tamper::FlipStreamByte,
        Tamper::FlipMacByte,
        Tamper::DeleteRecord,
    ];
    for what in all {
        // The head record cannot be deleted: the log refuses to open when its head is missing.
        let positions: &[u64] = if what == Tamper::DeleteRecord {
            &[1, 6]
        } else {
            &[1, 6, 10]
        };
        for &position in positions {
            let original = tamper(dir.path(), position, what);
            let log = open(dir.path());
            let report = log.verify_chain().expect("walks");
            assert_eq!(
                report.first_bad,
                Some(position),
                "{what:?} at {position}: {report:?}"
            );
            assert_eq!(
                report.verified,
                position - 1,
                "{what:?} at {position}: {report:?}"
            );
            drop(log);

            restore(dir.path(), position, original);
            let log = open(dir.path());
            let report = log.verify_chain().expect("walks");
            assert_eq!(
                report.first_bad, None,
                "restored {what:?} at {position}: {report:?}"
            );
        }
    }
}

#[test]
fn a_different_chain_key_fails_verification_at_position_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    ten_events(dir.path());
    let log = Log::open(
        dir.path(),
        LogOptions {
            chain_key: Some(ChainKey::from_bytes([7u8; 32])),
            ..options()
        },
    )
    .expect("the log opens");
    let report = log.verify_chain().expect("walks");
    assert_eq!(report.first_bad, Some(1), "{report:?}");
    assert_eq!(report.verified, 0);
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
