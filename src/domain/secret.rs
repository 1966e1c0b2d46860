//! Secrets shown once: API tokens, pre-auth keys, node credentials.
//!
//! A secret is a kind prefix plus 256 random bits in base64url; the bits are drawn at the edge
//! ([`crate::mint::secret`]). Only its SHA-256 is kept; a presented secret is hashed, looked up
//! by hash, and the stored hash compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly minted secret. `Debug` never shows the value.
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

impl Secret {
    /// The secret `kind_prefix` + base64url(`raw`). `raw` must be 256 bits from a secure random
    /// source: [`crate::mint::secret`] is the one caller outside the tests.
    pub fn from_random(kind_prefix: &str, raw: [u8; 32]) -> Secret {
        let value = format!("{kind_prefix}{}", URL_SAFE_NO_PAD.encode(raw));
        let display_prefix = value.chars().take(kind_prefix.len() + 6).collect();
        Secret {
            hash: hash(&value),
            value,
            display_prefix,
        }
    }
}

pub fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

pub fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_its_prefix_and_base64url_with_a_short_display_prefix() {
        let s = Secret::from_random("qzk_", [0xfb; 32]);
        assert_eq!(s.value, format!("qzk_{}-_s", "-_v7".repeat(10)));
        assert_eq!(s.display_prefix, "qzk_-_v7-_");
        assert_eq!(s.hash, hash(&s.value));
        assert!(!format!("{s:?}").contains(&s.value));
        assert!(equal(&s.hash, &hash(&s.value)));
        assert!(!equal(&s.hash, &hash("qzk_other")));
    }
}
