//! A worker's checkpoint: the last log position it handled, in a small text file replaced
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old checkpoint or the new one, never a torn one.

use std::fs;
use std::io;
use std::path::Path;

/// The position stored at `path`; 0 (the beginning of the log) when there is none yet.
pub fn load(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("checkpoint {}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Replaces the checkpoint at `path` with `position`, durably.
pub fn store(path: &Path, position: u64) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "checkpoint path has no directory",
        )
    })?;
    events::durable::create_private_dir_all(dir)?;
    events::durable::replace(path, &[format!("{position}\n").as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_checkpoint_reads_back_and_a_missing_one_is_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers").join("w.checkpoint");
        assert_eq!(load(&path).unwrap(), 0);
        store(&path, 41).unwrap();
        store(&path, 42).unwrap();
        assert_eq!(load(&path).unwrap(), 42);
        assert!(!path.with_extension("checkpoint.tmp").exists());
    }
}
