//! The kill -9 harness (invariants 1 and 3): a child process appends as fast as it can and
//! reports every acknowledged append; the parent SIGKILLs it at a random moment, reopens the log
//! and checks that nothing acknowledged was lost or changed, that positions are gap-free, that
//! the indexes and the chain hold, and that every request is all there or not at all. Repeated
//! many times in the same data dir.
//!
//! The child is this test binary itself, re-run with [`CHILD_DIR`] set and told to run only
//! [`the_child_process_appends_until_it_is_killed`]; without the variable that test does nothing.
//!
//! `QZ_CRASH_ITERATIONS` sets the number of kills (default 40); `QZ_CRASH_SEED` replays a run.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use events::{AppendError, AppendRequest, Expected, Log, NewEvent, codec};
use sha2::{Digest, Sha256};

use common::{ORG, assert_sound, open, tagged};

/// Set in the child: the data dir it appends to.
const CHILD_DIR: &str = "QZ_CRASH_CHILD_DIR";
/// Set in the child: the seed of its random requests.
const CHILD_SEED: &str = "QZ_CRASH_CHILD_SEED";
const CHILD_TEST: &str = "the_child_process_appends_until_it_is_killed";
/// Concurrent appenders in the child.
const APPENDERS: u64 = 32;
const STREAMS: u64 = 24;
/// Longest wait after the child is ready before it is killed.
const MAX_KILL_DELAY_MS: u64 = 300;

/// SplitMix64: small, seedable, good enough to pick streams and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The child's entry point; a no-op unless [`CHILD_DIR`] is set.
#[test]
fn the_child_process_appends_until_it_is_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("the seed is set");
    let log = open(Path::new(&dir));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        emit(&format!("READY {}\n", log.head()));
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| tokio::spawn(append_until_killed(log.clone(), seed, a)))
            .collect();
        for appender in appenders {
            appender.await.expect("the appender ran");
        }
    });
}

/// Writes one line to stdout at once; if the parent is gone, there is nobody to report to.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Appends requests of one to three events to random streams (so some span several streams,
/// some expect a revision and lose races) and prints `ACK first last request_id hashes…` for
/// each acknowledged one, hashing the records as the log now holds them.
async fn append_until_killed(log: Log, seed: u64, appender: u64) {
    let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(appender));
    // Should the parent vanish without killing us, stop on our own.
    let give_up = Instant::now() + Duration::from_secs(30);
    for k in 0u64.. {
        if Instant::now() > give_up {
            return;
        }
        let n = 1 + rng.below(3);
        let streams: Vec<String> = (0..n)
            .map(|_| format!("device:{}", rng.below(STREAMS)))
            .collect();
        let mut expectations = Vec::new();
        if rng.below(4) == 0 {
            let stream = streams[0].clone();
            let expected = match log.stream_revision(&stream).expect("reads") {
                Some(r) => Expected::Exact(r),
                None => Expected::NoStream,
            };
            expectations.push((stream, expected));
        }
        // The request id says how many events the request has: the parent checks it.
        let request_id = format!("s{seed}-a{appender}-r{k}-n{n}");
        let req = AppendRequest {
            org_id: ORG.into(),
            actor: events::Actor::system("crash test"),
            request_id: request_id.clone(),
            expectations,
            events: streams
                .iter()
                .enumerate()
                .map(|(i, s)| NewEvent::new(s.as_str(), tagged(s, i as u64)))
                .collect(),
            idempotency: None,
        };
        match log.append(req).await {
            Ok(a) => {
                let records = log
                    .read_raw(a.first, (a.last - a.first + 1) as usize)
                    .expect("reads");
                let hashes: Vec<String> = records.iter().map(|(_, r)| sha256_hex(r)).collect();
                emit(&format!(
                    "ACK {} {} {request_id} {}\n",
                    a.first,
                    a.last,
                    hashes.join(" ")
                ));
            }
            Err(AppendError::Conflict { .. }) => {}
            Err(AppendError::Busy) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => panic!("append failed: {e}"),
        }
    }
}

/// What an ACK line promised: the request and the hash of each of its records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    request_id: String,
    hash: String,
}

/// Parses `ACK first last request_id hash…` into one promise per position.
fn parse_ack(line: &str) -> Vec<(u64, Ack)> {
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("ACK"), "{line}");
    let first: u64 = parts.next().and_then(|p| p.parse().ok()).expect("first");
    let last: u64 = parts.next().and_then(|p| p.parse().ok()).expect("last");
    let request_id = parts.next().expect("a request id").to_owned();
    let hashes: Vec<&str> = parts.collect();
    assert_eq!(
        hashes.len() as u64,
        last - first + 1,
        "one hash per record: {line}"
    );
    (first..=last)
        .zip(hashes)
        .map(|(p, h)| {
            let ack = Ack {
                request_id: request_id.clone(),
                hash: h.to_owned(),
            };
            (p, ack)
        })
        .collect()
}

/// How many events the child put in a request, from its id (`…-n<count>`).
fn request_size(request_id: &str) -> u64 {
    request_id
        .rsplit_once("-n")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected request id {request_id}"))
}

/// Runs one child, kills it `delay` after it is ready, and returns its complete ACK lines.
fn run_and_kill(dir: &Path, seed: u64, delay: Duration, stderr_path: &Path) -> Vec<String> {
    let stderr = std::fs::File::create(stderr_path).expect("stderr file");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line cut short by the kill was never fully reported: it promises nothing.
            let Some(text) = line.strip_suffix(b"\n") else {
                break;
            };
            let text = String::from_utf8_lossy(text);
            // libtest prints `test <name> ... ` before running the child, on the same line.
            if text.contains("READY ") {
                let _ = ready_tx.send(());
            } else if let Some(at) = text.find("ACK ") {
                acks.push(text[at..].to_owned());
            }
        }
        acks
    });
    let ready = ready_rx.recv().is_ok();
    if ready {
        std::thread::sleep(delay);
    }
    child.kill().expect("the child can be killed");
    let status = child.wait().expect("the child is reaped");
    let acks = reader.join().expect("the reader thread");
    if !ready || status.signal() != Some(9) {
        let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
        panic!("seed {seed}: the child ended on its own ({status}) before the kill:\n{stderr}");
    }
    acks
}

/// What the parent has seen of the log so far, verified: after any later crash it must still
/// be there, byte for byte (whether or not it was acknowledged: a reopened log showed it).
#[derive(Default)]
struct Seen {
    /// The raw record at position `i + 1`.
    records: Vec<Vec<u8>>,
    /// The MAC of the last seen record: the chain continues from it.
    tip_mac: [u8; 32],
}

/// Everything that must hold after a crash: the log still holds everything seen before, the new
/// records continue the chain gap-free, every request among them is all there, and every new
/// promise is kept. The log's own full checks (`check_indexes`, `verify_chain`) run when `full`.
fn check_after_crash(log: &Log, seen: &mut Seen, new_acks: &[(u64, Ack)], full: bool, seed: u64) {
    let records = log.read_raw(1, usize::MAX).expect("the log reads");
    let head = log.head();
    assert_eq!(
        records.len() as u64,
        head,
        "seed {seed}: the log holds records past its head"
    );
    for (i, (position, _)) in records.iter().enumerate() {
        assert_eq!(
            *position,
            i as u64 + 1,
            "seed {seed}: positions are not gap-free"
        );
    }
    let old = seen.records.len();
    assert!(
        records.len() >= old,
        "seed {seed}: the log shrank from {old} to {head}"
    );
    for (i, (_, record)) in records[..old].iter().enumerate() {
        assert!(
            record == &seen.records[i],
            "seed {seed}: position {} changed",
            i + 1
        );
    }

    let key = common::test_key();
    let mut requests: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (position, record) in &records[old..] {
        let env = codec::decode_record(*position, record).expect("a committed record decodes");
        assert_eq!(
            env.position, *position,
            "seed {seed}: a record names another position"
        );
        let body = codec::mac_body(record).expect("has a body");
        assert_eq!(
            key.link(&seen.tip_mac, body),
            env.mac,
            "seed {seed}: the chain breaks at {position}"
        );
        seen.tip_mac = env.mac;
        requests.entry(env.request_id).or_default().push(*position);
        seen.records.push(record.clone());
    }
    for (request_id, positions) in &requests {
        let first = positions[0];
        let whole: Vec<u64> = (first..first + request_size(request_id)).collect();
        assert_eq!(
            positions, &whole,
            "seed {seed}: request {request_id} is not all there, or not together"
        );
    }
    for (position, ack) in new_acks {
        let Some(record) = seen.records.get(*position as usize - 1) else {
            panic!("seed {seed}: acknowledged position {position} was lost");
        };
        assert_eq!(
            sha256_hex(record),
            ack.hash,
            "seed {seed}: acknowledged position {position} holds other bytes"
        );
        assert!(
            requests
                .get(&ack.request_id)
                .is_some_and(|ps| ps.contains(position)),
            "seed {seed}: position {position} holds another request than {}",
            ack.request_id
        );
    }
    if full {
        assert_sound(log);
    }
}

#[test]
fn acknowledged_appends_survive_kill_9_at_random_moments() {
    let iterations: u64 = std::env::var("QZ_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("QZ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
    println!("crash test: {iterations} iterations, QZ_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("temp dir");
    let stderr_path = scratch.path().join("child.stderr");
    let mut rng = Rng(seed);
    // The log's own full checks (`check_indexes`, `verify_chain`) walk everything, which grows
    // with every kill; they run after every few kills and the last, the incremental checks of
    // `check_after_crash` after every one.
    let full_every = (iterations / 10).max(8);
    let mut seen = Seen::default();
    let mut acked = 0usize;
    let mut killed_with_nothing_acked = 0;
    for i in 0..iterations {
        let child_seed = seed.wrapping_add(i);
        let delay = Duration::from_millis(rng.below(MAX_KILL_DELAY_MS + 1));
        let lines = run_and_kill(dir.path(), child_seed, delay, &stderr_path);
        if lines.is_empty() {
            killed_with_nothing_acked += 1;
        }
        let new_acks: Vec<(u64, Ack)> = lines.iter().flat_map(|l| parse_ack(l)).collect();
        for (position, ack) in &new_acks {
            assert!(
                *position as usize > seen.records.len(),
                "seed {child_seed}: position {position} was acknowledged again, for {ack:?}"
            );
        }
        acked += new_acks.len();
        let log = open(dir.path());
        let full = i % full_every == 0 || i + 1 == iterations;
        check_after_crash(&log, &mut seen, &new_acks, full, child_seed);
        drop(log);
    }
    println!(
        "crash test: {iterations} kills, {} events in the log, {acked} acknowledged, \
         {killed_with_nothing_acked} kills before any acknowledgement",
        seen.records.len()
    );
    assert!(acked > 0, "no child ever acknowledged an append");
}
