//! The server: `run(listener, state, shutdown)` serves the API until `shutdown` resolves, then
//! lets the workers finish their steps, snapshots the read models and closes the log. Tests call it on a port-0 listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use events::Actor;
use events::event::Plan;
use tokio::net::TcpListener;

use crate::bootstrap;
use crate::config::ServeArgs;
use crate::private_files::SecretFile;
use crate::state::{AppState, Settings};
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
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    // Workers finish the step they are in (their appends need the log open).
    workers.shutdown().await;
    state.shutdown().await;
    served
}

/// `quickztna serve`.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut settings = Settings::new(&args.data.data_dir);
    settings.chain_key_file = args.data.chain_key_file.clone();
    settings.checkpoint_key_file = args.data.checkpoint_key_file.clone();
    settings.body_limit = args.body_limit;
    let state = AppState::open(settings).await.map_err(|e| e.to_string())?;
    if state.log().head() == 0 {
        bootstrap_default_org(&state, args.owner_token_file.as_deref()).await?;
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
