//! The server: `run(listener, state, shutdown)` serves the API until `shutdown` resolves, then
//! lets the workers finish their steps, snapshots the read models and closes the log. Tests call
//! it on a port-0 listener.
//!
//! - [`accept`]: the accept loop, the connection cap, graceful draining.
//! - [`conn`]: one connection served with hyper (HTTP/1.1).
//! - [`watch`]: a connection's deadline (header read, idle, response write).
//! - [`tls`]: the certificate and key, reloaded on SIGHUP.

pub mod accept;
pub mod conn;
pub mod tls;
pub mod watch;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use events::Actor;
use events::event::Plan;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::tls::Tls;
use crate::bootstrap;
use crate::config::{ConnectionArgs, ServeArgs};
use crate::http::ratelimit::TrustedProxies;
use crate::private_files::SecretFile;
use crate::state::{AppState, ConnectionLimits, Settings};
use crate::workers::Workers;
use crate::workers::housekeeping::{HeartbeatFlush, LimiterSweep};
use crate::workers::retention::Retention;
use crate::workers::sweeper::Sweeper;

/// Serves `state` on `listener` (plain HTTP) until `shutdown` completes.
pub async fn run<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    run_with(listener, state, None, shutdown).await
}

/// Like [`run`], through TLS when `tls` is given.
pub async fn run_with<F>(
    listener: TcpListener,
    state: AppState,
    tls: Option<TlsAcceptor>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = crate::http::router(state.clone());
    // Peer maps follow the log for as long as the server runs.
    tokio::spawn(crate::peers::follow(state.clone()));
    // The policy's tests run again whenever the peer maps see the fleet change.
    tokio::spawn(crate::workers::policy_tests::run(state.clone()));
    let mut workers = Workers::new(state.clone());
    workers.spawn(LimiterSweep);
    // Offline ephemeral and idle devices are removed by the system actor.
    workers.spawn(Sweeper {
        every: state.settings().sweep_every,
    });
    // Removed devices and dead credentials leave the read models after the retention window.
    workers.spawn(Retention {
        every: state.settings().retention_every,
    });
    // Posture transitions, from what heartbeats report.
    workers.spawn(crate::workers::posture::PostureWorker {
        every: std::time::Duration::from_millis(250),
        since_full: None,
    });
    // Heartbeats are not events: they reach the disk every few seconds and at shutdown.
    workers.spawn(HeartbeatFlush {
        every: state.settings().heartbeat_flush_every,
    });
    // Each webhook's deliveries, on its own loop.
    workers.spawn(crate::workers::webhooks::WebhookSupervisor {
        every: std::time::Duration::from_millis(250),
    });
    let refuse = crate::http::over_capacity();
    accept::serve(
        listener,
        app,
        refuse,
        tls,
        state.settings().connections,
        shutdown,
    )
    .await;
    // Workers finish the step they are in (their appends need the log open).
    workers.shutdown().await;
    // Deliveries in flight finish and their progress is saved.
    state.webhooks().shutdown().await;
    state.shutdown().await;
    Ok(())
}

/// `quickztna serve`.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    // A certificate that does not load stops the server before it touches the data dir.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key).map_err(|e| e.to_string())?)),
        _ => None,
    };
    reload_on_sighup(tls.clone())?;
    let mut settings = Settings::new(&args.data.data_dir);
    settings.chain_key_file = args.data.chain_key_file.clone();
    settings.checkpoint_key_file = args.data.checkpoint_key_file.clone();
    settings.body_limit = args.body_limit;
    settings.trusted_proxies = TrustedProxies::new(args.trusted_proxies.clone());
    settings.connections = connection_limits(&args.connections);
    settings.log.cache_capacity = args.log_cache_mb << 20;
    settings.event_stream_keep_alive = args.sse_keep_alive;
    settings.event_streams = crate::http::event_streams::StreamLimits {
        max: args.max_event_streams as usize,
        per_org: args.max_event_streams_per_org as usize,
    };
    settings.public_url = match &args.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", args.listen)
        }
    };
    settings.mail = match &args.smtp_url {
        Some(url) => Some(crate::mail::MailSettings::new(url, &args.smtp_from)?),
        None => None,
    };
    settings.webhooks = crate::webhooks::WebhookSettings {
        allow: args.webhook_allow_cidrs.clone(),
        schedule: args.webhook_retry_schedule.clone(),
        timeout: args.webhook_timeout,
    };
    let state = AppState::open(settings).await.map_err(|e| e.to_string())?;
    if state.log().head() == 0 {
        bootstrap_default_org(&state, args.owner_token_file.as_deref()).await?;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(
        address = %args.listen,
        tls = tls.is_some(),
        data_dir = %args.data.data_dir.display(),
        head = state.log().head(),
        "quickztna serving"
    );
    run_with(
        listener,
        state,
        tls.map(|t| t.acceptor()),
        shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())
}

/// On SIGHUP, reads the certificate and key again (after a renewal); a failed reload is logged
/// and the certificate in use stays. Without TLS there is nothing to reload, and SIGHUP (a
/// service manager's "reload") does not stop the server either.
fn reload_on_sighup(tls: Option<Arc<Tls>>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(tls) = tls.clone() else {
                tracing::info!("SIGHUP: nothing to reload without --tls-cert");
                continue;
            };
            match tokio::task::spawn_blocking(move || tls.reload().map(|()| tls)).await {
                Ok(Ok(tls)) => tracing::info!(
                    cert = %tls.cert_file().display(),
                    "reloaded the TLS certificate"
                ),
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "could not reload the TLS certificate; still serving the previous one"
                ),
                Err(e) => tracing::error!(error = %e, "the TLS reload task failed"),
            }
        }
    });
    Ok(())
}

/// File descriptors kept beside the connections: the log, snapshots, refused connections.
const RESERVED_FILES: u64 = 1024;

/// Raises this process's soft open-file limit to its hard limit (each connection holds one);
/// returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The limits from the command line, with the connection cap lowered to what the open-file
/// limit can hold.
fn connection_limits(args: &ConnectionArgs) -> ConnectionLimits {
    let mut limits = ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        response_write_timeout: args.response_write_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
    };
    match raise_open_file_limit() {
        Ok(files) => {
            let room = if files > 2 * RESERVED_FILES {
                files - RESERVED_FILES
            } else {
                files / 2
            };
            if u64::from(limits.max_connections) > room {
                let lowered = u32::try_from(room).unwrap_or(u32::MAX).max(1);
                tracing::warn!(
                    open_file_limit = files,
                    requested = limits.max_connections,
                    max_connections = lowered,
                    "the open-file limit cannot hold the connection cap; lowering the cap \
                     (raise the hard limit, e.g. LimitNOFILE= in the systemd unit)"
                );
                limits.max_connections = lowered;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    limits
}

/// Creates the organization `default` of an empty data directory, and hands its owner token
/// over once: on stdout, or in a new 0600 file (created first, so an unwritable path fails
/// before a token exists that nobody would see).
async fn bootstrap_default_org(state: &AppState, token_file: Option<&Path>) -> Result<(), String> {
    let file = token_file
        .map(|path| {
            SecretFile::create_new(path).map_err(|e| {
                format!(
                    "--owner-token-file {}: {e} (it must be a new file: an owner token never \
                     replaces one)",
                    path.display()
                )
            })
        })
        .transpose()?;
    let created = bootstrap::create_org(
        state,
        "default",
        Plan::Workforce,
        Actor::system("bootstrap of an empty data directory"),
    )
    .await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(f) = file {
                f.abandon();
            }
            return Err(e.to_string());
        }
    };
    println!("Created organization 'default' ({}).", created.org_id);
    match file {
        Some(f) => {
            let path = f.path().display().to_string();
            f.write(format!("{}\n", created.token).as_bytes())
                .map_err(|e| {
                    format!(
                        "writing the owner token to {path}: {e}; issue another with \
                         `quickztna org issue-token --org default` while the server is stopped"
                    )
                })?;
            println!("Its owner token was written to {path} (mode 0600); it is not shown.");
        }
        None => {
            println!("Its owner token is shown only this once; store it now:");
            println!("{}", created.token);
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
