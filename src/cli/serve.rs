//! `serve` and `worker`: the long-running process, and its orderly shutdown.
//!
//! `serve` runs the HTTP API and dashboard, the built-in scheduler and the worker pool;
//! `worker` runs only the pool. SIGINT or SIGTERM stops the HTTP server from taking requests,
//! stops the scheduler, and lets the pool hand back what it holds before the process exits.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::app::run_scheduler;
use crate::config::Config;
use crate::store::Readers;

pub async fn serve(config: Config, with_http: bool) -> anyhow::Result<ExitCode> {
    if with_http {
        crate::http::check_bind(config.bind, config.cron_secret.as_ref())
            .map_err(|reason| anyhow::anyhow!(reason))?;
    }
    if with_http && config.cron_secret.is_none() {
        tracing::warn!(
            "CRON_SECRET is not set: the API and the dashboard are open to every program on this \
             machine (other sites' pages and other host names are refused). Set CRON_SECRET \
             before sharing this machine or binding another address."
        );
    }
    // A worker's reads (is anything due, pauses, its fellows) come one after another.
    let readers = if with_http {
        Readers::Several
    } else {
        Readers::One
    };
    let app = App::start_for(config, readers).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let listener = if with_http {
        let bind = app.config().bind;
        Some(
            tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|err| anyhow::anyhow!("cannot listen on {bind}: {err}"))?,
        )
    } else {
        None
    };

    let pool = app.spawn_pool(shutdown.clone());
    let scheduler = with_http.then(|| tokio::spawn(run_scheduler(app.clone(), shutdown.clone())));
    let retention = crate::app::spawn_retention(app.clone(), shutdown.clone());
    let analysis = crate::app::spawn_analysis(app.clone(), shutdown.clone());
    let alerts = crate::app::spawn_alerts(app.clone(), shutdown.clone());
    tracing::info!(
        backend = ?app.backend(),
        concurrency = app.config().worker_concurrency,
        schedule = %app.default_schedule(),
        "promptq {} started",
        if with_http { "server" } else { "worker" }
    );
    match listener {
        Some(listener) => {
            tracing::info!(address = %app.config().bind, "listening");
            let router =
                crate::http::router_with(app.clone(), crate::http::dashboard::router(app.clone()));
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await?;
        }
        None => shutdown.cancelled().await,
    }
    tracing::info!("shutting down: no new jobs; running calls get a grace period");
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    let _ = analysis.await;
    if let Some(alerts) = alerts {
        let _ = alerts.await;
    }
    match pool.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "worker pool stopped with an error"),
        Err(err) => tracing::error!(error = %err, "worker pool panicked"),
    }
    app.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    token.cancel();
}
