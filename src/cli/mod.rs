//! The command line: one clap parser, and one function per command that calls the use cases.
//!
//! Commands hold no logic of their own: they parse arguments into domain values, call
//! [`crate::app`] (or start the [`crate::engine`]), and print. Errors reach `main` as one
//! clear line and a non-zero exit, never a backtrace.

/// `println!` for the one-shot commands: it returns the write error instead of panicking when
/// standard output is closed early (`promptq prompts list --json | head`), and `with_app` ends
/// such a command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod batches;
mod bench;
mod catalog;
mod dry_run;
mod export;
mod jobs;
mod models;
mod prompts;
mod prune;
mod report;
mod run;
mod serve;
mod show;
mod status;
mod table;
mod trackers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Settings};
use crate::domain::BatchKey;

/// promptq: run a fixed set of prompts against several LLMs on a schedule, as a job queue.
#[derive(Debug, Parser)]
#[command(name = "promptq", version, about, long_about = None)]
pub struct Cli {
    // Under their own heading, so that in a subcommand's --help its own options come first
    // instead of being interleaved with the global settings.
    #[command(
        flatten,
        next_help_heading = "Settings (each also an environment variable)"
    )]
    pub settings: Settings,
    /// Say which database the command uses (a relative sqlite: path shown absolute)
    #[arg(short, long, global = true)]
    pub verbose: bool,
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
        /// Create nothing: print, as JSON, the jobs the pass would create per model and their
        /// estimated cost (as `run --dry-run --json`)
        #[arg(long)]
        dry_run: bool,
    },
    /// Schedule, then process every pending job to completion with a progress bar;
    /// exits non-zero if jobs failed
    Run {
        /// Create this batch instead of the current one
        #[arg(long)]
        batch_key: Option<BatchKey>,
        /// Enqueue nothing and call no model: list the jobs the run would create per model
        /// and estimate their cost from the token counts of recent answers, at each model's
        /// params.price
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: print the estimate as JSON
        #[arg(long, requires = "dry_run")]
        json: bool,
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
    /// Show job counts and a page of jobs, as a table or as the JSON of /api/jobs/status
    Status(status::StatusArgs),
    /// Add, list, change, remove or import prompts
    #[command(subcommand)]
    Prompts(prompts::PromptsCommand),
    /// Add, list, change, remove or import models
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Show one job, or retry or cancel jobs, one job or a whole batch
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The newest batches with their jobs by status, tokens and cost
    Batches(batches::BatchesArgs),
    /// Write stored answers as CSV or JSON Lines, by batch or date range
    ///
    /// One row per stored answer, newest first: its id, job, prompt and model ids, the model's
    /// name, batch key, run index, text, token counts, cost, latency, the model version the
    /// provider reported, finish reason and time. Rows are read a page at a time.
    Export(export::ExportArgs),
    /// Remove old attempt records and raw provider bodies (and with --jobs old finished jobs)
    ///
    /// Dry run by default: prints what would be removed; --yes removes it, 1,000 rows per
    /// transaction. A job that is queued or processing is never removed.
    Prune(prune::PruneArgs),
    /// Add, list, show, change, delete or import trackers (groups of terms to find in answers)
    #[command(subcommand)]
    Trackers(trackers::TrackersCommand),
    /// A batch's tracker figures: mention rates, share of voice, ranks, cited domains and the
    /// change from the batch before, flagged when significant
    ///
    /// Analyses every answer not yet analysed first. `--format json` prints the body of
    /// `GET /api/insights/report`.
    Report(report::ReportArgs),
}

/// Runs the parsed command. Its database is named at `-v`, and in every error, so that a
/// command run in another folder than meant does not leave the user puzzled by an empty queue.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.settings.validate()?;
    let database = database_of(&cli.command, &config);
    if cli.verbose
        && let Some(database) = &database
    {
        eprintln!("database: {database}");
    }
    dispatch(cli.command, config)
        .await
        .map_err(|err| match &database {
            // A connect error names it already.
            Some(database) if !format!("{err:#}").contains(database.as_str()) => {
                anyhow::anyhow!("{err:#} (database: {database})")
            }
            _ => err,
        })
}

/// The database `command` works on, as shown to the user (never with a password); `None` for
/// `bench`, which makes databases of its own.
fn database_of(command: &Command, config: &Config) -> Option<String> {
    match command {
        Command::Bench(_) => None,
        Command::Demo { file } => Some(crate::store::location::describe(&format!(
            "sqlite:{}",
            file.display()
        ))),
        _ => Some(crate::store::location::describe(&config.database_url)),
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve::serve(config, true).await,
        Command::Worker => serve::serve(config, false).await,
        Command::Migrate => {
            App::migrate(&config.database_url, config.database_direct_url.as_deref()).await?;
            println!(
                "{} is up to date",
                crate::store::location::describe(&config.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cron {
            batch_key,
            dry_run: true,
        } => {
            with_app(config, async |app| {
                dry_run::dry_run(app, batch_key, true).await
            })
            .await
        }
        Command::Cron { batch_key, .. } => {
            with_app(config, async |app| {
                let report = app.trigger_cron(batch_key).await?;
                app.alert_pass().await;
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        Command::Run {
            batch_key,
            dry_run: true,
            json,
        } => {
            with_app(config, async |app| {
                dry_run::dry_run(app, batch_key, json).await
            })
            .await
        }
        Command::Run { batch_key, .. } => {
            run::run_to_completion(start(config).await?, batch_key).await
        }
        Command::Demo { file } => run::demo(config, &file).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::BenchOne { workload } => bench::bench_one(config, workload).await,
        Command::Status(args) => {
            with_app(config, async |app| status::status(app, args).await).await
        }
        Command::Prompts(command) => {
            with_app(config, async |app| prompts::run(app, command).await).await
        }
        Command::Models(command) => {
            with_app(config, async |app| models::run(app, command).await).await
        }
        Command::Jobs(command) => with_app(config, async |app| jobs::run(app, command).await).await,
        Command::Batches(args) => {
            with_app(config, async |app| batches::batches(app, args).await).await
        }
        Command::Export(args) => {
            with_app(config, async |app| export::export(app, args).await).await
        }
        Command::Prune(args) => with_app(config, async |app| prune::prune(app, args).await).await,
        Command::Trackers(command) => {
            with_app(config, async |app| trackers::run(app, command).await).await
        }
        Command::Report(args) => {
            with_app(config, async |app| report::report(app, args).await).await
        }
    }
}

async fn start(config: Config) -> anyhow::Result<App> {
    App::start(config).await
}

/// Runs a one-shot command on a started app, then closes the database cleanly (SQLite
/// checkpoints its WAL on close) whether the command succeeded or not.
async fn with_app(
    config: Config,
    command: impl AsyncFnOnce(&App) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let app = start(config).await?;
    let result = command(&app).await;
    app.close().await;
    match result {
        Err(err) if is_broken_pipe(&err) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// The reader of our output went away (`| head`): not an error of ours.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
