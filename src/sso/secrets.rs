//! Each organization's OIDC client secret: `<data-dir>/secrets/oidc-<org_id>`, mode 0600.
//!
//! The event log is exported to SIEMs and read by auditors, so the secret is never in it
//! (`org.oidc_configured` carries the issuer and client id only). The file is replaced
//! atomically, so a crash leaves the old secret or the new one, never half of either.

use std::path::{Path, PathBuf};

fn path(data_dir: &Path, org_id: &str) -> PathBuf {
    // Organization ids are ours (`org_` + ULID), never a path of the caller's.
    data_dir.join("secrets").join(format!("oidc-{org_id}"))
}

/// Writes (or replaces) the organization's client secret.
pub fn write_client_secret(data_dir: &Path, org_id: &str, secret: &str) -> std::io::Result<()> {
    let file = path(data_dir, org_id);
    if let Some(dir) = file.parent() {
        events::durable::create_private_dir_all(dir)?;
    }
    events::durable::replace(&file, &[secret.as_bytes()])
}

/// The organization's client secret; `None` when none was written.
pub fn read_client_secret(data_dir: &Path, org_id: &str) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path(data_dir, org_id)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_secret_is_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_client_secret(dir.path(), "org_1").unwrap(), None);
        write_client_secret(dir.path(), "org_1", "first").unwrap();
        write_client_secret(dir.path(), "org_1", "second").unwrap();
        assert_eq!(
            read_client_secret(dir.path(), "org_1").unwrap().as_deref(),
            Some("second")
        );
        let mode = std::fs::metadata(path(dir.path(), "org_1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
