//! The tamper-evident chain: every record's MAC covers the previous record's MAC.
//!
//! `mac = HMAC-SHA256(key, prev_mac ‖ body)`, with `prev_mac` all zeros for position 1. The key
//! lives in a file (mode 0600) in the data dir or elsewhere (`--chain-key-file`), so someone with
//! only the disk cannot re-forge the chain.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// The chain's secret key. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl ChainKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    pub fn random() -> Self {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the OS random source works");
        ChainKey(b)
    }

    /// Loads the key file; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path)?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::Storage(format!(
                "chain key file {} must hold exactly 32 bytes",
                path.display()
            ))
        })?;
        Ok(ChainKey(arr))
    }

    /// Loads the key file, creating it (mode 0600) with a random key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        match Self::load(path) {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ChainKey::random();
                crate::durable::replace(path, &[&key.0])?;
                Ok(key)
            }
            other => other,
        }
    }

    /// The MAC linking `body` to the record before it.
    pub fn link(&self, prev_mac: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(prev_mac);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Derives a subkey for another purpose (cursors, idempotency fingerprints), so one key file
    /// serves them all without reusing the chain key itself.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        self.link(&[0u8; 32], purpose.as_bytes())
    }
}
