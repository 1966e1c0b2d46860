//! Where each webhook's deliveries stand: its cursor on the organization's events, the retry in
//! progress, and its last attempts. Not events (every try would swamp the log, and a webhook
//! subscribed to its own failures would feed itself): each webhook's progress is a small file,
//! `webhooks/<id>.progress` in the data dir, replaced atomically and durably.
//!
//! The cursor moves only after an event is settled (delivered, refused for good, or filtered
//! out), and the file is written after the cursor moves — at most every [`SAVE_EVERY`], and
//! always before a retry waits and at shutdown. So a crash can only make the file older than
//! the truth: the events after it are delivered again (at least once), never skipped.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Attempts kept per webhook, newest last.
pub const ATTEMPTS_KEPT: usize = 200;
/// Longest time a moved cursor waits before reaching the disk.
pub const SAVE_EVERY: Duration = Duration::from_millis(200);
/// First byte of the file: its format. (1, from before a retry kept its URL, is read as
/// unreadable: the file is set aside and delivery starts again from the webhook's creation.)
const FORMAT: u8 = 2;

/// Persisted with postcard: never reorder or remove fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The organization's sequence number of the last settled event.
    pub cursor: u64,
    /// The org sequence number of the last `webhook.replayed` acted on.
    pub replay_seen: u64,
    /// The event being retried, if one is.
    pub retry: Option<Retry>,
    /// The last attempts, oldest first.
    pub attempts: VecDeque<Attempt>,
}

/// A delivery that failed and will be tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub event_id: u64,
    /// Tries so far.
    pub tries: u32,
    /// When the first try failed (microseconds).
    pub first_failed_at: i64,
    /// When to try next (microseconds).
    pub next_at: i64,
    /// The URL it failed at: a new URL is tried at once.
    pub url: String,
}

/// One try of one delivery, as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The organization's sequence number of the event (0 for a test ping).
    pub event_id: u64,
    /// The `webhook-id` header: the event's ULID, the same on every try.
    pub message_id: String,
    pub event_type: String,
    /// When it was sent (microseconds).
    pub at: i64,
    /// 1 for the first try of this event.
    pub try_number: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why there was no answer (timeout, refused connection, refused destination).
    pub error: Option<String>,
    pub latency_micros: u64,
    /// `delivered`, `retrying`, `failed` (given up, or refused by a 4xx) or `test`.
    pub outcome: String,
    /// When the next try is due (microseconds), if one is.
    pub next_retry_at: Option<i64>,
    /// The first bytes of the receiver's answer (lossy UTF-8).
    pub response: String,
}

impl Progress {
    /// A new webhook's: it receives what follows its creation.
    pub fn starting_after(seq: u64) -> Progress {
        Progress {
            cursor: seq,
            ..Progress::default()
        }
    }

    pub fn record(&mut self, attempt: Attempt) {
        if self.attempts.len() == ATTEMPTS_KEPT {
            self.attempts.pop_front();
        }
        self.attempts.push_back(attempt);
    }
}

/// The progress files of every webhook.
#[derive(Debug, Clone)]
pub struct ProgressFiles {
    dir: PathBuf,
}

impl ProgressFiles {
    pub fn new(dir: &Path) -> ProgressFiles {
        ProgressFiles {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, webhook_id: &str) -> io::Result<PathBuf> {
        if webhook_id.is_empty()
            || !webhook_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a webhook id is ASCII letters, digits and '_'",
            ));
        }
        Ok(self.dir.join(format!("{webhook_id}.progress")))
    }

    /// The stored progress; `None` when there is none yet.
    pub fn load(&self, webhook_id: &str) -> io::Result<Option<Progress>> {
        let path = self.path(webhook_id)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match bytes.split_first() {
            Some((&FORMAT, rest)) => postcard::from_bytes(rest).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unknown format", path.display()),
            )),
        }
    }

    pub fn save(&self, webhook_id: &str, progress: &Progress) -> io::Result<()> {
        let path = self.path(webhook_id)?;
        events::durable::create_private_dir_all(&self.dir)?;
        let body = postcard::to_stdvec(progress).map_err(io::Error::other)?;
        events::durable::replace(&path, &[&[FORMAT], &body])
    }

    /// Renames an unreadable progress file to `<id>.progress.corrupt`, for a person to look at.
    pub fn set_aside(&self, webhook_id: &str) -> io::Result<()> {
        let path = self.path(webhook_id)?;
        std::fs::rename(&path, path.with_extension("progress.corrupt"))
    }

    /// The webhook ids with a secret or progress file in the directory, with the file's
    /// modification time.
    pub fn stored_ids(&self) -> Vec<(String, std::time::SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name
                    .strip_suffix(".progress")
                    .or_else(|| name.strip_suffix(".secret"))?
                    .to_owned();
                Some((id, e.metadata().ok()?.modified().ok()?))
            })
            .collect()
    }

    /// [`ProgressFiles::save`] on a blocking thread: it fsyncs, which the async threads that
    /// serve requests and deliveries must not wait for.
    pub async fn save_off_thread(&self, webhook_id: &str, progress: Progress) -> io::Result<()> {
        let (files, id) = (self.clone(), webhook_id.to_owned());
        tokio::task::spawn_blocking(move || files.save(&id, &progress))
            .await
            .map_err(io::Error::other)?
    }

    pub fn remove(&self, webhook_id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(webhook_id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_back_keeps_the_last_attempts_and_ids_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let files = ProgressFiles::new(&dir.path().join("webhooks"));
        assert_eq!(files.load("wh_1").unwrap(), None);
        let mut p = Progress::starting_after(7);
        for i in 0..ATTEMPTS_KEPT as u64 + 5 {
            p.record(Attempt {
                event_id: i,
                message_id: "m".into(),
                event_type: "device.tagged".into(),
                at: 1,
                try_number: 1,
                status: Some(200),
                error: None,
                latency_micros: 5,
                outcome: "delivered".into(),
                next_retry_at: None,
                response: String::new(),
            });
        }
        p.retry = Some(Retry {
            event_id: 9,
            tries: 2,
            first_failed_at: 3,
            next_at: 4,
            url: "https://example.com/h".into(),
        });
        files.save("wh_1", &p).unwrap();
        let back = files.load("wh_1").unwrap().unwrap();
        assert_eq!(back, p);
        assert_eq!(back.attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(back.attempts.front().unwrap().event_id, 5);
        assert!(files.load("../x").is_err() && files.save("a/b", &p).is_err());
        files.remove("wh_1").unwrap();
        files.remove("wh_1").unwrap();
        assert_eq!(files.load("wh_1").unwrap(), None);
    }
}
