//! Golden replays: each read model folds a fixed history, and the digest of the resulting
//! state is kept in `digests.txt` with the model's VERSION. A snapshot is trusted only if its
//! VERSION matches the code's, so a change to what `apply` produces (or to the state's layout)
//! without a VERSION bump would make start-up load a snapshot the new code would not have
//! built: restart would change answers. This test catches that change.
//!
//! After changing a model on purpose: bump its `VERSION`, then regenerate the digests with
//! `UPDATE_GOLDEN=1 cargo test -p quickztna-projections --test golden`.

mod canonical;
mod history;
mod history_policy;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use projections::devices::Devices;
use projections::keys::Keys;
use projections::orgs::Orgs;
use projections::policies::Policies;
use projections::posture::Posture;
use projections::tokens::Tokens;
use projections::webhooks::Webhooks;
use projections::{Models, Projection};
use sha2::{Digest, Sha256};

/// One line of `digests.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Golden {
    version: u32,
    digest: String,
}

fn golden_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/digests.txt")
}

/// Folds the golden history into a fresh `P` and digests the state.
fn fold<P: Projection + serde::Serialize>() -> String {
    let mut state = P::default();
    for r in history::events() {
        state.apply(&r);
    }
    Sha256::digest(canonical::encode(&state))
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Every model's digest; fresh states get fresh hashers, so folding three times shows whether
/// a digest depends on one.
fn computed() -> BTreeMap<&'static str, Golden> {
    fn entry<P: Projection + serde::Serialize>() -> (&'static str, Golden) {
        let digests: Vec<String> = (0..3).map(|_| fold::<P>()).collect();
        assert!(
            digests.iter().all(|d| *d == digests[0]),
            "{}: the state's encoding depends on a random hash order (an unordered set?); \
             give it a deterministic order so it can be digested",
            P::NAME
        );
        let digest = digests[0].clone();
        let version = P::VERSION;
        (P::NAME, Golden { version, digest })
    }
    BTreeMap::from([
        entry::<Orgs>(),
        entry::<Tokens>(),
        entry::<Keys>(),
        entry::<Devices>(),
        entry::<Policies>(),
        entry::<Posture>(),
        entry::<Webhooks>(),
        entry::<Models>(),
    ])
}

fn parse(text: &str) -> BTreeMap<String, Golden> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(
                f.len(),
                3,
                "a digests.txt line is `name version sha256`: {l}"
            );
            let version = f[1].parse().expect("a version");
            let digest = f[2].to_owned();
            (f[0].to_owned(), Golden { version, digest })
        })
        .collect()
}

fn render(models: &BTreeMap<&str, Golden>) -> String {
    let mut out = String::from(
        "# name version sha256(canonical state after folding tests/golden/history.rs)\n\
         # Regenerate: UPDATE_GOLDEN=1 cargo test -p quickztna-projections --test golden\n",
    );
    for (name, g) in models {
        let _ = writeln!(out, "{name} {} {}", g.version, g.digest);
    }
    out
}

/// The problems to report; empty when the golden file describes the code.
fn compare(computed: &BTreeMap<&str, Golden>, stored: &BTreeMap<String, Golden>) -> Vec<String> {
    const REGENERATE: &str =
        "regenerate with `UPDATE_GOLDEN=1 cargo test -p quickztna-projections --test golden`";
    let mut problems = Vec::new();
    for (name, now) in computed {
        match stored.get(*name) {
            None => problems.push(format!("{name}: no golden digest yet; {REGENERATE}")),
            Some(was) if was == now => {}
            Some(was) if was.version == now.version => problems.push(format!(
                "{name}: the golden history now folds to another state ({} → {}) but VERSION \
                 is still {}. Snapshots written by the old code would be loaded as if this code \
                 had written them. Bump the VERSION of the model you changed, then {REGENERATE} \
                 (if only history.rs changed, just regenerate)",
                was.digest, now.digest, now.version
            )),
            Some(was) => problems.push(format!(
                "{name}: VERSION is {} but the golden file records {}; {REGENERATE}",
                now.version, was.version
            )),
        }
    }
    for name in stored.keys() {
        if !computed.contains_key(name.as_str()) {
            problems.push(format!("{name}: no such model any more; {REGENERATE}"));
        }
    }
    problems
}

#[test]
fn every_read_model_folds_the_golden_history_to_its_recorded_state() {
    let computed = computed();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(golden_file(), render(&computed)).expect("write digests.txt");
        return;
    }
    let text = std::fs::read_to_string(golden_file()).unwrap_or_default();
    let problems = compare(&computed, &parse(&text));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_changed_state_without_a_version_bump_is_refused() {
    let g = |version, digest: &str| Golden {
        version,
        digest: digest.into(),
    };
    let now = BTreeMap::from([("devices", g(1, "bbbb"))]);
    let stale = BTreeMap::from([("devices".to_owned(), g(1, "aaaa"))]);
    let problems = compare(&now, &stale);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("Bump the VERSION"), "{}", problems[0]);
    assert!(problems[0].contains("UPDATE_GOLDEN=1"), "{}", problems[0]);

    let bumped = BTreeMap::from([("devices", g(2, "bbbb"))]);
    let problems = compare(&bumped, &stale);
    assert!(
        problems[0].contains("golden file records 1"),
        "{problems:?}"
    );
    assert!(
        compare(
            &now,
            &BTreeMap::from([("devices".to_owned(), g(1, "bbbb"))])
        )
        .is_empty()
    );
}

/// A model that learns a new event must see it here, or the digest cannot notice when its
/// folding changes. Events no model folds are cheap to include, so every type is required.
#[test]
fn the_golden_history_holds_every_event_type() {
    let seen: std::collections::BTreeSet<&str> = history::events()
        .iter()
        .map(|r| r.event.event_type())
        .collect();
    let missing: Vec<&str> = events::Event::TYPES
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !seen.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "add {missing:?} to tests/golden/history.rs and regenerate the digests"
    );
}
