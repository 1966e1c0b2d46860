//! Replacing a small file durably: write a temporary file, fsync it, rename it over the old one,
//! fsync the directory. A crash leaves the old file or the new one, never a torn one. Keys,
//! checkpoints and snapshots are all written this way, readable by the owner only, in
//! directories only the owner can enter ([`create_private_dir_all`]).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with the concatenation of `parts` (mode 0600).
pub fn replace(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Two writers of one file (two projections publishing the log's checkpoint, the index
    // snapshotter and a prefix drop) share its temporary file: one at a time.
    let lock = writer_lock(path);
    let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = temporary(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    for part in parts {
        f.write_all(part)?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and its missing parents with mode 0700 (before the umask): the data directory
/// and everything in it hold secrets' hashes, keys and the whole audit trail.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// fsyncs a directory, so the entries created or renamed in it survive a power loss. A
/// directory that does not exist has nothing to make durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `<name>.tmp` beside `path`: unique per target, so two files of one directory never share it.
/// The lock of the writers of `path` in this process.
fn writer_lock(path: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    locks.entry(path.to_path_buf()).or_default().clone()
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
