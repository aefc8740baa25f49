//! The serverless entry point: the same axum router as `promptq serve`, run as one Vercel
//! function (built with `--features vercel`; see docs/deploy.md and vercel.json).
//!
//! It reads the same settings from the environment, opens (and migrates) the database, and
//! hands [`promptq::http::router`] to Vercel's runtime through `VercelLayer`. It runs no
//! worker pool and no built-in cron: Vercel Cron calls `/api/cron`, which with `DISPATCH=http`
//! fans every due job out to its own `POST /api/jobs/process` invocation. A function is always
//! public, so it refuses to start without `CRON_SECRET`. No logic lives here.

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

#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    let config = Args::parse().settings.validate()?;
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
