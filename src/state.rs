//! The application state every handler shares: the log, the read models, the heartbeat store
//! and settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use events::{ChainKey, Log, LogOptions};
use projections::{Models, ProjectionHandle, RunnerOptions};

use crate::audit::digests::AuditChains;
use crate::heartbeats::Heartbeats;
use crate::http::event_streams::{EventStreams, StreamLimits};
use crate::http::page_cache::PageCache;
use crate::http::pagination::CursorKey;
use crate::http::ratelimit::{RateLimiter, TrustedProxies};

/// Settings of a running server (from the command line and environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// The chain key file, if kept outside the data dir.
    pub chain_key_file: Option<PathBuf>,
    /// The checkpoint signing key file, if kept outside the data dir.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How long a mutation waits for the projections before answering 503.
    pub read_your_writes_timeout: Duration,
    pub log: LogOptions,
    pub snapshot_every_events: u64,
    /// How often the sweeper removes offline ephemeral and idle devices.
    pub sweep_every: Duration,
    /// How often records gone longer than the retention window leave the read models.
    pub retention_every: Duration,
    /// How often heartbeats are written to the data dir.
    pub heartbeat_flush_every: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: TrustedProxies,
    /// How long clients may take, and how many connections they may hold.
    pub connections: ConnectionLimits,
    /// How often an idle event stream (SSE) sends a keep-alive; shorter than the response
    /// write timeout, which an endless response must keep moving within.
    pub event_stream_keep_alive: Duration,
    /// Event streams served at once, on the server and per organization.
    pub event_streams: StreamLimits,
    /// Where people and devices reach the server (links in invitations, the OpenID redirect
    /// URL), without a trailing slash.
    pub public_url: String,
    /// The SMTP relay invitations go through (`None`: the API returns the link instead).
    pub mail: Option<crate::mail::MailSettings>,
    /// Which webhook destinations may be reached, and the retry schedule.
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// What keeps slow, idle or numerous clients from holding the server's connections (and file
/// descriptors). Enforced per connection by `server::conn`, except the body deadline, which the
/// HTTP layer answers with a `408` problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a request's first byte (or a new connection's accept, or its TLS handshake start)
    /// to the end of its headers; the connection is closed past it.
    pub header_read_timeout: Duration,
    /// From the end of a request's headers to the end of its body; answered with `408`.
    pub body_read_timeout: Duration,
    /// From a response being ready to its last byte being handed to the socket; the connection
    /// is closed past it (a client that stops reading).
    pub response_write_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; past it a new connection gets a `503` and is closed.
    pub max_connections: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            response_write_timeout: Duration::from_secs(30),
            // Longer than the agent's 30 s heartbeat, so a device keeps one connection.
            idle_timeout: Duration::from_secs(60),
            // Two per device of a 10,000-device fleet that keeps its connections alive.
            max_connections: 20_000,
        }
    }
}

impl Settings {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Settings {
            data_dir: data_dir.into(),
            chain_key_file: None,
            checkpoint_key_file: None,
            body_limit: 1024 * 1024,
            read_your_writes_timeout: Duration::from_secs(10),
            log: LogOptions::default(),
            snapshot_every_events: 50_000,
            sweep_every: Duration::from_secs(30),
            retention_every: Duration::from_secs(3600),
            heartbeat_flush_every: Duration::from_secs(5),
            trusted_proxies: TrustedProxies::default(),
            connections: ConnectionLimits::default(),
            event_stream_keep_alive: Duration::from_secs(15),
            event_streams: StreamLimits::default(),
            public_url: "http://127.0.0.1:8080".into(),
            mail: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
        }
    }
}

/// Bytes of list answers kept in memory: 64 MB holds ~500 full pages of 200 devices.
const PAGE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// One async lock per organization, made on first use: what serializes one organization's
/// decisions of a kind (registrations, directory writes, webhook creations) without holding up
/// another organization's.
#[derive(Debug, Default)]
pub struct OrgLocks(DashMap<String, Arc<tokio::sync::Mutex<()>>>);

impl OrgLocks {
    pub fn of(&self, org_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.entry(org_id.to_owned()).or_default().clone()
    }
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    log: Log,
    models: ProjectionHandle<Models>,
    /// Each organization's audit chain (see [`crate::audit::chain`]).
    chains: ProjectionHandle<AuditChains>,
    limiter: RateLimiter,
    cursor_key: CursorKey,
    heartbeats: Heartbeats,
    /// List answers as bytes, keyed by what they depend on.
    pages: PageCache,
    /// One lock per organization: its registrations are decided one at a time, because each
    /// takes the next address (the log's expected revision of `ipam:<org>` backs this up).
    registrations: OrgLocks,
    /// One lock per organization: its directory writes (people, groups) are decided one at a
    /// time, so that two cannot both pass a uniqueness check (userName, email, externalId).
    directories: OrgLocks,
    /// Open SSE streams and the frames they share.
    event_streams: EventStreams,
    settings: Settings,
    /// Each organization's first retained audit event, cached (see [`crate::audit::retention`]).
    audit_floors: DashMap<String, crate::audit::retention::Floor>,
    /// Sign-ins in progress and discovered identity providers (see [`crate::sso`]).
    sso: crate::sso::Sso,
    /// Every device's peers under the policy (see [`crate::peers`]).
    peers: crate::peers::Peers,
    /// Webhook secrets, delivery loops and their progress (see [`crate::webhooks`]).
    webhooks: crate::webhooks::Webhooks,
}

impl AppState {
    /// Opens the data dir (taking its lock) and starts the projections.
    pub async fn open(settings: Settings) -> Result<AppState, events::Error> {
        let mut log_options = settings.log.clone();
        log_options.chain_key_file = settings.chain_key_file.clone();
        log_options.checkpoint_key_file = settings.checkpoint_key_file.clone();
        let dir = settings.data_dir.clone();
        let log = tokio::task::spawn_blocking(move || Log::open(&dir, log_options))
            .await
            .map_err(|e| events::Error::Storage(e.to_string()))??;
        let cursor_key = CursorKey::new(
            ChainKey::load_or_create(&settings.data_dir.join("cursor.key"))?.derive("cursor"),
        );
        let mut runner = RunnerOptions::new(snapshot_dir(&settings.data_dir));
        runner.snapshot_every_events = settings.snapshot_every_events;
        let models = ProjectionHandle::start(log.clone(), runner.clone()).await;
        let chains = ProjectionHandle::start(log.clone(), runner).await;
        let dir = settings.data_dir.clone();
        let heartbeats = tokio::task::spawn_blocking(move || Heartbeats::load(&dir))
            .await
            .map_err(|e| events::Error::Storage(e.to_string()))?;
        let dir = settings.data_dir.clone();
        let hooks = settings.webhooks.clone();
        let webhooks =
            tokio::task::spawn_blocking(move || crate::webhooks::Webhooks::open(&dir, &hooks))
                .await
                .map_err(|e| events::Error::Storage(e.to_string()))?
                .map_err(|e| events::Error::Storage(format!("webhook secrets: {e}")))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                log,
                models,
                chains,
                limiter: RateLimiter::new(),
                cursor_key,
                heartbeats,
                pages: PageCache::new(PAGE_CACHE_BYTES),
                registrations: OrgLocks::default(),
                directories: OrgLocks::default(),
                event_streams: EventStreams::new(settings.event_streams),
                settings,
                audit_floors: DashMap::new(),
                sso: crate::sso::Sso::default(),
                peers: crate::peers::Peers::default(),
                webhooks,
            }),
        })
    }

    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    pub fn models(&self) -> &ProjectionHandle<Models> {
        &self.inner.models
    }

    pub fn chains(&self) -> &ProjectionHandle<AuditChains> {
        &self.inner.chains
    }

    /// The audit chain hash of the organization's event `seq` (see [`crate::audit::chain`]);
    /// `None` when it has no such event.
    pub async fn audit_chain_hash(
        &self,
        org_id: &str,
        seq: u64,
    ) -> Result<Option<crate::audit::chain::Hash>, events::Error> {
        crate::audit::digests::hash_at(self.chains(), self.log(), org_id, seq).await
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    pub fn cursor_key(&self) -> &CursorKey {
        &self.inner.cursor_key
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Every device's peer map (see [`crate::peers`]).
    pub fn peers(&self) -> &crate::peers::Peers {
        &self.inner.peers
    }

    /// Last-seen times and reported state of devices (not events; see [`Heartbeats`]).
    pub fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    pub fn heartbeats(&self) -> &Heartbeats {
        &self.inner.heartbeats
    }

    /// Cached list answers (see [`PageCache`]).
    pub fn pages(&self) -> &PageCache {
        &self.inner.pages
    }

    /// Open SSE streams and the frames they share (see [`EventStreams`]).
    pub fn event_streams(&self) -> &EventStreams {
        &self.inner.event_streams
    }

    /// Where browsers and devices reach the server (`--public-url`), without a trailing `/`.
    pub fn public_url(&self) -> String {
        self.inner
            .settings
            .public_url
            .trim_end_matches('/')
            .to_owned()
    }

    /// Sign-ins in progress and the organizations' identity providers.
    pub fn sso(&self) -> &crate::sso::Sso {
        &self.inner.sso
    }

    pub(crate) fn audit_floors(&self) -> &DashMap<String, crate::audit::retention::Floor> {
        &self.inner.audit_floors
    }

    /// The lock that serializes the registrations of `org_id`.
    pub fn registration_lock(&self, org_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.registrations.of(org_id)
    }

    /// The lock that serializes the directory writes of `org_id` (see [`crate::directory`]).
    pub fn directory_lock(&self, org_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.directories.of(org_id)
    }

    /// Writes the heartbeat store to the data dir if it changed.
    pub async fn flush_heartbeats(&self) {
        let state = self.clone();
        let done = tokio::task::spawn_blocking(move || state.heartbeats().flush()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "could not write the heartbeats file");
        }
    }

    /// Waits for the projections to reach the head, snapshots them, writes the heartbeats and
    /// closes the log.
    pub async fn shutdown(&self) {
        self.flush_heartbeats().await;
        let head = self.log().head();
        self.models().wait_for(head, Duration::from_secs(5)).await;
        self.chains().wait_for(head, Duration::from_secs(5)).await;
        if let Err(e) = self.models().snapshot_now().await {
            tracing::warn!(error = %e, "could not snapshot the read models at shutdown");
        }
        if let Err(e) = self.chains().snapshot_now().await {
            tracing::warn!(error = %e, "could not snapshot the audit chains at shutdown");
        }
        self.models().stop();
        self.chains().stop();
        let log = self.log().clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}
