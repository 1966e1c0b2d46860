//! The server: `run(listener, state, shutdown)` serves the API until `shutdown` resolves, then
//! lets the workers finish their steps, snapshots the read models and closes the log. Tests call it on a port-0 listener.

use std::future::Future;
use std::net::SocketAddr;

use events::Actor;
use events::event::Plan;
use tokio::net::TcpListener;

use crate::bootstrap;
use crate::config::ServeArgs;
use crate::http::ratelimit::TrustedProxies;
use crate::state::{AppState, Settings};
use crate::workers::Workers;
use crate::workers::housekeeping::{HeartbeatFlush, LimiterSweep};
use crate::workers::retention::Retention;
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
    // Removed devices and dead credentials leave the read models after the retention window.
    workers.spawn(Retention {
        every: state.settings().retention_every,
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
    settings.trusted_proxies = TrustedProxies::new(args.trusted_proxies.clone());
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
