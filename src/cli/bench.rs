//! `promptq bench`: the queue measured against its limits, on either backend.
//!
//! Fixed workloads, each repeated on a fresh database, each repetition in a fresh child
//! process (so that its peak RSS is its own): W1 enqueues 20,000 jobs in one scheduling pass;
//! W2 drains 20,000 queued jobs of a 0 ms mock model at concurrency 10 and 50, each job
//! writing its response; W3 runs 2,000 jobs of a 200 ms mock model at concurrency 100, whose
//! ideal is 4.0 s; W4 runs 20,000 jobs of heavy-tailed latency at concurrency 1,000 against
//! the schedule a pool without overhead would achieve ([`tail`]); W5 runs the model-bound batch
//! on 1, 2 and 3 `promptq worker` processes, and on three with one killed ([`fleet`]); W6 runs
//! 1,000 calls of 25 s at concurrency 1,000, long enough for every lease to be renewed twice
//! (real model calls often last that long, and a renewal is a write per running job); R1 and
//! R3 run 150 jobs (three windows) of a model whose `rpm` is its provider's limit, in one pool
//! and in three (see [`rate`]), and report the rate achieved against the limit and the 429s.
//! Each workload reports, for its measured part (W1's enqueue, the others' drain alone), the
//! WAL written per job (PostgreSQL) and the CPU per 1,000 jobs of promptq's process and of the
//! local PostgreSQL server's processes ([`proc`]).
//! Figures are reported as median and min–max, as a table or `--json`.
//!
//! On Postgres, `--db` names a server: each repetition creates its own database there and
//! drops it afterwards. Performance is measured here and recorded in BENCHMARKS.md, never
//! asserted in a test.

use std::process::{Command as ProcessCommand, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::{App, ScratchDatabase};
use crate::app::{NewModel, NewPrompt};
use crate::config::Config;
use crate::domain::ProviderKind;
use crate::schedule::Trigger;

#[path = "bench_rate.rs"]
pub mod rate;

#[path = "bench_proc.rs"]
mod proc;

#[path = "bench_tail.rs"]
mod tail;

#[path = "bench_fleet.rs"]
mod fleet;
use proc::{ServerCpu, own_cpu_seconds, peak_rss_kb};

/// The workloads, by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Workload {
    #[default]
    W1,
    W2c10,
    W2c50,
    W3,
    W4,
    W5x1,
    W5x2,
    W5x3,
    W5kill,
    W6,
    R1,
    R3,
}

impl Workload {
    const ALL: [Workload; 12] = [
        Workload::W1,
        Workload::W2c10,
        Workload::W2c50,
        Workload::W3,
        Workload::W4,
        Workload::W5x1,
        Workload::W5x2,
        Workload::W5x3,
        Workload::W5kill,
        Workload::W6,
        Workload::R1,
        Workload::R3,
    ];

    /// W5's fleet size, and whether one worker is killed.
    fn fleet(self) -> Option<(usize, bool)> {
        match self {
            Workload::W5x1 => Some((1, false)),
            Workload::W5x2 => Some((2, false)),
            Workload::W5x3 => Some((3, false)),
            Workload::W5kill => Some((3, true)),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Workload::W1 => "W1 enqueue 20,000 jobs (one pass)",
            Workload::W2c10 => "W2 drain 20,000 × 0 ms, c=10",
            Workload::W2c50 => "W2 drain 20,000 × 0 ms, c=50",
            Workload::W3 => "W3 2,000 × 200 ms, c=100",
            Workload::W4 => "W4 20,000 heavy tail, c=1000",
            Workload::W5x1 => "W5 fleet of 1 worker, 2,000 × 200 ms",
            Workload::W5x2 => "W5 fleet of 2 workers, 4,000 × 200 ms",
            Workload::W5x3 => "W5 fleet of 3 workers, 6,000 × 200 ms",
            Workload::W5kill => "W5 3 workers, one killed, 6,000",
            Workload::W6 => "W6 1,000 × 25 s, c=1000 (leases renewed)",
            Workload::R1 => "R1 150 at rpm 300, 1 pool c=16",
            Workload::R3 => "R3 150 at rpm 300, 3 pools c=16",
        }
    }
}

/// What one repetition measured (the child's answer).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    pub workload: Workload,
    pub jobs: u64,
    pub seconds: f64,
    pub peak_rss_kb: u64,
    /// Peak RSS once the database was seeded, before the measured part.
    pub seeded_rss_kb: u64,
    /// WAL written during the measured part (W2, W3: the drain alone; W1: the enqueue).
    pub wal_bytes: Option<i64>,
    /// CPU seconds of this process during the measured part.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// CPU seconds of the local PostgreSQL server's processes during the measured part.
    #[serde(default)]
    pub db_cpu_seconds: Option<f64>,
    /// The rate-bound workload's figures.
    #[serde(default)]
    pub rate: Option<rate::RateFigures>,
    /// What a pool without any overhead would take (W3, W4, W5, W6).
    #[serde(default)]
    pub ideal_seconds: Option<f64>,
    /// W5: jobs that took more than one attempt.
    #[serde(default)]
    pub ran_twice: Option<u64>,
    /// W5 with a kill: from the kill until the dead worker's jobs were handed back.
    #[serde(default)]
    pub rescue_seconds: Option<f64>,
}

/// Arguments of `promptq bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Database to measure: `sqlite:PATH` (a temporary file by default) or a `postgres://`
    /// server on which the bench may create and drop databases
    #[arg(long)]
    pub db: Option<String>,
    /// Repetitions of each workload
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Only these workloads (default: all)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<Workload>,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Runs every repetition in a child process and reports.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let workloads = if args.workload.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workload.clone()
    };
    let exe = std::env::current_exe()?;
    let temp = tempfile::tempdir()?;
    let mut samples: Vec<Sample> = Vec::new();
    for &workload in &workloads {
        for round in 0..args.repeat.max(1) {
            let tag = format!("{}_{round}", format!("{workload:?}").to_lowercase());
            let db = ScratchDatabase::create(args.db.as_deref(), temp.path(), &tag).await?;
            if !args.json {
                eprintln!("{} (run {}/{})…", workload.label(), round + 1, args.repeat);
            }
            let output = ProcessCommand::new(&exe)
                .arg("bench-one")
                .arg("--workload")
                .arg(format!("{workload:?}").to_lowercase())
                .env("DATABASE_URL", &db.url)
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()?;
            db.drop_if_server().await?;
            if !output.status.success() {
                anyhow::bail!("{} failed (exit {})", workload.label(), output.status);
            }
            let sample: Sample = serde_json::from_slice(&output.stdout)
                .map_err(|err| anyhow::anyhow!("unreadable bench sample: {err}"))?;
            samples.push(sample);
        }
    }
    let report = Report::from_samples(&samples, args.db.as_deref().unwrap_or("sqlite (temp)"));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_table();
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one repetition in this (child) process and prints its sample as JSON.
pub async fn bench_one(mut config: Config, workload: Workload) -> anyhow::Result<ExitCode> {
    config.max_attempts = 3;
    if matches!(workload, Workload::R1 | Workload::R3) {
        config.worker_concurrency = 16;
        let pools = if workload == Workload::R1 { 1 } else { 3 };
        let (seconds, figures) = rate::run(config, pools).await?;
        let sample = Sample {
            workload,
            jobs: rate::JOBS,
            seconds,
            peak_rss_kb: peak_rss_kb(),
            seeded_rss_kb: 0,
            wal_bytes: None,
            cpu_seconds: None,
            db_cpu_seconds: None,
            rate: Some(figures),
            ..Sample::default()
        };
        println!("{}", serde_json::to_string(&sample)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some((workers, kill)) = workload.fleet() {
        let app = App::start(config).await?;
        let mock = serde_json::json!({"latencyMs": fleet::LATENCY_MS});
        let prompts = fleet::JOBS_PER_WORKER * workers / 5;
        seed(&app, prompts, 1, 5, mock).await?;
        let figures = fleet::run(&app, workers, kill).await?;
        app.close().await;
        let sample = Sample {
            workload,
            jobs: figures.jobs,
            seconds: figures.seconds,
            peak_rss_kb: figures.worker_peak_rss_kb,
            ideal_seconds: Some(fleet::IDEAL_SECONDS),
            ran_twice: Some(figures.ran_twice),
            rescue_seconds: figures.rescue_seconds,
            ..Sample::default()
        };
        println!("{}", serde_json::to_string(&sample)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mock = |latency_ms: u64| serde_json::json!({"latencyMs": latency_ms});
    let (concurrency, prompts, models, runs, params) = match workload {
        Workload::W1 => (0, 1000, 4, 5, mock(0)),
        Workload::W2c10 => (10, 1000, 4, 5, mock(0)),
        Workload::W2c50 => (50, 1000, 4, 5, mock(0)),
        Workload::W3 => (100, 400, 1, 5, mock(200)),
        Workload::W6 => (1000, 200, 1, 5, mock(LONG_CALL_MS)),
        Workload::W4 => (
            tail::CONCURRENCY,
            tail::PROMPTS,
            1,
            tail::RUNS,
            tail::model_params(),
        ),
        _ => unreachable!("run above"),
    };
    config.worker_concurrency = concurrency;
    let app = App::start(config).await?;
    seed(&app, prompts, models, runs, params).await?;
    let jobs = (prompts * models) as u64 * runs as u64;
    let slot = chrono::Utc::now();
    let seeded_rss_kb = peak_rss_kb();

    let mut ideal_seconds = match workload {
        Workload::W3 => Some(4.0),
        Workload::W6 => Some(LONG_CALL_MS as f64 / 1000.0),
        _ => None,
    };
    if workload != Workload::W1 {
        let report = app.run_cron(Trigger::Tick { slot }).await?;
        anyhow::ensure!(
            report.jobs_created == jobs,
            "created {} jobs",
            report.jobs_created
        );
        if workload == Workload::W4 {
            ideal_seconds = Some(tail::ideal_seconds(&app).await?);
        }
    }
    // The measured part: W1's enqueue, the others' drain alone.
    let wal_before = app.wal_position().await?;
    // Only the measured server's processes: other servers on the machine are not counted.
    let postmaster = match app.database_backend_pid().await? {
        Some(backend) => proc::postmaster_of(backend),
        None => None,
    };
    let server_before = postmaster.and_then(ServerCpu::sample);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    if workload == Workload::W1 {
        let report = app.run_cron(Trigger::Tick { slot }).await?;
        anyhow::ensure!(
            report.jobs_created == jobs,
            "W1 created {} jobs",
            report.jobs_created
        );
    } else {
        drain(&app, jobs).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = own_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let db_cpu_seconds = postmaster
        .and_then(ServerCpu::sample)
        .zip(server_before)
        .map(|(after, before)| after.seconds_since(&before));
    let wal_after = app.wal_position().await?;
    let sample = Sample {
        workload,
        jobs,
        seconds,
        peak_rss_kb: peak_rss_kb(),
        seeded_rss_kb,
        wal_bytes: wal_before.zip(wal_after).map(|(a, b)| b - a),
        cpu_seconds,
        db_cpu_seconds,
        ideal_seconds,
        ..Sample::default()
    };
    app.close().await;
    println!("{}", serde_json::to_string(&sample)?);
    Ok(ExitCode::SUCCESS)
}

/// W6's calls: longer than two heartbeats of the default 30 s lease (one every 10 s).
const LONG_CALL_MS: u64 = 25_000;

async fn seed(
    app: &App,
    prompts: usize,
    models: usize,
    runs: i32,
    params: serde_json::Value,
) -> anyhow::Result<()> {
    for m in 0..models {
        app.create_model(NewModel {
            name: format!("bench-{m}"),
            provider: ProviderKind::Mock,
            model: format!("mock-{m}"),
            params: params.clone(),
            active: true,
        })
        .await?;
    }
    for p in 0..prompts {
        app.create_prompt(NewPrompt {
            text: format!("Which brands lead category {p}?"),
            model_ids: None,
            runs,
            active: true,
            schedule: None,
        })
        .await?;
    }
    Ok(())
}

/// Every job of the database, read a page at a time.
async fn all_jobs(app: &App) -> anyhow::Result<Vec<crate::domain::Job>> {
    each_job(app, |job| job).await
}

/// Every job, one page at a time, each reduced by `keep` as its page arrives: the bench's own
/// bookkeeping (W4's 20,000 jobs) must not swell the peak RSS it reports.
async fn each_job<T>(
    app: &App,
    mut keep: impl FnMut(crate::domain::Job) -> T,
) -> anyhow::Result<Vec<T>> {
    let mut jobs = Vec::new();
    loop {
        let page = app
            .status(&crate::app::StatusQuery {
                filter: crate::domain::queries::JobFilter::default(),
                page: crate::domain::queries::Page {
                    limit: 1000,
                    offset: jobs.len() as i64,
                },
            })
            .await?;
        let done = page.jobs.len() < 1000;
        jobs.extend(page.jobs.into_iter().map(&mut keep));
        if done {
            return Ok(jobs);
        }
    }
}

/// Runs the pool until `jobs` attempts succeeded; the count is in-process, so waiting for it
/// costs the database nothing.
async fn drain(app: &App, jobs: u64) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let pool = app.spawn_pool(shutdown.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    while app.metrics().succeeded.load(Ordering::Relaxed) < jobs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the drain did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shutdown.cancel();
    pool.await??;
    Ok(())
}

/// Median and range of one figure.
#[derive(Debug, Clone, Copy, Serialize)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
}

impl Figure {
    fn of(mut values: Vec<f64>) -> Option<Figure> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        Some(Figure {
            median,
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

#[derive(Debug, Serialize)]
struct Report {
    database: String,
    w1_jobs_per_s: Option<f64>,
    w2_c10_jobs_per_s: Option<f64>,
    w2_c50_jobs_per_s: Option<f64>,
    w3_ratio: Option<f64>,
    /// W3's peak RSS (median), in MB.
    peak_rss_mb: Option<f64>,
    w4_ratio: Option<f64>,
    w4_peak_rss_mb: Option<f64>,
    /// W5 with 1, 2 and 3 workers: wall time over the ideal.
    w5_ratios: Vec<f64>,
    /// W5 with one worker: the `promptq worker` process's peak RSS, in MB.
    w5_worker_peak_rss_mb: Option<f64>,
    w5_rescue_seconds: Option<f64>,
    detail: Vec<Detail>,
}

#[derive(Debug, Serialize)]
struct Detail {
    workload: Workload,
    label: &'static str,
    jobs_per_s: Figure,
    seconds: Figure,
    peak_rss_mb: Figure,
    wal_bytes_per_job: Option<Figure>,
    /// CPU milliseconds per 1,000 jobs: this process's, and the local PostgreSQL server's.
    cpu_ms_per_1k_jobs: Option<Figure>,
    db_cpu_ms_per_1k_jobs: Option<Figure>,
    /// Achieved rate / limit, and 429s per run (rate-bound workloads).
    achieved_over_limit: Option<Figure>,
    refused: Option<Figure>,
    /// Wall time over the ideal (W3, W4, W5, W6).
    over_ideal: Option<Figure>,
    /// W5: jobs run more than once (a kill's rescued jobs), and the rescue time.
    ran_twice: Option<Figure>,
    rescue_seconds: Option<Figure>,
}

impl Report {
    fn from_samples(samples: &[Sample], database: &str) -> Report {
        let mut detail = Vec::new();
        for workload in Workload::ALL {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.workload == workload).collect();
            let figure =
                |f: &dyn Fn(&Sample) -> f64| Figure::of(mine.iter().map(|s| f(s)).collect());
            let (Some(jobs_per_s), Some(seconds), Some(peak_rss_mb)) = (
                figure(&|s| s.jobs as f64 / s.seconds),
                figure(&|s| s.seconds),
                figure(&|s| s.peak_rss_kb as f64 / 1024.0),
            ) else {
                continue;
            };
            let wal: Vec<f64> = mine
                .iter()
                .filter_map(|s| s.wal_bytes.map(|w| w as f64 / s.jobs as f64))
                .collect();
            let per_1k = |cpu: fn(&Sample) -> Option<f64>| {
                Figure::of(
                    mine.iter()
                        .filter_map(|s| cpu(s).map(|c| c * 1e6 / s.jobs as f64))
                        .collect(),
                )
            };
            detail.push(Detail {
                workload,
                label: workload.label(),
                jobs_per_s,
                seconds,
                peak_rss_mb,
                wal_bytes_per_job: Figure::of(wal),
                cpu_ms_per_1k_jobs: per_1k(|s| s.cpu_seconds),
                db_cpu_ms_per_1k_jobs: per_1k(|s| s.db_cpu_seconds),
                achieved_over_limit: Figure::of(
                    mine.iter()
                        .filter_map(|s| s.rate)
                        .map(|r| r.achieved_per_min / r.limit_per_min)
                        .collect(),
                ),
                refused: Figure::of(
                    mine.iter()
                        .filter_map(|s| s.rate)
                        .map(|r| r.refused as f64)
                        .collect(),
                ),
                over_ideal: Figure::of(
                    mine.iter()
                        .filter_map(|s| s.ideal_seconds.map(|ideal| s.seconds / ideal))
                        .collect(),
                ),
                ran_twice: Figure::of(
                    mine.iter()
                        .filter_map(|s| s.ran_twice.map(|n| n as f64))
                        .collect(),
                ),
                rescue_seconds: Figure::of(mine.iter().filter_map(|s| s.rescue_seconds).collect()),
            });
        }
        let median = |w: Workload| {
            detail
                .iter()
                .find(|d| d.workload == w)
                .map(|d| d.jobs_per_s.median)
        };
        let find = |w: Workload| detail.iter().find(|d| d.workload == w);
        let ratio = |w: Workload| find(w).and_then(|d| d.over_ideal).map(|f| f.median);
        let w3 = find(Workload::W3);
        Report {
            database: database.to_owned(),
            w1_jobs_per_s: median(Workload::W1),
            w2_c10_jobs_per_s: median(Workload::W2c10),
            w2_c50_jobs_per_s: median(Workload::W2c50),
            w3_ratio: ratio(Workload::W3),
            peak_rss_mb: w3.map(|d| d.peak_rss_mb.median),
            w4_ratio: ratio(Workload::W4),
            w4_peak_rss_mb: find(Workload::W4).map(|d| d.peak_rss_mb.median),
            w5_ratios: [Workload::W5x1, Workload::W5x2, Workload::W5x3]
                .map(ratio)
                .into_iter()
                .flatten()
                .collect(),
            w5_worker_peak_rss_mb: find(Workload::W5x1).map(|d| d.peak_rss_mb.median),
            w5_rescue_seconds: find(Workload::W5kill)
                .and_then(|d| d.rescue_seconds)
                .map(|f| f.median),
            detail,
        }
    }

    fn print_table(&self) {
        println!("database: {}", self.database);
        println!(
            "{:<36} {:>22} {:>15} {:>12} {:>10} {:>10} {:>10}",
            "workload",
            "jobs/s median (min–max)",
            "seconds median",
            "peak RSS MB",
            "WAL B/job",
            "CPU ms/1k",
            "DB ms/1k"
        );
        let or_dash = |figure: Option<Figure>| {
            figure
                .map(|f| format!("{:.0}", f.median))
                .unwrap_or_else(|| "-".into())
        };
        for d in &self.detail {
            println!(
                "{:<36} {:>22} {:>15} {:>12.1} {:>10} {:>10} {:>10}",
                d.label,
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    d.jobs_per_s.median, d.jobs_per_s.min, d.jobs_per_s.max
                ),
                format!("{:.3} s", d.seconds.median),
                d.peak_rss_mb.median,
                or_dash(d.wal_bytes_per_job),
                or_dash(d.cpu_ms_per_1k_jobs),
                or_dash(d.db_cpu_ms_per_1k_jobs),
            );
        }
        for d in &self.detail {
            if let (Some(achieved), Some(refused)) = (d.achieved_over_limit, d.refused) {
                println!(
                    "{}: achieved/limit {:.3} ({:.3}–{:.3}), 429s {:.0} ({:.0}–{:.0})",
                    d.label,
                    achieved.median,
                    achieved.min,
                    achieved.max,
                    refused.median,
                    refused.min,
                    refused.max
                );
            }
        }
        for d in &self.detail {
            if let Some(ratio) = d.over_ideal {
                print!(
                    "{}: wall / ideal {:.3} ({:.3}–{:.3})",
                    d.label, ratio.median, ratio.min, ratio.max
                );
                if let Some(twice) = d.ran_twice {
                    print!(", jobs run twice {:.0}", twice.max);
                }
                if let Some(rescue) = d.rescue_seconds {
                    print!(
                        ", rescue after kill -9 {:.2} s ({:.2}–{:.2})",
                        rescue.median, rescue.min, rescue.max
                    );
                }
                println!();
            }
        }
    }
}
