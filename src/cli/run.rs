//! `run` and `demo`: schedule a batch and process it to completion in this process, with a
//! progress bar (jobs done / total, rate, failures so far).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::app::{App, counted};
use crate::app::{JobFilter, NewModel, NewPrompt};
use crate::config::Config;
use crate::domain::{BatchKey, ProviderKind, Summary};
use crate::insights::Term;

/// The exit code of a run stopped by Ctrl-C: 128 + SIGINT, as shells report it.
const INTERRUPTED: u8 = 130;

/// Schedules the batch, then runs the pool until no job of it is queued or in flight; closes
/// the database however that ends, so that SQLite checkpoints its WAL as after any command.
pub async fn run_to_completion(app: App, batch_key: Option<BatchKey>) -> anyhow::Result<ExitCode> {
    let result = schedule_and_drain(&app, batch_key).await;
    app.close().await;
    result
}

async fn schedule_and_drain(app: &App, batch_key: Option<BatchKey>) -> anyhow::Result<ExitCode> {
    let report = app.trigger_cron(batch_key).await?;
    eprintln!("{} (batch {})", report.message, report.batch_key);
    let drained = drain(app, &report.batch_key).await?;
    print_summary(app, &report.batch_key, drained.summary()).await?;
    Ok(drained.exit_code())
}

/// How a drain ended, with the batch's counts at that moment.
enum Drained {
    Done(Summary),
    /// Ctrl-C: running calls were given their grace period, the rest handed back.
    Interrupted(Summary),
}

impl Drained {
    fn summary(&self) -> &Summary {
        match self {
            Drained::Done(summary) | Drained::Interrupted(summary) => summary,
        }
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            Drained::Interrupted(_) => ExitCode::from(INTERRUPTED),
            Drained::Done(summary) if summary.failed > 0 => ExitCode::FAILURE,
            Drained::Done(_) => ExitCode::SUCCESS,
        }
    }
}

/// Runs the worker pool until the batch has nothing left to do, showing progress. A first
/// Ctrl-C stops claiming and waits for the pool to hand its jobs back (running calls get their
/// grace period); a second one exits at once.
async fn drain(app: &App, batch_key: &str) -> anyhow::Result<Drained> {
    // Listening before the pool starts: a Ctrl-C from the first moment is ours to handle.
    let mut interrupts = Interrupts::listen()?;
    let shutdown = CancellationToken::new();
    let mut pool = app.spawn_pool(shutdown.clone());
    let analysis = crate::app::spawn_analysis(app.clone(), shutdown.clone());
    let filter = JobFilter {
        batch_key: Some(batch_key.to_owned()),
        ..JobFilter::default()
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs  {per_sec}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let summary = app.summary(&filter).await?;
        let done = summary.succeeded + summary.failed + summary.skipped;
        bar.set_length(summary.total as u64);
        bar.set_position(done as u64);
        let mut message = format!("{} succeeded, {} failed", summary.succeeded, summary.failed);
        // Jobs of models this process cannot call (a key it lacks) are never claimed here:
        // they are left queued, and do not keep the run going.
        let waiting = |queued: i64, filter: &JobFilter| {
            let filter = filter.clone();
            async move {
                let blocked: i64 = app.blocked(&filter).await?.iter().map(|b| b.queued).sum();
                anyhow::Ok(queued - blocked)
            }
        };
        if summary.in_flight() == 0 && waiting(summary.queued, &filter).await? == 0 {
            // Every pending job, not only this batch's: prompts on their own schedule have
            // batches of their own, and retries of earlier batches may be waiting.
            let all = JobFilter::default();
            let everything = app.summary(&all).await?;
            let left = everything.in_flight() + waiting(everything.queued, &all).await?;
            if left == 0 {
                bar.finish_with_message(message);
                end_line(&bar);
                break;
            }
            message.push_str(&format!(
                ", {} of other batches to go",
                counted(left, "job", "jobs")
            ));
        }
        bar.set_message(message);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = interrupts.next() => {
                // The bar stays as it was, on its own line; what follows goes below it.
                bar.abandon();
                end_line(&bar);
                eprintln!(
                    "interrupted: handing unfinished jobs back to the queue (Ctrl-C again exits at once)"
                );
                shutdown.cancel();
                tokio::select! {
                    joined = &mut pool => joined??,
                    () = interrupts.next() => {
                        eprintln!("interrupted again: exiting now; jobs still held go back to the queue when their lease expires");
                        std::process::exit(INTERRUPTED.into());
                    }
                }
                let summary = app.summary(&filter).await?;
                eprintln!(
                    "interrupted: {} left for the next `promptq run` (or `promptq serve`)",
                    counted(summary.queued + summary.in_flight(), "job", "jobs")
                );
                return Ok(Drained::Interrupted(summary));
            }
        }
    }
    shutdown.cancel();
    pool.await??;
    let _ = analysis.await;
    // The final counts, after the pool has stopped.
    Ok(Drained::Done(app.summary(&filter).await?))
}

/// Ends the line of a stopped bar: indicatif leaves the cursor after it, where the next
/// message (or the terminal's `^C`) would otherwise continue the bar's line.
fn end_line(bar: &ProgressBar) {
    if !bar.is_hidden() {
        eprintln!();
    }
}

/// Each Ctrl-C (SIGINT), from the moment this is made.
struct Interrupts {
    #[cfg(unix)]
    signals: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn listen() -> anyhow::Result<Self> {
        Ok(Interrupts {
            #[cfg(unix)]
            signals: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|err| anyhow::anyhow!("cannot listen for Ctrl-C: {err}"))?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        self.signals.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The batch's numbers and a table per model.
async fn print_summary(app: &App, batch_key: &str, summary: &Summary) -> anyhow::Result<()> {
    println!(
        "batch {batch_key}: {}, {} succeeded, {} failed, {} skipped{}",
        counted(summary.total, "job", "jobs"),
        summary.succeeded,
        summary.failed,
        summary.skipped,
        match summary.queued + summary.in_flight() {
            0 => String::new(),
            left => format!(", {left} not run yet"),
        }
    );
    use super::table::{Align, Table};
    let mut table = Table::new(&[
        ("model", Align::Left),
        ("succeeded", Align::Right),
        ("failed", Align::Right),
        ("attempts", Align::Right),
        ("per success", Align::Right),
        ("p50 latency", Align::Right),
        ("p95 latency", Align::Right),
        ("tokens", Align::Right),
        ("cost", Align::Right),
    ]);
    let ms = |v: Option<i64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
    for m in app.model_report(batch_key).await? {
        table.push(vec![
            m.model_name,
            m.summary.succeeded.to_string(),
            m.summary.failed.to_string(),
            m.attempts.to_string(),
            m.attempts_per_success
                .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}")),
            ms(m.latency_p50_ms),
            ms(m.latency_p95_ms),
            m.tokens.to_string(),
            m.cost_usd
                .map_or_else(|| "-".to_owned(), |usd| format!("${usd:.4}")),
        ]);
    }
    println!();
    table.print()?;
    // A budget stops a run short: say so, rather than leave jobs "not run yet" unexplained.
    for stopped in app
        .blocked(&JobFilter::default())
        .await?
        .iter()
        .filter(|b| b.by_budget() && b.queued > 0)
    {
        println!(
            "stopped: model '{}': {}; {} queued",
            stopped.model_name,
            stopped.reason,
            counted(stopped.queued, "job waits", "jobs wait")
        );
    }
    Ok(())
}

/// Sample models of the demo: (name, model, latency ms, failure rate).
const DEMO_MODELS: [(&str, &str, u64, f64); 3] = [
    ("fast-mock", "mock-fast-1", 60, 0.0),
    ("careful-mock", "mock-careful-2", 250, 0.0),
    ("flaky-mock", "mock-flaky-1", 120, 0.3),
];

const DEMO_PROMPTS: [&str; 8] = [
    "What is the best CRM for a small business?",
    "Which project management tools do startups recommend in 2025?",
    "Recommend a reliable password manager for a family.",
    "What are the top alternatives to Slack for remote teams?",
    "Which cloud provider is cheapest for hosting a Postgres database?",
    "What is the best running shoe brand for beginners?",
    "Which email marketing platform has the best deliverability?",
    "Name the most trusted brands of noise-cancelling headphones.",
];

const DEMO_RUNS: i32 = 3;

/// The demo's tracker groups: brands its mock models name (see `params.answers`).
const DEMO_TRACKERS: [(&str, &[&str]); 2] = [
    (
        "CRMs",
        &[
            "HubSpot",
            "Salesforce",
            "Pipedrive",
            "Zoho CRM",
            "Freshsales",
        ],
    ),
    (
        "Password managers",
        &["1Password", "Bitwarden", "Dashlane", "Keeper", "LastPass"],
    ),
];

/// The whole pipeline on a fresh embedded database with mock models.
pub async fn demo(mut config: Config, file: &Path) -> anyhow::Result<ExitCode> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => anyhow::bail!("cannot remove the old demo database {path:?}: {err}"),
        }
    }
    config.database_url = format!("sqlite:{}", file.display());
    config.worker_concurrency = config.worker_concurrency.max(16);
    let app = App::start(config).await?;
    eprintln!("promptq demo: a fresh database at {}", file.display());
    for (name, model, latency_ms, fail_rate) in DEMO_MODELS {
        app.create_model(NewModel {
            name: name.to_owned(),
            provider: ProviderKind::Mock,
            model: model.to_owned(),
            params: serde_json::json!({"latencyMs": latency_ms, "failRate": fail_rate,
                "answers": "brands"}),
            active: true,
        })
        .await?;
    }
    for text in DEMO_PROMPTS {
        app.create_prompt(NewPrompt {
            text: text.to_owned(),
            model_ids: None,
            runs: DEMO_RUNS,
            active: true,
            schedule: None,
        })
        .await?;
    }
    eprintln!(
        "{} models ({} with a 30% failure rate, so retries show), {} prompts × {} runs",
        DEMO_MODELS.len(),
        DEMO_MODELS[2].0,
        DEMO_PROMPTS.len(),
        DEMO_RUNS
    );
    for (name, terms) in DEMO_TRACKERS {
        let terms: Vec<Term> = terms
            .iter()
            .map(|t| Term {
                name: (*t).to_owned(),
                patterns: Vec::new(),
            })
            .collect();
        app.create_tracker(name, &terms).await?;
    }
    // Two batches, yesterday's then the current one, so that the report has a change to show.
    let today = chrono::Utc::now()
        .with_timezone(&app.config().timezone)
        .date_naive();
    let yesterday: BatchKey = (today - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string()
        .parse()?;
    for batch in [Some(yesterday), None] {
        let report = app.trigger_cron(batch).await?;
        eprintln!("{} (batch {})", report.message, report.batch_key);
        let drained = drain(&app, &report.batch_key).await?;
        print_summary(&app, &report.batch_key, drained.summary()).await?;
        if let Drained::Interrupted(_) = drained {
            app.close().await;
            return Ok(drained.exit_code());
        }
    }
    println!(
        "\nThe mock models name brands in their answers; the tracker '{}' follows five CRMs:",
        DEMO_TRACKERS[0].0
    );
    super::report::brief(&app, DEMO_TRACKERS[0].0).await?;
    println!(
        "\nThe whole report (every tracker, every prompt, as a table, CSV, JSON or Markdown):\n  promptq report --database-url sqlite:{}",
        file.display()
    );
    println!(
        "\nSee every job and answer in the dashboard:\n  CRON_SECRET=choose-a-secret promptq serve --database-url sqlite:{}\n  then open http://127.0.0.1:3000/ and log in with that secret.",
        file.display()
    );
    app.close().await;
    Ok(ExitCode::SUCCESS)
}
