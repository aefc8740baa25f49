//! The command line: one clap parser, and one function per command that calls the use cases.
//!
//! Commands hold no logic of their own: they parse arguments into domain values, call
//! [`crate::app`] (or start the [`crate::engine`]), and print. Errors reach `main` as one
//! clear line and a non-zero exit, never a backtrace.

mod bench;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Settings};
use crate::domain::BatchKey;

/// promptq: run a fixed set of prompts against several LLMs on a schedule, as a job queue.
#[derive(Debug, Parser)]
#[command(name = "promptq", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the dashboard, the built-in scheduler and the workers
    Serve,
    /// Run workers only (scale-out: many processes sharing one PostgreSQL)
    Worker,
    /// Create or update the database schema
    Migrate,
    /// Run one scheduling pass and print the same JSON as /api/cron
    Cron {
        /// Create this batch (YYYY-MM-DD or YYYY-MM-DDTHH:MM) instead of the current one
        #[arg(long)]
        batch_key: Option<BatchKey>,
    },
    /// Schedule, then process every pending job to completion with a progress bar;
    /// exits non-zero if jobs failed
    Run {
        /// Create this batch instead of the current one
        #[arg(long)]
        batch_key: Option<BatchKey>,
    },
    /// Measure the queue: enqueue, drain and model-bound workloads, median of repetitions
    Bench(bench::BenchArgs),
    /// One repetition of one benchmark workload (run by `bench` in a child process)
    #[command(hide = true)]
    BenchOne {
        #[arg(long, value_enum)]
        workload: bench::Workload,
    },
    /// The whole pipeline on a fresh embedded database with the built-in mock models
    Demo {
        /// The demo's database file (created anew)
        #[arg(long, default_value = "promptq-demo.db")]
        file: std::path::PathBuf,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.settings.validate()?;
    match cli.command {
        Command::Serve => serve::serve(config, true).await,
        Command::Worker => serve::serve(config, false).await,
        Command::Migrate => {
            let store = crate::store::Store::open(&config.database_url).await?;
            println!("database is up to date ({:?})", store.backend());
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cron { batch_key } => {
            let app = start(config).await?;
            let report = app.trigger_cron(batch_key).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { batch_key } => run::run_to_completion(start(config).await?, batch_key).await,
        Command::Demo { file } => run::demo(config, &file).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::BenchOne { workload } => bench::bench_one(config, workload).await,
    }
}

async fn start(config: Config) -> anyhow::Result<App> {
    App::start(config).await
}
