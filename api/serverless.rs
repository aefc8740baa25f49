//! The serverless entry point: the same axum router as `promptq serve`, run as one Vercel
//! function (built with `--features vercel`; see docs/deploy.md and vercel.json).
//!
//! It reads the same settings from the environment, opens (and migrates) the database, and
//! hands [`promptq::http::router`] to Vercel's runtime through `VercelLayer`. It runs no
//! worker pool and no built-in cron: Vercel Cron calls `/api/cron`, which with `DISPATCH=http`
//! fans every due job out to its own `POST /api/jobs/process` invocation. A pass that runs out
//! of time hands the rest to a fresh invocation (`DISPATCH_BUDGET_SECS`, set here from the
//! function's time limit when unset). A function is always public, so it refuses to start
//! without `CRON_SECRET`. No logic lives here.
//!
//! Without Vercel's bridge (`VERCEL_IPC_PATH`), the runtime serves the function itself on
//! `127.0.0.1:$VERCEL_DEV_PORT` (3000 by default): that is how the tests run it.

use std::time::Duration;

use clap::Parser;
use promptq::app::App;
use promptq::config::Settings;
use tower::Layer;
use vercel_runtime::axum::VercelLayer;

#[derive(Parser)]
#[command(
    name = "promptq-serverless",
    about = "promptq's HTTP API as a Vercel function"
)]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

/// `maxDuration` of the function in vercel.json: what one invocation may take.
const MAX_DURATION: Duration = Duration::from_secs(300);
/// Room left after the budget: for the calls under way to end, and for the hand-off.
const MARGIN: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    let mut config = Args::parse().settings.validate()?;
    if config.dispatch_budget.is_none() {
        // Sending stops in time for the last calls (each at most MODEL_TIMEOUT_SECS) to end
        // before the platform cuts the invocation.
        let budget = MAX_DURATION
            .saturating_sub(config.model_timeout)
            .saturating_sub(MARGIN)
            .max(Duration::from_secs(10));
        config.dispatch_budget = Some(budget);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    if config.cron_secret.is_none() {
        return Err("CRON_SECRET is required: a Vercel function is reachable by anyone".into());
    }
    let app = App::start(config).await?;
    let service = VercelLayer::new().layer(promptq::http::router(app));
    vercel_runtime::run(service).await
}
