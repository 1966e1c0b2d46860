//! Webhooks (DESIGN §3.6): signed POSTs of each organization's events to the destinations it
//! configured, at least once, in order per webhook, retried for 24 hours.
//!
//! - [`sign`]: secrets (`whsec_…`) and the two signatures every delivery carries.
//! - [`secrets`]: secrets encrypted at rest outside the log, under a 0600 key file.
//! - [`egress`]: which destinations may be reached (SSRF), checked when a URL is stored and
//!   again at connect time, and the HTTP client (no redirects, no proxy, timeouts).
//! - [`schedule`]: what an answer means, and when to try again.
//! - [`progress`]: each webhook's cursor, retry and last attempts, persisted beside the log.
//! - [`deliver`]: one webhook's delivery loop, on its own task, so one slow or dead receiver
//!   never delays another.
//!
//! [`Webhooks`] holds them together; the supervisor worker (`workers::webhooks`) starts a
//! delivery loop for each webhook in the read models and the loops end themselves when their
//! webhook is removed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ipnet::IpNet;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

pub mod deliver;
pub mod egress;
pub mod progress;
pub mod schedule;
pub mod secrets;
pub mod sign;

use egress::Egress;
use progress::{Progress, ProgressFiles};
use schedule::Schedule;
use secrets::{Keyring, SecretBox};

/// Bytes of a receiver's answer kept in the attempt log.
pub const RESPONSE_KEPT: usize = 1024;

/// How webhooks are delivered on this server.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Destinations allowed although private, loopback, link-local… (`--webhook-allow-cidr`).
    pub allow: Vec<IpNet>,
    pub schedule: Schedule,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow: Vec::new(),
            schedule: Schedule::default(),
            timeout: Duration::from_secs(15),
        }
    }
}

/// What one POST to a receiver came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency: Duration,
    /// The receiver's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// The first [`RESPONSE_KEPT`] bytes of its answer.
    pub response: String,
}

/// One webhook's shared state: what its loop has done, read by the API.
#[derive(Debug)]
pub struct Live {
    pub progress: Mutex<Progress>,
    /// Its secrets, and the rotation they were read at.
    keyring: Mutex<Option<(Option<i64>, Keyring)>>,
    /// Held across a rotation (read the old secret, store the new one, record it), so two
    /// rotations cannot both hand out a secret only one of them stored.
    pub rotating: tokio::sync::Mutex<()>,
    /// Turns its loop took: how the tests see that an idle loop sleeps.
    pub turns: std::sync::atomic::AtomicU64,
}

/// The server's webhooks.
pub struct Webhooks {
    secrets: SecretBox,
    egress: Arc<Egress>,
    client: reqwest::Client,
    files: ProgressFiles,
    schedule: Schedule,
    live: DashMap<String, Arc<Live>>,
    stop: watch::Sender<bool>,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Per organization, held while one of its webhooks is created, so concurrent creations
    /// respect its cap.
    creating: crate::state::OrgLocks,
    /// Whether the files of webhooks removed while the server was down were swept.
    swept: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("running", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Drops the cached secrets: the next delivery reads them from disk.
    pub fn forget_keyring(&self) {
        *self.keyring.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Webhooks {
    /// Opens `data_dir/webhooks` (its key file is created on first use).
    pub fn open(data_dir: &Path, settings: &WebhookSettings) -> std::io::Result<Webhooks> {
        let dir = data_dir.join("webhooks");
        let egress = Arc::new(Egress::new(settings.allow.clone()));
        Ok(Webhooks {
            secrets: SecretBox::open(&dir)?,
            client: egress.client(env!("CARGO_PKG_VERSION"), settings.timeout),
            egress,
            files: ProgressFiles::new(&dir),
            schedule: settings.schedule.clone(),
            live: DashMap::new(),
            stop: watch::Sender::new(false),
            running: Mutex::new(HashMap::new()),
            creating: crate::state::OrgLocks::default(),
            swept: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The lock organization `org_id`'s webhook creations take.
    pub fn creating(&self, org_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.creating.of(org_id)
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The shared state of webhook `id`, loaded from its file (or starting after
    /// `created_seq`) the first time it is asked for.
    pub fn live(&self, id: &str, created_seq: u64) -> std::io::Result<Arc<Live>> {
        if let Some(l) = self.live.get(id) {
            return Ok(l.clone());
        }
        let progress = match self.files.load(id) {
            Ok(found) => found.unwrap_or_else(|| Progress::starting_after(created_seq)),
            // Unreadable (a disk error, or a file not ours): set it aside and deliver again
            // from the webhook's creation — at least once, rather than never again.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::error!(webhook = %id, error = %e, "webhook progress unreadable; delivering again from the webhook's creation");
                self.files.set_aside(id)?;
                Progress::starting_after(created_seq)
            }
            Err(e) => return Err(e),
        };
        let fresh = Arc::new(Live {
            progress: Mutex::new(progress),
            keyring: Mutex::new(None),
            rotating: tokio::sync::Mutex::new(()),
            turns: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(self.live.entry(id.to_owned()).or_insert(fresh).clone())
    }

    /// Where webhook `id`'s deliveries stand — its cursor and the retry in progress — if its
    /// loop has run since the server started (without copying its attempts).
    pub fn standing(&self, id: &str) -> Option<(u64, Option<progress::Retry>)> {
        let live = self.live.get(id)?;
        let p = live.progress.lock().unwrap_or_else(|e| e.into_inner());
        Some((p.cursor, p.retry.clone()))
    }

    /// The secrets that sign for webhook `id` now: the current one, and the previous one
    /// until its grace period ends. Read from disk only after a rotation.
    pub fn keyring(
        &self,
        live: &Live,
        id: &str,
        rotated_at: Option<i64>,
    ) -> std::io::Result<Keyring> {
        let mut cached = live.keyring.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, ring)) = cached.as_ref()
            && *at == rotated_at
        {
            return Ok(ring.clone());
        }
        let ring = self.secrets.get(id)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("webhook {id} has no stored secret"),
            )
        })?;
        *cached = Some((rotated_at, ring.clone()));
        Ok(ring)
    }

    /// POSTs `body` to `url`, signed with `keyring`, as message `msg_id`.
    pub async fn send(
        &self,
        url: &str,
        keyring: &Keyring,
        msg_id: &str,
        event_type: &str,
        body: Vec<u8>,
    ) -> Sent {
        let started = Instant::now();
        let failed = |error: String| Sent {
            status: None,
            error: Some(error),
            latency: started.elapsed(),
            retry_after: None,
            response: String::new(),
        };
        let url = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("invalid URL: {e}")),
        };
        // A literal address skips the resolver, so it is checked here, on every attempt.
        if let Err(e) = self.egress.check_literal(&url) {
            return failed(e.to_string());
        }
        let now = jiff::Timestamp::now();
        let signers = keyring.signing(now.as_microsecond());
        let signature = sign::sign(&signers, msg_id, now.as_second(), &body);
        let request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", now.as_second().to_string())
            .header("webhook-signature", signature.standard)
            .header("x-quickztna-signature", signature.quickztna)
            .header("x-quickztna-event-type", event_type)
            .body(body);
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return failed(crate::error_text::chain(&e.without_url())),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::retry_after(v, now));
        // Only the first bytes are kept; the rest is never read (the connection is dropped).
        let mut kept = Vec::new();
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                _ => break,
            }
        }
        kept.truncate(RESPONSE_KEPT);
        Sent {
            status: Some(status),
            error: None,
            latency: started.elapsed(),
            retry_after,
            response: String::from_utf8_lossy(&kept).into_owned(),
        }
    }

    /// Starts a delivery loop for every webhook of the read models that has none.
    pub fn reconcile(&self, state: &AppState) {
        if *self.stop.borrow() {
            return;
        }
        let models = state.models().load();
        // Only once the read models hold the whole log: until then a webhook created after
        // the last snapshot would look removed.
        if state.models().caught_up()
            && state.models().position() >= state.log().head()
            && !self.swept.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let known: std::collections::HashSet<String> =
                models.state.webhooks.all().map(|w| w.id.clone()).collect();
            self.sweep(&known);
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|_, task| !task.is_finished());
        for w in models.state.webhooks.all() {
            if running.contains_key(&w.id) {
                continue;
            }
            let live = match self.live(&w.id, w.created_seq) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(webhook = %w.id, error = %e, "webhook progress unreadable");
                    continue;
                }
            };
            let task = deliver::Loop::new(
                state.clone(),
                w.id.clone(),
                w.org_id.clone(),
                live,
                self.stop.subscribe(),
            );
            running.insert(w.id.clone(), tokio::spawn(task.run()));
        }
    }

    /// [`Webhooks::forget`] on a blocking thread (it removes files).
    pub async fn forget_off_thread(state: &AppState, id: &str) {
        let (st, id) = (state.clone(), id.to_owned());
        if let Err(e) = tokio::task::spawn_blocking(move || st.webhooks().forget(&id)).await {
            tracing::error!(error = %e, "forgetting a removed webhook");
        }
    }

    /// Forgets a removed webhook: its secret, its progress file, its shared state.
    pub fn forget(&self, id: &str) {
        self.live.remove(id);
        for result in [self.secrets.remove(id), self.files.remove(id)] {
            if let Err(e) = result {
                tracing::warn!(webhook = %id, error = %e, "could not remove a removed webhook's file");
            }
        }
    }

    /// Removes the secret and progress files of webhooks the read models do not know: those
    /// removed while a loop could not clean up (a crash). Only files older than a minute, so
    /// a webhook being created (its secret is stored before its event) is never touched.
    fn sweep(&self, known: &std::collections::HashSet<String>) {
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        for (id, modified) in self.files.stored_ids() {
            if !known.contains(&id) && modified < old {
                tracing::info!(webhook = %id, "removing the files of a removed webhook");
                self.forget(&id);
            }
        }
    }

    pub fn files(&self) -> &ProgressFiles {
        &self.files
    }

    /// Stops every delivery loop: each finishes its attempt and saves its progress.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.drain().map(|(_, t)| t).collect()
        };
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a webhook delivery loop panicked");
            }
        }
    }
}
