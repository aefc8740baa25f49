//! W5, a fleet: the model-bound batch (2,000 jobs of a 200 ms mock per worker, 100 slots
//! each, so the ideal is 4.0 s whatever the fleet's size) run by 1, 2 or 3 `promptq worker`
//! processes on one database; and, on PostgreSQL, the same batch on three workers with one of
//! them killed (`kill -9`) a second after the enqueue.
//!
//! The batch's time is read from the database's clock: from the enqueue's commit to the last
//! finish, the drain alone as in W2 and W3 (the enqueue of 6,000 jobs, some 0.13 s, is W1's
//! measure).
//! Each worker's peak RSS is read from `/proc` before it is stopped. With a kill, the rescue
//! time is from the kill until the dead worker is no longer listed as live: the pass that
//! finds it dead hands its jobs back in the same transaction.

use std::process::{Child, Command as ProcessCommand, Stdio};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::domain::queries::JobFilter;
use crate::schedule::Trigger;
use crate::store::Clock;
use crate::store::workers::WORKER_SILENT_AFTER;

/// Jobs each worker's share of the batch holds, and its slots.
pub const JOBS_PER_WORKER: usize = 2000;
pub const SLOTS: usize = 100;
pub const LATENCY_MS: u64 = 200;
/// The ideal: each worker's 2,000 jobs of 200 ms on its 100 slots.
pub const IDEAL_SECONDS: f64 = (JOBS_PER_WORKER as f64 / SLOTS as f64) * LATENCY_MS as f64 / 1e3;

/// What a fleet run measured.
pub struct FleetFigures {
    pub jobs: u64,
    pub seconds: f64,
    /// Jobs that took more than one attempt (a worker that is never killed runs none twice).
    pub ran_twice: u64,
    pub rescue_seconds: Option<f64>,
    /// The largest peak RSS among the worker processes.
    pub worker_peak_rss_kb: u64,
}

/// Runs the batch on `workers` worker processes (the database is seeded already), killing
/// the first one a second after the enqueue when `kill` is set.
pub async fn run(app: &App, workers: usize, kill: bool) -> anyhow::Result<FleetFigures> {
    let jobs = (JOBS_PER_WORKER * workers) as u64;
    let exe = std::env::current_exe()?;
    let mut fleet = Fleet(Vec::new());
    for _ in 0..workers {
        fleet.0.push(
            ProcessCommand::new(&exe)
                .arg("worker")
                .env("WORKER_CONCURRENCY", SLOTS.to_string())
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        );
    }
    wait_for(
        Duration::from_secs(60),
        "the workers to register",
        || async { Ok(app.workers().await?.live >= workers as i64) },
    )
    .await?;

    let report = app
        .run_cron(Trigger::Tick {
            slot: chrono::Utc::now(),
        })
        .await?;
    anyhow::ensure!(
        report.jobs_created == jobs,
        "created {}",
        report.jobs_created
    );
    let enqueued = app.store().clock_now().await?;
    let mut rescue_seconds = None;
    if kill {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim_pid = i64::from(fleet.0[0].id());
        let live = app
            .store()
            .workers_live(Clock::Database, WORKER_SILENT_AFTER)
            .await?;
        let victim = live
            .iter()
            .find(|w| w.pid == victim_pid)
            .map(|w| w.id)
            .ok_or_else(|| anyhow::anyhow!("the worker to kill is not registered"))?;
        fleet.0[0].kill()?;
        let killed = Instant::now();
        wait_for(
            Duration::from_secs(120),
            "the dead worker's rescue",
            || async {
                let live = app
                    .store()
                    .workers_live(Clock::Database, WORKER_SILENT_AFTER)
                    .await?;
                Ok(live.iter().all(|w| w.id != victim))
            },
        )
        .await?;
        rescue_seconds = Some(killed.elapsed().as_secs_f64());
    }
    wait_for(Duration::from_secs(600), "the batch to finish", || async {
        let summary = app.summary(&JobFilter::default()).await?;
        Ok(summary.succeeded + summary.failed + summary.skipped >= summary.total)
    })
    .await?;
    let worker_peak_rss_kb = fleet
        .0
        .iter()
        .skip(usize::from(kill))
        .map(|child| super::proc::peak_rss_kb_of(child.id()))
        .max()
        .unwrap_or(0);
    fleet.stop();

    let all = super::all_jobs(app).await?;
    let last = all.iter().filter_map(|job| job.finished_at).max();
    let Some(last) = last else {
        anyhow::bail!("the batch left no finished job");
    };
    Ok(FleetFigures {
        jobs,
        seconds: (last - enqueued).as_seconds_f64(),
        ran_twice: all.iter().filter(|job| job.attempt_count > 1).count() as u64,
        rescue_seconds,
        worker_peak_rss_kb,
    })
}

/// The worker processes; stopped (SIGTERM, then SIGKILL) when dropped, so that an error
/// leaves none behind.
struct Fleet(Vec<Child>);

impl Fleet {
    fn stop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = ProcessCommand::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.0.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `done` every 10 ms until it holds, for at most `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        anyhow::ensure!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
