//! The log against a model: random appends (optimistic concurrency, idempotency keys,
//! multi-stream requests), races and restarts, compared after every step with a few lines of
//! in-memory bookkeeping that say what the log must answer (invariants 1, 2 and 4).

mod common;

use std::collections::HashMap;

use events::{AppendError, AppendRequest, Appended, Event, Expected, Log};
use proptest::prelude::*;

use common::{assert_sound, open, request_expecting, request_to, with_idempotency};

const STREAMS: [&str; 4] = ["device:a", "device:b", "device:c", "device:d"];

/// What an append expects of its stream, as the generator picks it.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    Exists,
    /// `Exact` of whatever the model says the stream's revision is now (0 if it has none).
    Current,
    /// `Exact` of a small fixed revision: usually stale, sometimes right.
    Fixed(u64),
}

#[derive(Debug, Clone)]
enum Op {
    /// One request: an event for each stream listed, an optional expectation on one stream,
    /// and an optional idempotency key (key index, fingerprint byte).
    Append {
        streams: Vec<usize>,
        expect: Option<(usize, Expect)>,
        idempotency: Option<(u8, u8)>,
    },
    /// `contenders` concurrent requests of `count` events, all expecting the stream as the
    /// model sees it now: exactly one must win.
    Race {
        stream: usize,
        contenders: usize,
        count: usize,
    },
    /// Close the log and open it again.
    Restart,
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        1 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::Exists),
        3 => Just(Expect::Current),
        1 => (0u64..6).prop_map(Expect::Fixed),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            prop::collection::vec(0..STREAMS.len(), 1..=5),
            prop::option::of((0..STREAMS.len(), expect_strategy())),
            prop::option::weighted(0.4, (0u8..3, 0u8..2)),
        )
            .prop_map(|(streams, expect, idempotency)| Op::Append {
                streams,
                expect,
                idempotency,
            }),
        2 => (0..STREAMS.len(), 2usize..=6, 1usize..=3).prop_map(|(stream, contenders, count)| {
            Op::Race {
                stream,
                contenders,
                count,
            }
        }),
        1 => Just(Op::Restart),
    ]
}

/// What the log should hold and answer, kept the simplest possible way.
#[derive(Default)]
struct Model {
    /// `(stream, revision, event)` of position `i + 1`.
    records: Vec<(String, u64, Event)>,
    revisions: HashMap<String, u64>,
    /// Idempotency key → (fingerprint, first, last) of the request that first used it.
    keys: HashMap<String, ([u8; 32], u64, u64)>,
}

impl Model {
    fn head(&self) -> u64 {
        self.records.len() as u64
    }

    fn expected(&self, stream: &str, expect: Expect) -> Expected {
        match expect {
            Expect::Any => Expected::Any,
            Expect::NoStream => Expected::NoStream,
            Expect::Exists => Expected::Exists,
            Expect::Current => Expected::Exact(self.revisions.get(stream).copied().unwrap_or(0)),
            Expect::Fixed(r) => Expected::Exact(r),
        }
    }

    /// What the log must answer to `req`, applying it if it succeeds.
    fn append(&mut self, req: &AppendRequest) -> Result<Appended, AppendError> {
        if let Some(idem) = &req.idempotency
            && let Some(&(fingerprint, first, last)) = self.keys.get(&idem.key)
        {
            if fingerprint != idem.fingerprint {
                return Err(AppendError::IdempotencyMismatch);
            }
            return Ok(Appended {
                first,
                last,
                replayed: true,
            });
        }
        for (stream, expected) in &req.expectations {
            let actual = self.revisions.get(stream).copied();
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => actual.is_none(),
                Expected::Exists => actual.is_some(),
                Expected::Exact(r) => actual == Some(*r),
            };
            if !ok {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        let first = self.head() + 1;
        for e in &req.events {
            let revision = self.revisions.get(&e.stream).map_or(0, |r| r + 1);
            self.revisions.insert(e.stream.clone(), revision);
            self.records
                .push((e.stream.clone(), revision, e.event.clone()));
        }
        let last = self.head();
        if let Some(idem) = &req.idempotency {
            self.keys
                .insert(idem.key.clone(), (idem.fingerprint, first, last));
        }
        Ok(Appended {
            first,
            last,
            replayed: false,
        })
    }
}

/// Compares everything the log holds with the model.
fn assert_matches(log: &Log, model: &Model) {
    assert_eq!(log.head(), model.head(), "head");
    assert_sound(log);
    let recorded = log.read_forward(1, usize::MAX).expect("the log reads");
    assert_eq!(recorded.len(), model.records.len());
    for (r, (stream, revision, event)) in recorded.iter().zip(&model.records) {
        let at = r.position();
        assert_eq!(&r.envelope.stream, stream, "stream at {at}");
        assert_eq!(r.envelope.revision, *revision, "revision at {at}");
        assert_eq!(&r.event, event, "event at {at}");
    }
    for stream in STREAMS {
        assert_eq!(
            log.stream_revision(stream).expect("reads"),
            model.revisions.get(stream).copied(),
            "revision of {stream}"
        );
        let positions: Vec<u64> = log
            .read_stream(stream, 0, usize::MAX)
            .expect("reads")
            .iter()
            .map(|r| r.position())
            .collect();
        let expected: Vec<u64> = (1..=model.head())
            .filter(|p| model.records[*p as usize - 1].0 == stream)
            .collect();
        assert_eq!(positions, expected, "positions of {stream}");
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = open(dir.path());
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                streams,
                expect,
                idempotency,
            } => {
                let names: Vec<&str> = streams.iter().map(|i| STREAMS[*i]).collect();
                let mut req = request_to(&names);
                if let Some((i, expect)) = expect {
                    let stream = STREAMS[i];
                    req.expectations
                        .push((stream.to_owned(), model.expected(stream, expect)));
                }
                if let Some((key, fingerprint)) = idempotency {
                    req = with_idempotency(req, &format!("key-{key}"), fingerprint);
                }
                let want = model.append(&req);
                let got = log.append(req.clone()).await;
                assert_eq!(got, want, "answer to {req:?}");
            }
            Op::Race {
                stream,
                contenders,
                count,
            } => {
                let stream = STREAMS[stream];
                let expected = match model.revisions.get(stream) {
                    Some(r) => Expected::Exact(*r),
                    None => Expected::NoStream,
                };
                let req = request_expecting(stream, expected, count);
                let answers =
                    futures::future::join_all((0..contenders).map(|_| log.append(req.clone())))
                        .await;
                let winners: Vec<&Appended> =
                    answers.iter().filter_map(|a| a.as_ref().ok()).collect();
                assert_eq!(winners.len(), 1, "exactly one racer wins: {answers:?}");
                assert_eq!(
                    Ok(*winners[0]),
                    model.append(&req),
                    "the winner's positions"
                );
                for a in &answers {
                    if let Err(e) = a {
                        let want = AppendError::Conflict {
                            stream: stream.to_owned(),
                            expected: expected.to_string(),
                            actual: model.revisions.get(stream).copied(),
                        };
                        assert_eq!(e, &want, "a losing racer");
                    }
                }
            }
            Op::Restart => {
                log.close();
                drop(log);
                log = open(dir.path());
                assert_matches(&log, &model);
            }
        }
        assert_eq!(log.head(), model.head(), "head after an op");
    }
    assert_matches(&log, &model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_appends_races_and_restarts_behave_like_the_model(
        ops in prop::collection::vec(op_strategy(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops));
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn an_idempotent_repeat_after_a_restart_returns_the_original_positions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    block_on(async {
        log.append(request_to(&["device:x"]))
            .await
            .expect("appends");
        let first = log
            .append(with_idempotency(
                request_to(&["device:y", "device:z"]),
                "k",
                1,
            ))
            .await
            .expect("appends");
        assert_eq!((first.first, first.last, first.replayed), (2, 3, false));
        log.close();
    });
    drop(log);

    let log = open(dir.path());
    block_on(async {
        let repeat = log
            .append(with_idempotency(
                request_to(&["device:y", "device:z"]),
                "k",
                1,
            ))
            .await
            .expect("the repeat is answered");
        assert_eq!((repeat.first, repeat.last, repeat.replayed), (2, 3, true));
        let other = log
            .append(with_idempotency(request_to(&["device:y"]), "k", 2))
            .await;
        assert_eq!(other, Err(AppendError::IdempotencyMismatch));
    });
    assert_eq!(
        log.head(),
        3,
        "neither the repeat nor the mismatch wrote anything"
    );
    assert_sound(&log);
}

#[test]
fn a_request_refused_for_a_conflict_writes_none_of_its_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    block_on(async {
        log.append(request_to(&["device:x"]))
            .await
            .expect("appends");
        let mut req = request_to(&["device:y", "device:x", "device:z"]);
        req.expectations
            .push(("device:x".into(), Expected::NoStream));
        let refused = log.append(req).await;
        assert!(
            matches!(
                refused,
                Err(AppendError::Conflict {
                    actual: Some(0),
                    ..
                })
            ),
            "{refused:?}"
        );
    });
    assert_eq!(log.head(), 1);
    assert_eq!(log.stream_revision("device:y").expect("reads"), None);
    assert_sound(&log);
}

#[test]
fn a_request_without_events_is_refused_as_invalid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let refused = log.append_blocking(request_to(&[]));
    assert!(
        matches!(refused, Err(AppendError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(log.head(), 0);
}
