//! Webhook secrets at rest: encrypted, one file per webhook, outside the event log.
//!
//! The server must keep webhook secrets to sign with them, unlike tokens, which it keeps only
//! as hashes (DESIGN §2 item 8). So they live beside the log, never in it, encrypted with
//! XChaCha20-Poly1305 under a key file of the data directory: a copy of the directory without
//! the key file, a backup of the files or a log export shows no secret. Each file is bound to
//! its webhook id (the AAD), so a file copied over another webhook's does not decrypt.

use std::fs::OpenOptions;
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use events::durable;

use super::sign::Secret;

/// The key file's name inside the secrets directory.
pub const KEY_FILE: &str = "secrets.key";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The first byte of every secret file: the layout below, so a later one can be told apart.
const VERSION: u8 = 1;

/// The secrets of one webhook: the current one, and during a rotation the previous one and
/// until when (microseconds since the epoch) it is still used to sign. Debug is redacted (see [`Secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Keyring {
    pub current: Secret,
    pub previous: Option<(Secret, i64)>,
}

impl Keyring {
    /// The secrets to sign with at `now` (microseconds): the current one first, then the previous one while
    /// its grace period lasts.
    pub fn signing(&self, now: i64) -> Vec<&Secret> {
        let mut secrets = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// The on-disk form of a [`Keyring`] before encryption.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    current: String,
    previous: Option<(String, i64)>,
}

/// The encrypted secrets of every webhook: a directory and the key that opens its files.
pub struct SecretBox {
    /// Holds the key file and one `<webhook id>.secret` per webhook.
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// Opens (creating if absent) `dir` (mode 0700) and its key file `dir/secrets.key`: 32
    /// random bytes, mode 0600, fsynced. An existing key file of the wrong length, or readable
    /// by group or others, is an error that says so: fixing it silently would hide a leak.
    pub fn open(dir: &Path) -> io::Result<SecretBox> {
        durable::create_private_dir_all(dir)?;
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            create_key(dir, &path)?;
        }
        let mode = std::fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} has mode {:o}: group or others can read the webhook secrets key; \
                     make it 0600 (and consider rotating every webhook secret)",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
        let key = std::fs::read(&path)?;
        if key.len() != KEY_LEN {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, not {KEY_LEN}: it is not a webhook secrets key",
                    path.display(),
                    key.len()
                ),
            ));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).expect("the key is 32 bytes");
        Ok(SecretBox {
            dir: dir.to_path_buf(),
            cipher,
        })
    }

    /// Stores the keyring of `webhook_id` encrypted (random nonce, AAD = the webhook id) as
    /// `dir/<webhook_id>.secret`, replaced atomically and durably.
    pub fn put(&self, webhook_id: &str, keyring: &Keyring) -> io::Result<()> {
        let path = self.path(webhook_id)?;
        let stored = Stored {
            current: keyring.current.expose().to_owned(),
            previous: keyring
                .previous
                .as_ref()
                .map(|(s, until)| (s.expose().to_owned(), *until)),
        };
        let plain = postcard::to_stdvec(&stored).map_err(io::Error::other)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(io::Error::other)?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: webhook_id.as_bytes(),
                },
            )
            .map_err(|_| io::Error::other("encrypting a webhook secret failed"))?;
        durable::replace(&path, &[&[VERSION], &nonce, &sealed])
    }

    /// The keyring of `webhook_id`, or None if it has none. A file that does not decrypt
    /// (tampered, copied from another webhook, or written under another key) is InvalidData.
    pub fn get(&self, webhook_id: &str) -> io::Result<Option<Keyring>> {
        let path = self.path(webhook_id)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let invalid = |why: &str| {
            io::Error::new(ErrorKind::InvalidData, format!("{}: {why}", path.display()))
        };
        if bytes.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(invalid("too short to be a webhook secret file"));
        }
        if bytes[0] != VERSION {
            return Err(invalid("not a version 1 webhook secret file"));
        }
        let (nonce, sealed) = bytes[1..].split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).expect("split at the nonce length");
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: webhook_id.as_bytes(),
                },
            )
            .map_err(|_| {
                invalid("does not decrypt: tampered with, another webhook's, or another key's")
            })?;
        let stored: Stored =
            postcard::from_bytes(&plain).map_err(|_| invalid("decrypts to no keyring"))?;
        let secret = |text: &str| Secret::parse(text).map_err(|e| invalid(&e.to_string()));
        Ok(Some(Keyring {
            current: secret(&stored.current)?,
            previous: match stored.previous {
                Some((text, until)) => Some((secret(&text)?, until)),
                None => None,
            },
        }))
    }

    /// Forgets the keyring of `webhook_id`; one that is absent is already forgotten.
    pub fn remove(&self, webhook_id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(webhook_id)?) {
            Ok(()) => durable::sync_dir(&self.dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `dir/<id>.secret`, for ids of ASCII alphanumerics and `_` only, so that no id (`..`,
    /// `/`, an absolute path) can name a file outside the directory.
    fn path(&self, webhook_id: &str) -> io::Result<PathBuf> {
        let valid = !webhook_id.is_empty()
            && webhook_id.len() <= 128
            && webhook_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "a webhook id is 1 to 128 ASCII letters, digits and underscores",
            ));
        }
        Ok(self.dir.join(format!("{webhook_id}.secret")))
    }
}

/// Writes a new key where no reader can see it half-written: a private temporary file, fsynced,
/// then hard-linked to its name, which fails if another process made a key first (theirs wins),
/// so a crash leaves no key or a whole one, never a short one.
fn create_key(dir: &Path, path: &Path) -> io::Result<()> {
    let tmp = dir.join(format!("{KEY_FILE}.new"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(io::Error::other)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => durable::sync_dir(dir),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring {
            current: Secret::generate(),
            previous: Some((Secret::generate(), 1_800_000_000_000)),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_keyring_round_trips_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("webhook-secrets");
        let ring = keyring();
        let single = Keyring {
            current: Secret::generate(),
            previous: None,
        };
        let sbox = SecretBox::open(&secrets).unwrap();
        sbox.put("wh_01J0AAAA", &ring).unwrap();
        sbox.put("wh_01J0BBBB", &single).unwrap();
        assert_eq!(sbox.get("wh_01J0AAAA").unwrap(), Some(ring.clone()));
        drop(sbox);
        let reopened = SecretBox::open(&secrets).unwrap();
        assert_eq!(reopened.get("wh_01J0AAAA").unwrap(), Some(ring));
        assert_eq!(reopened.get("wh_01J0BBBB").unwrap(), Some(single));
        assert_eq!(reopened.get("wh_01J0CCCC").unwrap(), None);
    }

    #[test]
    fn put_replaces_and_remove_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        sbox.put("wh_1", &keyring()).unwrap();
        let rotated = keyring();
        sbox.put("wh_1", &rotated).unwrap();
        assert_eq!(sbox.get("wh_1").unwrap(), Some(rotated));
        sbox.remove("wh_1").unwrap();
        assert_eq!(sbox.get("wh_1").unwrap(), None);
        sbox.remove("wh_1").unwrap();
        assert!(!dir.path().join("wh_1.secret.tmp").exists());
    }

    #[test]
    fn the_file_never_contains_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        let ring = keyring();
        sbox.put("wh_1", &ring).unwrap();
        let bytes = std::fs::read(dir.path().join("wh_1.secret")).unwrap();
        assert_eq!(bytes[0], VERSION);
        let (previous, _) = ring.previous.as_ref().unwrap();
        for secret in [&ring.current, previous] {
            let text = secret.expose().as_bytes();
            let b64 = &text["whsec_".len()..];
            assert!(!bytes.windows(text.len()).any(|w| w == text));
            assert!(!bytes.windows(b64.len()).any(|w| w == b64));
        }
        assert_eq!(mode(&dir.path().join("wh_1.secret")), 0o600);
    }

    #[test]
    fn a_flipped_byte_anywhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        sbox.put("wh_1", &keyring()).unwrap();
        let path = dir.path().join("wh_1.secret");
        let good = std::fs::read(&path).unwrap();
        for i in [0, 1, 24, 25, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = sbox.get("wh_1").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData, "byte {i}: {err}");
        }
        std::fs::write(&path, &good[..20]).unwrap();
        assert_eq!(sbox.get("wh_1").unwrap_err().kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn a_file_renamed_to_another_webhook_does_not_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        sbox.put("wh_victim", &keyring()).unwrap();
        std::fs::rename(
            dir.path().join("wh_victim.secret"),
            dir.path().join("wh_attacker.secret"),
        )
        .unwrap();
        let err = sbox.get("wh_attacker").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("does not decrypt"), "{err}");
    }

    #[test]
    fn another_key_file_cannot_read_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        SecretBox::open(dir.path())
            .unwrap()
            .put("wh_1", &keyring())
            .unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = SecretBox::open(dir.path())
            .unwrap()
            .get("wh_1")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn the_key_file_is_0600_and_the_directory_0700() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("a/b");
        SecretBox::open(&secrets).unwrap();
        assert_eq!(mode(&secrets.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&secrets), 0o700);
        assert_eq!(
            std::fs::read(secrets.join(KEY_FILE)).unwrap().len(),
            KEY_LEN
        );
        assert!(!secrets.join(format!("{KEY_FILE}.new")).exists());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_not_fixed() {
        let dir = tempfile::tempdir().unwrap();
        SecretBox::open(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretBox::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("mode 644"), "{err}");
        assert_eq!(mode(&key), 0o644);
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(KEY_FILE);
        std::fs::write(&key, [7u8; 16]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretBox::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("holds 16 bytes"), "{err}");
    }

    #[test]
    fn ids_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        for id in [
            "",
            "..",
            "../wh_1",
            "wh/1",
            "/etc/passwd",
            "wh-1",
            "wh.1",
            "wh_1\0",
            "é",
        ] {
            let err = sbox.put(id, &keyring()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{id:?}");
            assert_eq!(sbox.get(id).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(sbox.remove(id).unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let ring = keyring();
        let shown = format!("{ring:?}");
        assert!(!shown.contains(&ring.current.expose()[6..]), "{shown}");
        assert!(shown.contains("redacted"));
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::open(dir.path()).unwrap();
        assert!(format!("{sbox:?}").starts_with("SecretBox { dir:"));
    }

    #[test]
    fn the_previous_secret_signs_only_during_its_grace_period() {
        let ring = keyring();
        let until = ring.previous.as_ref().unwrap().1;
        assert_eq!(ring.signing(until - 1).len(), 2);
        assert_eq!(ring.signing(until), vec![&ring.current]);
    }
}
