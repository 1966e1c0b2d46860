//! Checking the log: the MAC chain (invariant 4), the derived indexes, and the offline check of
//! a data directory that writes nothing into it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::chain::ChainKey;
use crate::checkpoint::{self, Checkpoint};
use crate::codec;
use crate::error::Error;
use crate::log::Log;
use crate::sled_store::SledStore;
use crate::store::{Direction, LogStore};

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records whose MAC verified.
    pub verified: u64,
    /// The head when the walk started.
    pub head: u64,
    /// The first position whose record is missing, undecodable or fails its MAC.
    pub first_bad: Option<u64>,
    pub reason: Option<String>,
    /// Where the walk started: 1, or one past the prefix anchor (whose MAC it chained from).
    pub first: u64,
}

/// Walks the chain over records `first..=head` of `store` (from the prefix anchor's MAC when
/// the prefix was dropped, else from position 1), stopping at the first bad one. Returns the
/// report and the MAC of the position `wanted`, if it verified (or is the anchor's).
fn walk(
    store: &dyn LogStore,
    key: &ChainKey,
    head: u64,
    wanted: Option<u64>,
) -> Result<(ChainReport, Option<[u8; 32]>), Error> {
    let anchor = crate::prefix::read_anchor(store)?;
    let (first, mut prev) = anchor
        .as_ref()
        .map_or((1, [0u8; 32]), |a| (a.position() + 1, a.checkpoint.mac));
    let mut verified = 0u64;
    let mut expected = first;
    let mut bad: Option<(u64, String)> = None;
    let mut wanted_mac = anchor
        .as_ref()
        .filter(|a| Some(a.position()) == wanted)
        .map(|a| a.checkpoint.mac);
    store.scan(
        first,
        head.max(first),
        Direction::Forward,
        &mut |pos, bytes| {
            if pos != expected {
                bad = Some((expected, "record missing".into()));
                return false;
            }
            let env = match codec::decode_record(pos, bytes) {
                Ok(env) => env,
                Err(e) => {
                    bad = Some((pos, format!("record does not decode: {e}")));
                    return false;
                }
            };
            let body = codec::mac_body(bytes).unwrap_or_default();
            if env.position != pos {
                bad = Some((
                    pos,
                    format!("record says it is at position {}", env.position),
                ));
                return false;
            }
            if key.link(&prev, body) != env.mac {
                bad = Some((pos, "MAC does not verify".into()));
                return false;
            }
            if Some(pos) == wanted {
                wanted_mac = Some(env.mac);
            }
            prev = env.mac;
            verified += 1;
            expected += 1;
            true
        },
    )?;
    if bad.is_none() && head >= first && verified != head + 1 - first {
        bad = Some((expected, "record missing".into()));
    }
    let report = ChainReport {
        verified,
        head,
        first_bad: bad.as_ref().map(|b| b.0),
        reason: bad.map(|b| b.1),
        first,
    };
    Ok((report, wanted_mac))
}

impl Log {
    /// Walks the chain from the first event to the head and reports the first bad position.
    pub fn verify_chain(&self) -> Result<ChainReport, Error> {
        Ok(walk(&*self.store()?, self.chain_key(), self.head(), None)?.0)
    }

    /// Checks the derived indexes against the log, 1:1, from the first retained record up to
    /// the head; returns what disagrees (empty when sound). Records below a list's base
    /// (dropped by retention) must not be indexed.
    pub fn check_indexes(&self) -> Result<Vec<String>, Error> {
        let store = self.store()?;
        let head = self.head();
        let first = self.first_position();
        let mut problems = Vec::new();
        let mut streams: HashMap<String, u64> = HashMap::new();
        let mut orgs: HashMap<String, u64> = HashMap::new();
        let mut rows = Vec::new();
        let mut expected = first;
        store.scan(
            first,
            head.max(first),
            Direction::Forward,
            &mut |pos, bytes| {
                if pos != expected {
                    problems.push(format!("gap: expected position {expected}, found {pos}"));
                }
                expected = pos + 1;
                match codec::decode_ref(pos, bytes) {
                    Ok(env) => {
                        // After a dropped prefix, a list's first record may have any number.
                        let next = *streams
                            .entry(env.stream.to_owned())
                            .or_insert(if first > 1 { env.revision } else { 0 });
                        if env.revision != next {
                            problems.push(format!(
                                "stream {} revision {} at {pos}, expected {next}",
                                env.stream, env.revision
                            ));
                        }
                        streams.insert(env.stream.to_owned(), env.revision + 1);
                        let seq = *orgs.entry(env.org_id.to_owned()).or_insert(if first > 1 {
                            env.org_seq.saturating_sub(1)
                        } else {
                            0
                        });
                        if env.org_seq != seq + 1 {
                            problems.push(format!(
                                "org {} sequence {} at {pos}, expected {}",
                                env.org_id,
                                env.org_seq,
                                seq + 1
                            ));
                        }
                        orgs.insert(env.org_id.to_owned(), env.org_seq);
                        rows.push((
                            env.stream.to_owned(),
                            env.revision,
                            env.org_id.to_owned(),
                            env.org_seq,
                            pos,
                            (env.event_type.to_owned(), env.actor.id.to_owned()),
                        ));
                    }
                    Err(e) => problems.push(e.to_string()),
                }
                true
            },
        )?;
        if head >= first && expected != head + 1 {
            problems.push(format!("head {head} but the log ends at {}", expected - 1));
        }
        let index = self
            .shared()
            .index
            .read()
            .map_err(|_| Error::Closed)?
            .clone();
        // Every record at or past its lists' bases has exactly one stream entry and one org
        // entry; below a base, none.
        let mut stream_entries = 0usize;
        let mut org_entries = 0usize;
        // What a fresh fold of the retained records gives the audit postings.
        let mut rebuilt = crate::index::Index::default();
        for (stream, rev, org, seq, pos, (event_type, actor)) in rows {
            let base = index.stream_base.get(&stream).copied().unwrap_or(0);
            if rev >= base {
                stream_entries += 1;
                let s = index
                    .streams
                    .get(&stream)
                    .and_then(|v| v.get((rev - base) as usize));
                if s != Some(&pos) {
                    problems.push(format!("stream index does not point at {pos}"));
                }
            }
            let first_seq = index.org_first(&org);
            if seq >= first_seq {
                org_entries += 1;
                rebuilt.push(crate::index::Entry {
                    stream: &stream,
                    org: &org,
                    event_type: &event_type,
                    actor: &actor,
                    position: pos,
                });
                let o = index
                    .orgs
                    .get(&org)
                    .and_then(|v| v.get((seq - first_seq) as usize));
                if o != Some(&pos) {
                    problems.push(format!("org index does not point at {pos}"));
                }
            }
        }
        let visible = |lists: &std::collections::HashMap<String, Vec<u64>>| {
            lists
                .values()
                .map(|v| v.iter().filter(|p| **p <= head).count())
                .sum::<usize>()
        };
        if visible(&index.streams) != stream_entries || visible(&index.orgs) != org_entries {
            problems.push("the index holds positions the log does not".into());
        }
        // The audit postings (by type and actor) hold exactly what a fresh fold of the retained
        // records does.
        let mut postings = index.postings.clone();
        for p in postings.values_mut() {
            for list in p.types.values_mut().chain(p.actors.values_mut()) {
                list.retain(|pos| *pos <= head);
            }
            p.types.retain(|_, v| !v.is_empty());
            p.actors.retain(|_, v| !v.is_empty());
        }
        postings.retain(|_, p| !p.types.is_empty() || !p.actors.is_empty());
        if postings != rebuilt.postings {
            problems.push("the type and actor postings disagree with the log".into());
        }
        Ok(problems)
    }
}

/// What `audit-log verify` is told.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The chain key file; `chain.key` in the data dir by default.
    pub chain_key_file: Option<PathBuf>,
    /// The checkpoint key file (its public half authenticates the checkpoint); without it the
    /// checkpoint's own public key is used, which proves integrity but not authorship.
    pub checkpoint_key_file: Option<PathBuf>,
}

/// The offline check of a data directory.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub chain: ChainReport,
    /// The newest signed checkpoint, if one was published.
    pub checkpoint: Option<Checkpoint>,
    /// Why the checkpoint does not hold, if it does not: a bad signature, or a log that was
    /// truncated or rewritten below it.
    pub checkpoint_problem: Option<String>,
    /// True when the checkpoint's signer was checked against the given key file.
    pub checkpoint_authenticated: bool,
    /// The signed anchor of a dropped prefix, where the chain was verified from.
    pub anchor: Option<Checkpoint>,
    /// Why the anchor does not hold, if it does not (its signature).
    pub anchor_problem: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.chain.first_bad.is_none()
            && self.checkpoint_problem.is_none()
            && self.anchor_problem.is_none()
    }
}

/// Verifies the log in `data_dir` without writing to it: opening sled writes to its directory,
/// so the log is copied to a temporary directory first and checked there. Works on a copy of a
/// live server's data dir, and on a live one (the copy is what a crash at that moment leaves).
pub fn verify_data_dir(data_dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, Error> {
    let log_dir = data_dir.join("log");
    if !log_dir.join("db").exists() {
        return Err(Error::Storage(format!(
            "{} holds no event log",
            data_dir.display()
        )));
    }
    let key_path = options
        .chain_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("chain.key"));
    let key = ChainKey::load(&key_path).map_err(|e| Error::ChainKey {
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("log");
    copy_dir(&log_dir, &copy)?;
    let store = SledStore::open(&copy, 64 * 1024 * 1024)?;
    // The head row may itself be damaged: walk to the last record whatever it says.
    let last = last_position(&store)?;
    let checkpoint = checkpoint::read(data_dir)?;
    let (chain, mac_at_checkpoint) =
        walk(&store, &key, last, checkpoint.as_ref().map(|c| c.position))?;
    let anchor = crate::prefix::read_anchor(&store)?.map(|a| a.checkpoint);
    let expected_key = match &options.checkpoint_key_file {
        Some(path) => Some(checkpoint::CheckpointKey::load(path)?.public_key()),
        None => None,
    };
    // The anchor stands for the dropped records: only the server's key may have signed it.
    let anchor_problem = anchor.as_ref().and_then(|a| {
        a.verify_signature(expected_key)
            .err()
            .map(|why| format!("the prefix anchor at position {}: {why}", a.position))
    });
    let mut report = VerifyReport {
        chain,
        checkpoint: checkpoint.clone(),
        checkpoint_problem: None,
        checkpoint_authenticated: false,
        anchor,
        anchor_problem,
    };
    if let Some(cp) = checkpoint {
        report.checkpoint_authenticated = expected_key.is_some();
        report.checkpoint_problem = match cp.verify_signature(expected_key) {
            Err(why) => Some(why),
            Ok(()) if cp.position > last => Some(format!(
                "the log ends at position {last}, below the signed checkpoint at {}: it was \
                 truncated",
                cp.position
            )),
            Ok(()) => match mac_at_checkpoint {
                Some(mac) if mac == cp.mac => None,
                Some(_) => Some(format!(
                    "the record at the signed checkpoint's position {} has another MAC: the log \
                     was rewritten",
                    cp.position
                )),
                // The chain broke before the checkpoint; `chain` says where.
                None => None,
            },
        };
    }
    drop(store);
    Ok(report)
}

fn last_position(store: &SledStore) -> Result<u64, Error> {
    let mut last = 0;
    store.scan(1, u64::MAX, Direction::Backward, &mut |pos, _| {
        last = pos;
        false
    })?;
    // A damaged head row must not hide a record cut off the end: take the larger.
    let head = store.head_row().ok().flatten().unwrap_or(0);
    Ok(last.max(head))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
