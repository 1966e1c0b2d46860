//! `quickztna audit-log verify --export FILE`: an auditor's check of an export, with no server,
//! no data dir and no secret.
//!
//! It reads the file as a stream (json or jsonl, gzipped or not; constant memory), and for
//! every event recomputes its audit chain hash from its content and its `previous` link
//! (`crate::audit::chain::next`), and checks that ids follow one another and that each
//! `previous` is the prior event's hash. Then it checks the signed organization checkpoint at
//! the end: that it is of the last event and its hash, and its Ed25519 signature, against
//! `--public-key` when given. Any changed, added, removed or reordered event breaks a link;
//! a cut-off end loses or contradicts the checkpoint; a recomputed chain fails the signature.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use events::OrgCheckpoint;
use flate2::read::MultiGzDecoder;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::audit::chain::{GENESIS, Hash, next, parse_hash};
use crate::cli::CliError;
use crate::http::event_view::EventView;

/// Checks the export at `path`; prints a report, and fails naming the first bad event.
pub fn run(path: &Path, public_key: Option<[u8; 32]>) -> Result<(), CliError> {
    let file = File::open(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    let mut raw = BufReader::with_capacity(256 * 1024, file);
    let gzipped = raw
        .fill_buf()
        .map(|b| b.starts_with(&[0x1f, 0x8b]))
        .unwrap_or(false);
    let reader: Box<dyn BufRead> = if gzipped {
        // An export may be several gzip members (e.g. files concatenated): read them all.
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    };
    let mut check = Check::default();
    let jsonl = is_jsonl(path, reader, &mut check);
    let report = check.finish(public_key);
    print!("{}", report.text(path, jsonl, gzipped));
    match report.failure {
        None => Ok(()),
        Some(f) => Err(CliError::new(format!("the export does not verify: {f}"))),
    }
}

/// Reads the file into `check`; says which format it was read as.
fn is_jsonl(path: &Path, mut reader: Box<dyn BufRead>, check: &mut Check) -> bool {
    let jsonl = if super::export::is_jsonl_name(path) {
        true
    } else if path
        .to_string_lossy()
        .trim_end_matches(".gz")
        .ends_with(".json")
    {
        false
    } else {
        // The json format's first line is its header, which opens `items`.
        let head = reader.fill_buf().map(|b| b.to_vec()).unwrap_or_default();
        let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
        !String::from_utf8_lossy(first).trim_end().ends_with('[')
    };
    if jsonl {
        read_jsonl(reader, check);
    } else {
        read_json(reader, check);
    }
    jsonl
}

fn read_jsonl(reader: Box<dyn BufRead>, check: &mut Check) {
    for (n, line) in reader.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return check.unreadable(format!("line {} cannot be read: {e}", n + 1)),
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return check.unreadable(format!("line {} is not JSON: {e}", n + 1)),
        };
        if value.get("id").is_none() && value.get("checkpoint").is_some() {
            check.trailer(&value);
        } else {
            check.event(value);
        }
    }
}

fn read_json(reader: Box<dyn BufRead>, check: &mut Check) {
    let mut de = serde_json::Deserializer::from_reader(reader);
    if let Err(e) = ExportSeed(check)
        .deserialize(&mut de)
        .and_then(|()| de.end())
    {
        check.unreadable(format!("the file is not a whole json export: {e}"));
    }
}

/// What the walk found: the first failure, and what an auditor wants to know.
#[derive(Default)]
struct Check {
    org_id: Option<String>,
    count: u64,
    first: Option<(u64, String)>,
    last: Option<(u64, Hash, String)>,
    checkpoint: Option<Option<OrgCheckpoint>>,
    /// Events read after the checkpoint (a jsonl export ends with it).
    after_checkpoint: bool,
    failure: Option<String>,
}

impl Check {
    fn fail(&mut self, why: String) {
        self.failure.get_or_insert(why);
    }

    fn unreadable(&mut self, why: String) {
        let at = match &self.last {
            Some((id, ..)) => format!(" (after event {id})"),
            None => String::new(),
        };
        self.fail(format!("{why}{at}"));
    }

    fn trailer(&mut self, value: &Value) {
        if let Some(org) = value.get("org_id").and_then(Value::as_str) {
            self.org(org);
        }
        match serde_json::from_value::<Option<OrgCheckpoint>>(value["checkpoint"].clone()) {
            Ok(cp) => self.checkpoint = Some(cp),
            Err(e) => self.fail(format!("the checkpoint does not parse: {e}")),
        }
    }

    fn org(&mut self, org: &str) {
        match &self.org_id {
            None => self.org_id = Some(org.to_owned()),
            Some(o) if o == org => {}
            Some(o) => {
                let why = format!("the export mixes organizations {o} and {org}");
                self.fail(why)
            }
        }
    }

    fn event(&mut self, value: Value) {
        if self.failure.is_some() {
            self.count += 1;
            return;
        }
        if self.checkpoint.is_some() {
            self.after_checkpoint = true;
        }
        let view: EventView = match serde_json::from_value(value.clone()) {
            Ok(v) => v,
            Err(e) => {
                let id = value.get("id").map(Value::to_string);
                return match id {
                    Some(id) => self.fail(format!("event {id} is not a valid event: {e}")),
                    None => self.unreadable(format!("an event without an id: {e}")),
                };
            }
        };
        self.count += 1;
        let id = view.id;
        self.org(&view.org_id);
        // Fields the chain does not cover (added, or renamed) would pass the hash unseen.
        let covered = serde_json::to_value(&view).ok();
        if covered.as_ref() != Some(&value) {
            return self.fail(format!(
                "event {id} has fields its chain hash does not cover"
            ));
        }
        let Some(link) = &view.chain else {
            return self.fail(format!(
                "event {id} has no chain link: the export was made with --event-type, and \
                 cannot be verified"
            ));
        };
        let (Some(previous), Some(hash)) = (parse_hash(&link.previous), parse_hash(&link.hash))
        else {
            return self.fail(format!("event {id} has a malformed chain link"));
        };
        match &self.last {
            // An id of u64::MAX has no successor: whatever follows it is out of order.
            Some((last, ..)) if last.checked_add(1) != Some(id) => {
                return self.fail(if last.checked_add(2) == Some(id) {
                    format!(
                        "event {id} follows event {last}: event {} is missing",
                        last + 1
                    )
                } else if *last < id {
                    format!(
                        "event {id} follows event {last}: events {} to {} are missing",
                        last + 1,
                        id - 1
                    )
                } else {
                    format!("event {id} follows event {last}: events are out of order")
                });
            }
            Some((last, last_hash, _)) if previous != *last_hash => {
                return self.fail(format!(
                    "event {id}'s previous hash is not event {last}'s hash"
                ));
            }
            None if id == 1 && previous != GENESIS => {
                return self.fail("event 1's previous hash is not the chain's start".into());
            }
            _ => {}
        }
        if next(&previous, &view) != hash {
            return self.fail(format!(
                "event {id} was altered: its content does not match its chain hash"
            ));
        }
        if self.first.is_none() {
            self.first = Some((id, view.time.clone()));
        }
        self.last = Some((id, hash, view.time));
    }

    fn finish(mut self, public_key: Option<[u8; 32]>) -> Report {
        let last = self.last.as_ref().map(|(id, ..)| *id);
        let ends = match last {
            Some(id) => format!("the export ends at event {id}"),
            None => "the export has no events".to_owned(),
        };
        let mut signature = None;
        match (self.checkpoint.take(), &self.last) {
            _ if self.failure.is_some() => {}
            _ if self.after_checkpoint => {
                self.fail(format!("events follow the checkpoint; {ends}"));
            }
            (None, _) => self.fail(format!(
                "{ends} without its checkpoint: it was cut off, or is not a whole export"
            )),
            (Some(None), None) => {}
            (Some(None), Some(_)) => self.fail(format!("{ends}, but its checkpoint is null")),
            (Some(Some(cp)), last) => {
                match last {
                    None => self.fail("the export has a checkpoint but no events".into()),
                    Some((id, _, _)) if cp.id != *id => self.fail(format!(
                        "the checkpoint is of event {}, but {ends}: it was cut off or extended",
                        cp.id
                    )),
                    Some((id, hash, _)) if cp.hash != *hash => self.fail(format!(
                        "the checkpoint's hash is not event {id}'s: the chain was recomputed"
                    )),
                    _ if Some(&cp.org_id) != self.org_id.as_ref() => {
                        self.fail("the checkpoint is of another organization".into())
                    }
                    _ => {}
                }
                if let Err(e) = cp.verify(public_key) {
                    self.fail(e);
                }
                signature = Some(cp);
            }
        }
        Report {
            org_id: self.org_id,
            count: self.count,
            first: self.first,
            last: self.last.map(|(id, _, time)| (id, time)),
            checkpoint: signature,
            key_given: public_key.is_some(),
            failure: self.failure,
        }
    }
}

struct Report {
    org_id: Option<String>,
    count: u64,
    first: Option<(u64, String)>,
    last: Option<(u64, String)>,
    checkpoint: Option<OrgCheckpoint>,
    key_given: bool,
    failure: Option<String>,
}

impl Report {
    fn text(&self, path: &Path, jsonl: bool, gzipped: bool) -> String {
        let mut out = format!(
            "export:       {} ({}{})\n",
            path.display(),
            if jsonl { "jsonl" } else { "json" },
            if gzipped { ", gzip" } else { "" }
        );
        out += &format!(
            "organization: {}\nevents:       {}\n",
            self.org_id.as_deref().unwrap_or("-"),
            self.count
        );
        if let (Some((a, ta)), Some((b, tb))) = (&self.first, &self.last) {
            out += &format!("ids:          {a} to {b} ({ta} to {tb})\n");
            if *a > 1 {
                out += &format!(
                    "              the link to event {} is taken on trust: it is before the \
                     export\n",
                    a - 1
                );
            }
        }
        if let Some(cp) = &self.checkpoint {
            out += &format!(
                "checkpoint:   event {}, signed {} by key {}\n",
                cp.id,
                events::format_time(cp.time),
                hex::encode(cp.public_key)
            );
            if self.failure.is_none() && !self.key_given {
                out += "              the signature is the key's own; compare the key with the \
                        server's (`public_key` of GET /api/v1/audit-log/checkpoint, or pass \
                        --public-key)\n";
            }
        }
        out += match &self.failure {
            None => "result:       OK, every chain link and the checkpoint verify\n".to_owned(),
            Some(f) => format!("result:       FAILED: {f}\n"),
        }
        .as_str();
        out
    }
}

/// The json format as a stream: the events of `items` go to the check one at a time.
struct ExportSeed<'a>(&'a mut Check);

impl<'de> DeserializeSeed<'de> for ExportSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ExportSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an audit-log export object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut saw_items = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "org_id" => {
                    if let Some(org) = map.next_value::<Option<String>>()? {
                        self.0.org(&org);
                    }
                }
                "items" => {
                    map.next_value_seed(Items(self.0))?;
                    saw_items = true;
                }
                "checkpoint" => {
                    let value: Value = map.next_value()?;
                    self.0.trailer(&serde_json::json!({ "checkpoint": value }));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_items {
            return Err(de::Error::missing_field("items"));
        }
        Ok(())
    }
}

struct Items<'a>(&'a mut Check);

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(event) = seq.next_element::<Value>()? {
            self.0.event(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use events::CheckpointKey;
    use proptest::prelude::*;

    use super::*;
    use crate::audit::chain::link;

    /// An organization's events `first..first + n` as an export carries them, and the hash
    /// before the first.
    fn chained(first: u64, n: u64) -> Vec<Value> {
        let mut hash = [7u8; 32];
        if first == 1 {
            hash = GENESIS;
        }
        let examples = crate::http::event_view::examples();
        (first..first + n)
            .map(|id| {
                let mut view: EventView =
                    serde_json::from_value(examples[id as usize % examples.len()].clone()).unwrap();
                view.id = id;
                let (l, h) = link(&hash, &view);
                view.chain = Some(l);
                hash = h;
                serde_json::to_value(&view).unwrap()
            })
            .collect()
    }

    fn check(events: &[Value], checkpoint_of: Option<&Value>) -> Option<String> {
        let mut c = Check::default();
        for e in events {
            c.event(e.clone());
        }
        let cp = checkpoint_of.map(|last| {
            let hash = parse_hash(last["chain"]["hash"].as_str().unwrap()).unwrap();
            let org = last["org_id"].as_str().unwrap();
            let id = last["id"].as_u64().unwrap();
            CheckpointKey::from_bytes([1; 32]).sign_org(org, id, hash, 1_764_000_000_000_000)
        });
        c.trailer(&serde_json::json!({ "checkpoint": cp }));
        c.finish(Some(CheckpointKey::from_bytes([1; 32]).public_key()))
            .failure
    }

    #[test]
    fn an_honest_run_verifies_from_the_start_or_from_the_middle() {
        for first in [1, 40] {
            let events = chained(first, 30);
            assert_eq!(check(&events, events.last()), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn removing_swapping_or_changing_an_event_is_always_caught(
            n in 3u64..40, at in 0usize..40, other in 0usize..40, how in 0u8..4,
        ) {
            let events = chained(1, n);
            let (at, other) = (at % n as usize, other % n as usize);
            let mut tampered = events.clone();
            match how {
                0 => {
                    // Without its first event an export is that of a later window: the link
                    // before an export's first event is on trust (the report says so).
                    prop_assume!(at > 0);
                    tampered.remove(at);
                }
                1 => {
                    prop_assume!(at != other && tampered[at] != tampered[other]);
                    tampered.swap(at, other);
                }
                2 => { tampered[at]["request_id"] = "forged".into(); }
                _ => { tampered.truncate(at); }
            }
            prop_assume!(tampered != events);
            // The checkpoint the server signed is of the real last event.
            prop_assert!(check(&tampered, events.last()).is_some());
        }
    }
}
