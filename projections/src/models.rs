//! Every read model the API serves, folded together so one position describes them all.

use events::Recorded;
use serde::{Deserialize, Serialize};

use crate::Projection;
use crate::devices::Devices;
use crate::directory::Directory;
use crate::keys::Keys;
use crate::orgs::Orgs;
use crate::policies::Policies;
use crate::posture::Posture;
use crate::tokens::Tokens;
use crate::webhooks::Webhooks;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub orgs: Orgs,
    pub tokens: Tokens,
    pub keys: Keys,
    pub devices: Devices,
    pub directory: Directory,
    pub policies: Policies,
    pub posture: Posture,
    pub webhooks: Webhooks,
}

/// Each part's name and version, in field order (the order the snapshot encodes them in).
pub const PARTS: &[(&str, u32)] = &[
    (Orgs::NAME, Orgs::VERSION),
    (Tokens::NAME, Tokens::VERSION),
    (Keys::NAME, Keys::VERSION),
    (Devices::NAME, Devices::VERSION),
    (Directory::NAME, Directory::VERSION),
    (Policies::NAME, Policies::VERSION),
    (Posture::NAME, Posture::VERSION),
    (Webhooks::NAME, Webhooks::VERSION),
];

impl Projection for Models {
    const NAME: &'static str = "models";
    // Derived rather than packed by hand, so that adding, removing, reordering or bumping any
    // part changes it, however many parts there are.
    const VERSION: u32 = version_of(PARTS);

    fn apply(&mut self, r: &Recorded) {
        self.orgs.apply(r);
        self.tokens.apply(r);
        self.keys.apply(r);
        self.devices.apply(r);
        self.directory.apply(r);
        self.policies.apply(r);
        self.posture.apply(r);
        self.webhooks.apply(r);
    }
}

/// FNV-1a (32-bit) over each part's name, a separator and its version. Not a security
/// measure: it only has to tell code versions apart, and it must be a `const fn`.
pub const fn version_of(parts: &[(&str, u32)]) -> u32 {
    let mut hash = FNV_OFFSET;
    let mut i = 0;
    while i < parts.len() {
        hash = fnv1a(hash, parts[i].0.as_bytes());
        // Without a separator, ("ab", _) and ("a", _) followed by "b…" could collide.
        hash = fnv1a(hash, &[0]);
        hash = fnv1a(hash, &parts[i].1.to_be_bytes());
        i += 1;
    }
    hash
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

const fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn the_version_changes_when_any_part_is_bumped_added_or_moved() {
        assert_eq!(Models::VERSION, version_of(PARTS));
        let mut parts = PARTS.to_vec();
        for i in 0..parts.len() {
            let mut bumped = parts.clone();
            bumped[i].1 += 1;
            assert_ne!(
                version_of(&bumped),
                Models::VERSION,
                "bumping {}",
                parts[i].0
            );
        }
        parts.push(("policies", 1));
        assert_ne!(version_of(&parts), Models::VERSION, "another model");
        parts.pop();
        parts.swap(0, 1);
        assert_ne!(version_of(&parts), Models::VERSION, "parts reordered");
    }
}
