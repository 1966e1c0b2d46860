//! What opening a data dir checks before the log runs: the directory lock, and the chain key.

use std::fs::File;
use std::path::Path;

use crate::chain::ChainKey;
use crate::codec;
use crate::error::Error;
use crate::log::LogOptions;
use crate::store::LogStore;

/// The chain key: created only for an empty log; for any other, it must reproduce the MAC of
/// the head record, or the log refuses to open — chaining new events under a different key
/// would make all of history "fail" verification.
pub(crate) fn resolve_chain_key(
    dir: &Path,
    options: &LogOptions,
    store: &dyn LogStore,
    head: u64,
) -> Result<ChainKey, Error> {
    let path = options
        .chain_key_file
        .clone()
        .unwrap_or_else(|| dir.join("chain.key"));
    let key = match &options.chain_key {
        Some(k) => k.clone(),
        None if head == 0 => ChainKey::load_or_create(&path)?,
        None => ChainKey::load(&path).map_err(|e| Error::ChainKey {
            path: path.display().to_string(),
            reason: format!(
                "{e}; this log holds {head} events, so a new key would break its chain. \
                 Restore the key file that was used with this data directory (or pass \
                 --chain-key-file with its location)"
            ),
        })?,
    };
    if head == 0 {
        return Ok(key);
    }
    let links = |pos: u64| -> Result<bool, Error> {
        let record = store.record(pos)?.ok_or_else(|| Error::Corrupt {
            position: pos,
            reason: "record missing".into(),
        })?;
        let env = codec::decode_record(pos, &record)?;
        // The record before, or the prefix anchor when it was dropped.
        let prev = match crate::store::mac_at(store, pos - 1) {
            Ok(mac) => mac,
            Err(_) => return Ok(false),
        };
        let body = codec::mac_body(&record).unwrap_or_default();
        Ok(key.link(&prev, body) == env.mac)
    };
    if links(head)? {
        return Ok(key);
    }
    let reason = if head > 1 && links(head - 1)? {
        format!(
            "the key verifies the record at position {} but not the head record at {head}: the \
             head record was changed behind the log's back; run `quickztna audit-log verify` on \
             a copy of the data directory",
            head - 1
        )
    } else {
        format!(
            "the key does not reproduce the MAC of the head record (position {head}): it is not \
             the key this log was written with. Restore the original key file (or pass \
             --chain-key-file with its location); no new key was created"
        )
    };
    Err(Error::ChainKey {
        path: path.display().to_string(),
        reason,
    })
}

pub(crate) fn lock_dir(dir: &Path) -> Result<File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io(e)),
    }
}
