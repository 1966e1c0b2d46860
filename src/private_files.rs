//! Secrets on the host: what the server and the offline commands write is their user's alone.
//!
//! The data directory holds the audit trail, the hashes of every credential, and the keys
//! that sign the chain, checkpoints and cursors. sled creates its own files, so an explicit
//! mode on each file we write is not enough: [`restrict_umask`] makes every file and directory
//! the process creates owner-only (0600/0700). A file named on the command line to receive a
//! secret is a [`SecretFile`]: created new, mode 0600, never over another file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// A new file, mode 0600, that is to receive a secret. Created before the secret exists, so
/// that a path that cannot be written fails before a secret is made that nobody would see.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    file: File,
}

impl SecretFile {
    /// Creates `path`; fails if it exists (a secret never replaces a file someone may be
    /// reading, or an earlier secret).
    pub fn create_new(path: &Path) -> std::io::Result<SecretFile> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(SecretFile {
            path: path.to_owned(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` and makes the file and its name durable.
    pub fn write(mut self, contents: &[u8]) -> std::io::Result<()> {
        self.file.write_all(contents)?;
        self.file.sync_all()?;
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => events::durable::sync_dir(dir),
            _ => events::durable::sync_dir(Path::new(".")),
        }
    }

    /// Removes the file when the secret it was made for never came to be.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_new_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.token");
        SecretFile::create_new(&path)
            .unwrap()
            .write(b"qz_secret\n")
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"qz_secret\n");
        let again = SecretFile::create_new(&path).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"qz_secret\n",
            "not replaced"
        );
    }
}
