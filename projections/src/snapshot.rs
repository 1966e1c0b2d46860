//! Snapshots: a projection's state at a position, so start-up replays only the tail.
//!
//! File layout: `QZSNAP01` ‖ version(u32 BE) ‖ position(u64 BE) ‖ sha256(body) ‖ body, where the
//! body is the state encoded with the log's codec. A snapshot that fails any check is ignored
//! (the projection is rebuilt), never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"QZSNAP01";
const HEADER: usize = 8 + 4 + 8 + 32;

pub fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.snap"))
}

/// Writes a snapshot durably: temporary file, fsync, rename, fsync of the directory.
pub fn write<S: Serialize>(
    dir: &Path,
    name: &str,
    version: u32,
    position: u64,
    state: &S,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let body = events::codec::encode(state);
    let digest = Sha256::digest(&body);
    let path = path_for(dir, name);
    let tmp = path.with_extension("snap.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&version.to_be_bytes())?;
    f.write_all(&position.to_be_bytes())?;
    f.write_all(&digest)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Why a snapshot was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    Missing,
    OtherVersion(u32),
    Corrupt(String),
}

/// Reads a snapshot written by this `version`; returns its position and state.
pub fn read<S: DeserializeOwned>(
    dir: &Path,
    name: &str,
    version: u32,
) -> Result<(u64, S), Unusable> {
    let bytes = match std::fs::read(path_for(dir, name)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Corrupt(e.to_string())),
    };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Unusable::Corrupt("bad header".into()));
    }
    let found = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(Unusable::OtherVersion(found));
    }
    let position = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let body = &bytes[HEADER..];
    if Sha256::digest(body).as_slice() != &bytes[20..52] {
        return Err(Unusable::Corrupt("checksum mismatch".into()));
    }
    let state = events::codec::decode(body).map_err(|e| Unusable::Corrupt(e.to_string()))?;
    Ok((position, state))
}
