//! The server: `run(listener, state, shutdown)` serves the API until `shutdown` resolves, then
//! lets the workers finish their steps, snapshots the read models and closes the log. Tests call
//! it on a port-0 listener.
//!
//! - [`accept`]: the accept loop, the connection cap, graceful draining.
//! - [`conn`]: one connection served with hyper (HTTP/1.1).
//! - [`watch`]: a connection's deadline (header read, idle, response write).

pub mod accept;
pub mod conn;
pub mod watch;

use std::future::Future;

use events::Actor;
use events::event::Plan;
use tokio::net::TcpListener;

use crate::bootstrap;
use crate::config::{ConnectionArgs, ServeArgs};
use crate::state::{AppState, ConnectionLimits, Settings};
use crate::workers::Workers;
use crate::workers::housekeeping::{HeartbeatFlush, LimiterSweep};
use crate::workers::sweeper::Sweeper;

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn run<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = crate::http::router(state.clone());
    let mut workers = Workers::new(state.clone());
    workers.spawn(LimiterSweep);
    // Offline ephemeral and idle devices are removed by the system actor.
    workers.spawn(Sweeper {
        every: state.settings().sweep_every,
    });
    // Heartbeats are not events: they reach the disk every few seconds and at shutdown.
    workers.spawn(HeartbeatFlush {
        every: state.settings().heartbeat_flush_every,
    });
    let refuse = crate::http::over_capacity();
    accept::serve(
        listener,
        app,
        refuse,
        state.settings().connections,
        shutdown,
    )
    .await;
    // Workers finish the step they are in (their appends need the log open).
    workers.shutdown().await;
    state.shutdown().await;
    Ok(())
}

/// `quickztna serve`.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut settings = Settings::new(&args.data.data_dir);
    settings.chain_key_file = args.data.chain_key_file.clone();
    settings.checkpoint_key_file = args.data.checkpoint_key_file.clone();
    settings.body_limit = args.body_limit;
    settings.connections = connection_limits(&args.connections);
    let state = AppState::open(settings).await.map_err(|e| e.to_string())?;
    if state.log().head() == 0 {
        let created = bootstrap::create_org(
            &state,
            "default",
            Plan::Workforce,
            Actor::system("bootstrap of an empty data directory"),
        )
        .await
        .map_err(|e| e.to_string())?;
        println!("Created organization 'default' ({}).", created.org_id);
        println!("Its owner token is shown only this once; store it now:");
        println!("{}", created.token);
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(
        address = %args.listen,
        data_dir = %args.data.data_dir.display(),
        head = state.log().head(),
        "quickztna serving"
    );
    run(listener, state, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
