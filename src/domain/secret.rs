//! Secrets shown once: API tokens, pre-auth keys, node credentials.
//!
//! A secret is a kind prefix plus 256 random bits in base64url. Only its SHA-256 is kept; a
//! presented secret is hashed, looked up by hash, and the stored hash compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated secret. `Debug` never shows the value.
pub struct Secret {
    pub value: String,
    pub hash: [u8; 32],
    /// The first characters, safe to display and log (`qz_AbC123`).
    pub display_prefix: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}…)", self.display_prefix)
    }
}

/// Generates a secret such as `qz_…` (tokens), `qzk_…` (pre-auth keys) or `qzn_…` (nodes).
pub fn generate(kind_prefix: &str) -> Secret {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the OS random source works");
    let value = format!("{kind_prefix}{}", URL_SAFE_NO_PAD.encode(raw));
    let display_prefix = value.chars().take(kind_prefix.len() + 6).collect();
    Secret {
        hash: hash(&value),
        value,
        display_prefix,
    }
}

pub fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

pub fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}
