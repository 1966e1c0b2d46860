//! Secrets on the host: what the server and the offline commands write is their user's alone.
//!
//! The data directory holds the audit trail, the hashes of every credential, and the keys
//! that sign the chain, checkpoints and cursors. sled creates its own files, so an explicit
//! mode on each file we write is not enough: [`restrict_umask`] makes every file and directory
//! the process creates owner-only (0600/0700).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::Mode;

/// Makes every file and directory this process creates from now on owner-only. The server
/// and the offline commands call it before they touch the data directory; client commands
/// keep their user's umask.
pub fn restrict_umask() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
}

/// Warns when an existing data directory can be entered or read by other users: the files the
/// server creates in it are owner-only, but older files may not be, and the operator may have
/// opened it on purpose (a backup group), so it is not changed behind their back.
pub fn check_data_dir(dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else {
        // Created later, mode 0700.
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            data_dir = %dir.display(),
            mode = format_args!("{mode:o}"),
            "the data directory is open to other users: it holds the audit log, credential \
             hashes and signing keys; run `chmod -R go-rwx {}`",
            dir.display()
        );
    }
}
