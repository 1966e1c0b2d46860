//! Signed checkpoints: `(position, mac)` of the log, signed with Ed25519.
//!
//! The symmetric chain proves that no record was changed, but not that none was cut off the
//! end: a log truncated at any position still verifies. So the server publishes a signed
//! checkpoint of its head on every snapshot and at shutdown — to `checkpoint.json` in the data
//! dir and to the process log, from where it can be shipped off the machine — and
//! `audit-log verify` checks the log against the newest one. The signing key should live
//! outside the data dir (`--checkpoint-key-file`): someone holding only the disk can then
//! neither forge a checkpoint nor hide a truncation behind an older one they delete.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::Error;

const DOMAIN: &[u8] = b"quickztna-checkpoint-v1";

/// The file a data dir's newest checkpoint is kept in.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoint.json")
}

/// The Ed25519 key that signs checkpoints. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct CheckpointKey(SigningKey);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CheckpointKey(public {})",
            hex::encode(self.public_key())
        )
    }
}

impl CheckpointKey {
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        CheckpointKey(SigningKey::from_bytes(&secret))
    }

    /// Reads a key file (32 secret bytes).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Storage(format!(
                "cannot read checkpoint key file {}: {e}",
                path.display()
            ))
        })?;
        let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::Storage(format!(
                "checkpoint key file {} must hold exactly 32 bytes",
                path.display()
            ))
        })?;
        Ok(CheckpointKey::from_bytes(secret))
    }

    /// Reads the key file, creating it (mode 0600) with a new key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        if path.exists() {
            return Self::load(path);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Storage(e.to_string()))?;
        crate::durable::replace(path, &[&secret])?;
        Ok(CheckpointKey::from_bytes(secret))
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `message`: for the other signed statements of this module's family
    /// ([`crate::org_checkpoint`]), each with its own domain prefix.
    pub(crate) fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs the log's state at `position`.
    pub fn sign(&self, position: u64, mac: [u8; 32], time: i64) -> Checkpoint {
        let signature = self.0.sign(&message(position, &mac, time)).to_bytes();
        Checkpoint {
            position,
            mac,
            time,
            public_key: self.public_key(),
            signature,
        }
    }
}

/// A signed statement "the log had this MAC at this position at this time".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: u64,
    #[serde(with = "hex::serde")]
    pub mac: [u8; 32],
    /// Microseconds since the Unix epoch when it was signed.
    pub time: i64,
    #[serde(with = "hex::serde")]
    pub public_key: [u8; 32],
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Checks the signature, against `expected` when given (the key file's public half),
    /// otherwise against the checkpoint's own public key (integrity only).
    pub fn verify_signature(&self, expected: Option<[u8; 32]>) -> Result<(), String> {
        if let Some(k) = expected
            && k != self.public_key
        {
            return Err(format!(
                "the checkpoint was signed by key {}, not by the given checkpoint key {}",
                hex::encode(self.public_key),
                hex::encode(k)
            ));
        }
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|e| format!("the checkpoint's public key is invalid: {e}"))?;
        key.verify_strict(
            &message(self.position, &self.mac, self.time),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| "the checkpoint's signature does not verify".to_string())
    }
}

fn message(position: u64, mac: &[u8; 32], time: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 48);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&position.to_be_bytes());
    m.extend_from_slice(mac);
    m.extend_from_slice(&time.to_be_bytes());
    m
}

/// Writes `checkpoint` as the data dir's newest, durably, and says so in the process log.
pub fn publish(data_dir: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(checkpoint).map_err(|e| Error::Storage(e.to_string()))?;
    crate::durable::replace(&path_in(data_dir), &[&json])?;
    tracing::info!(
        position = checkpoint.position,
        mac = %hex::encode(checkpoint.mac),
        signature = %hex::encode(checkpoint.signature),
        public_key = %hex::encode(checkpoint.public_key),
        "published a signed log checkpoint"
    );
    Ok(())
}

/// The data dir's newest checkpoint, if one was published.
pub fn read(data_dir: &Path) -> Result<Option<Checkpoint>, Error> {
    match std::fs::read(path_in(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Storage(format!("checkpoint.json does not parse: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
