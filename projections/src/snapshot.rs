//! Snapshots: a projection's state at a position, so start-up replays only the tail.
//!
//! File layout: `QZSNAP02` ‖ version(u32 BE) ‖ position(u64 BE) ‖ mac(32) ‖ sha256(version ‖
//! position ‖ mac ‖ body) ‖ body, where the body is the state encoded with the log's codec and
//! `mac` is the chain MAC of the log's record at `position` (zeros at position 0). The MAC ties
//! the snapshot to one history: a snapshot copied from another data dir, or kept across a
//! restore of an older log, names a position that exists but holds another record. A snapshot
//! that fails any check is ignored (the projection is rebuilt), never trusted.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// `01` snapshots carried no MAC: they are read as corrupt and rebuilt once.
const MAGIC: &[u8; 8] = b"QZSNAP02";
const SUMMED: std::ops::Range<usize> = 8..52;
const HEADER: usize = 8 + 4 + 8 + 32 + 32;

/// The chain MAC a snapshot at position 0 carries: there is no record to tie it to.
pub const NO_MAC: [u8; 32] = [0; 32];

/// A snapshot as read back: where it stands in the log, and the state there.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<S> {
    pub position: u64,
    /// The chain MAC of the log's record at `position`, as it was when the snapshot was taken.
    pub mac: [u8; 32],
    pub state: S,
}

pub fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.snap"))
}

/// Writes a snapshot durably: temporary file, fsync, rename, fsync of the directory.
pub fn write<S: Serialize>(
    dir: &Path,
    name: &str,
    version: u32,
    position: u64,
    mac: &[u8; 32],
    state: &S,
) -> std::io::Result<()> {
    events::durable::create_private_dir_all(dir)?;
    let body = events::codec::encode(state);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&version.to_be_bytes());
    header.extend_from_slice(&position.to_be_bytes());
    header.extend_from_slice(mac);
    let digest = checksum(&header[SUMMED], &body);
    header.extend_from_slice(&digest);
    events::durable::replace(&path_for(dir, name), &[&header, &body])
}

/// Why a snapshot was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    Missing,
    OtherVersion(u32),
    Corrupt(String),
}

/// Reads a snapshot written by this `version`. Whether it belongs to the log at hand is the
/// caller's question: compare its `mac` with the log's record at its `position`.
pub fn read<S: DeserializeOwned>(
    dir: &Path,
    name: &str,
    version: u32,
) -> Result<Snapshot<S>, Unusable> {
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
    let body = &bytes[HEADER..];
    if checksum(&bytes[SUMMED], body) != bytes[SUMMED.end..HEADER] {
        return Err(Unusable::Corrupt("checksum mismatch".into()));
    }
    let position = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let mac = bytes[20..52].try_into().expect("32 bytes");
    let state = events::codec::decode(body).map_err(|e| Unusable::Corrupt(e.to_string()))?;
    Ok(Snapshot {
        position,
        mac,
        state,
    })
}

/// The version, position and chain MAC of the snapshot `name`, from its header alone (what the
/// prefix drop checks before relying on it); `None` when there is none or it is not readable.
pub fn read_header(dir: &Path, name: &str) -> Option<(u32, u64, [u8; 32])> {
    use std::io::Read;
    let mut header = [0u8; HEADER];
    std::fs::File::open(path_for(dir, name))
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    let version = u32::from_be_bytes(header[8..12].try_into().ok()?);
    let position = u64::from_be_bytes(header[12..20].try_into().ok()?);
    Some((version, position, header[20..52].try_into().ok()?))
}

fn checksum(header: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(body);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_with_its_position_and_mac() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", 7, 42, &[5; 32], &vec![1u32, 2, 3]).unwrap();
        let back = read::<Vec<u32>>(dir.path(), "t", 7).unwrap();
        assert_eq!(
            (back.position, back.mac, back.state),
            (42, [5; 32], vec![1, 2, 3])
        );
        assert_eq!(
            read::<Vec<u32>>(dir.path(), "t", 8).unwrap_err(),
            Unusable::OtherVersion(7)
        );
    }

    #[test]
    fn a_damaged_mac_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", 7, 42, &[5; 32], &vec![1u32]).unwrap();
        let path = path_for(dir.path(), "t");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            read::<Vec<u32>>(dir.path(), "t", 7),
            Err(Unusable::Corrupt(_))
        ));
    }

    #[test]
    fn a_snapshot_without_a_mac_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", 7, 0, &NO_MAC, &0u8).unwrap();
        let path = path_for(dir.path(), "t");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..8].copy_from_slice(b"QZSNAP01");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            read::<u8>(dir.path(), "t", 7).unwrap_err(),
            Unusable::Corrupt("bad header".into())
        );
    }
}
