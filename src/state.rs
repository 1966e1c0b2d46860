//! The application state every handler shares: the log, the read models and settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use events::{ChainKey, Log, LogOptions};
use projections::{Models, ProjectionHandle, RunnerOptions};

use crate::http::pagination::CursorKey;
use crate::http::ratelimit::RateLimiter;

/// Settings of a running server (from the command line and environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// The chain key file, if kept outside the data dir.
    pub chain_key_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How long a mutation waits for the projections before answering 503.
    pub read_your_writes_timeout: Duration,
    pub log: LogOptions,
    pub snapshot_every_events: u64,
}

impl Settings {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Settings {
            data_dir: data_dir.into(),
            chain_key_file: None,
            body_limit: 1024 * 1024,
            read_your_writes_timeout: Duration::from_secs(10),
            log: LogOptions::default(),
            snapshot_every_events: 50_000,
        }
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
    limiter: RateLimiter,
    cursor_key: CursorKey,
    settings: Settings,
}

impl AppState {
    /// Opens the data dir (taking its lock) and starts the projections.
    pub async fn open(settings: Settings) -> Result<AppState, events::Error> {
        let mut log_options = settings.log.clone();
        if let Some(path) = &settings.chain_key_file {
            log_options.chain_key = Some(ChainKey::load_or_create(path)?);
        }
        let dir = settings.data_dir.clone();
        let log = tokio::task::spawn_blocking(move || Log::open(&dir, log_options))
            .await
            .map_err(|e| events::Error::Storage(e.to_string()))??;
        let cursor_key = CursorKey::new(
            ChainKey::load_or_create(&settings.data_dir.join("cursor.key"))?.derive("cursor"),
        );
        let mut runner = RunnerOptions::new(snapshot_dir(&settings.data_dir));
        runner.snapshot_every_events = settings.snapshot_every_events;
        let models = ProjectionHandle::start(log.clone(), runner).await;
        Ok(AppState {
            inner: Arc::new(Inner {
                log,
                models,
                limiter: RateLimiter::new(),
                cursor_key,
                settings,
            }),
        })
    }

    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    pub fn models(&self) -> &ProjectionHandle<Models> {
        &self.inner.models
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

    /// Waits for the projections to reach the head, snapshots them and closes the log.
    pub async fn shutdown(&self) {
        let head = self.log().head();
        self.models().wait_for(head, Duration::from_secs(5)).await;
        if let Err(e) = self.models().snapshot_now().await {
            tracing::warn!(error = %e, "could not snapshot the read models at shutdown");
        }
        self.models().stop();
        let log = self.log().clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}
