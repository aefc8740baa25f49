//! A configured `rpm`/`tpm` delivers its rate at scale: many more jobs than the pool's slots,
//! more than three windows of the provider's limit, one process or three sharing PostgreSQL.
//!
//! The provider (`window.rs`) enforces its limit over a sliding 10 s window at a
//! sixth of the per-minute figure: stricter than the per-minute limit it stands for (any
//! minute is six such windows), and three windows pass in 30 s rather than 3 minutes. What is
//! asserted is what the provider counted: every job done, at most 1 % of calls refused, the
//! accepted rate near the limit (see `check`); and waiting for a slot spent no attempt.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promptq::app::App;
use promptq::store::Store;
use serde_json::json;

use crate::support::{self, on_both};
use crate::window;

on_both!(
    serial = crate::SERIAL;
    rpm_delivers_its_rate,
    tpm_delivers_its_rate,
);

/// 300 calls a minute, enforced as 50 in any 10 s.
const RPM: u64 = 300;
/// 600,000 tokens a minute, enforced as 100,000 in any 10 s; answers of 2,000 tokens.
const TPM: u64 = 600_000;
const TOKENS_PER_ANSWER: u64 = 2_000;
/// Three windows' worth of jobs: 30 s at the limit.
const JOBS: usize = 150;

fn provider_limits(requests: Option<usize>, tokens: Option<u64>) -> window::Limits {
    window::Limits {
        window: Duration::from_secs(10),
        requests,
        tokens,
        tokens_per_answer: TOKENS_PER_ANSWER,
        latency: Duration::from_millis(20),
    }
}

async fn rpm_delivers_its_rate(db: &support::TestDb) {
    let provider = window::start(provider_limits(Some(50), None)).await;
    seed(&db.store, &provider.base_url, json!({"rpm": RPM}), JOBS).await;
    let elapsed = run_in_process(db, Duration::from_secs(120)).await;
    check(db, &provider, elapsed, RPM, false).await;
}

async fn tpm_delivers_its_rate(db: &support::TestDb) {
    let provider = window::start(provider_limits(None, Some(TPM / 6))).await;
    // No maxTokens: the first estimate (512 tokens) is a quarter of what answers use, so the
    // limit holds only if reservations are settled with the tokens actually used.
    seed(&db.store, &provider.base_url, json!({"tpm": TPM}), JOBS).await;
    let elapsed = run_in_process(db, Duration::from_secs(120)).await;
    check(db, &provider, elapsed, TPM, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_holds_across_three_worker_processes_on_postgres() {
    let _one_at_a_time = crate::SERIAL.lock().await;
    let Some(db) = support::postgres().await else {
        return;
    };
    let provider = window::start(provider_limits(Some(50), None)).await;
    seed(&db.store, &provider.base_url, json!({"rpm": RPM}), JOBS).await;
    let app = App::with_store(support::config(&db.url, &[]), db.store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let started = Instant::now();
    let mut workers: Vec<Child> = (0..3)
        .map(|_| {
            support::worker_command(
                &db.url,
                // Warnings only: a line per job would bury a failure's message in CI's log.
                &[("WORKER_CONCURRENCY", "16"), ("RUST_LOG", "warn")],
            )
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a worker")
        })
        .collect();
    support::wait_until_done(&db.store, Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    for child in &mut workers {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
    }
    for mut child in workers {
        let status = child.wait().unwrap();
        assert!(status.success(), "a worker exited with {status}");
    }
    check(&db, &provider, elapsed, RPM, false).await;
}

/// What every run must show, from the provider's counts.
async fn check(
    db: &support::TestDb,
    provider: &window::WindowProvider,
    elapsed: Duration,
    limit: u64,
    tokens: bool,
) {
    let summary = support::summary(&db.store).await;
    assert_eq!(
        (summary.succeeded, summary.failed),
        (JOBS as i64, 0),
        "{summary:?} after {elapsed:?}"
    );
    {
        let counts = provider.counts.lock().unwrap();
        let calls = counts.accepted.len() + counts.refused;
        let rate = counts.rate_per_minute(tokens);
        // PROMPTQ_SHOW_GAPS=1 lists the pauses between accepted calls: a limit's slots gone
        // unused show up there (this is how a claim loop sleeping through due jobs was found).
        if std::env::var_os("PROMPTQ_SHOW_GAPS").is_some() {
            let t0 = counts.accepted[0].0;
            for w in counts.accepted.windows(2) {
                let gap = w[1].0 - w[0].0;
                if gap > Duration::from_millis(300) {
                    eprintln!("gap {:?} at {:.2?}", gap, w[0].0 - t0);
                }
            }
        }
        let ideal = JOBS as f64 * if tokens { TOKENS_PER_ANSWER } else { 1 } as f64 / limit as f64;
        eprintln!(
            "{} accepted, {} refused; {rate:.0}/min of {limit} ({:.1} %); {elapsed:.1?} for an ideal of {:.1} s",
            counts.accepted.len(),
            counts.refused,
            rate * 100.0 / limit as f64,
            ideal * 60.0
        );
        assert!(
            counts.refused * 100 <= calls,
            "{} of {calls} calls refused",
            counts.refused
        );
        // 97 % is the design (calls are spaced 3 % wider than the limit), measured on SQLite and
        // PostgreSQL, rpm and tpm, one pool or three processes. The bound leaves room for a
        // loaded machine without letting a lost slot in every few seconds pass (that measured
        // 78-92 %).
        let floor = 0.93;
        assert!(
            rate >= floor * limit as f64,
            "{rate:.0} a minute is under {:.0} % of {limit}",
            floor * 100.0
        );
    }
    let jobs = support::all_jobs(&db.store).await;
    let refused = provider.counts.lock().unwrap().refused;
    let attempts: i64 = jobs.iter().map(|j| i64::from(j.attempt_count)).sum();
    assert!(
        attempts <= (JOBS + refused) as i64,
        "{attempts} attempts for {JOBS} jobs and {refused} refusals: waiting spent attempts"
    );
}

async fn run_in_process(db: &support::TestDb, limit: Duration) -> Duration {
    let started = Instant::now();
    let pool = support::RunningPool::start_as_configured(
        &db.store,
        &db.url,
        &["--worker-concurrency", "16"],
    )
    .await;
    support::wait_until_done(&db.store, limit).await;
    let elapsed = started.elapsed();
    pool.stop().await;
    elapsed
}

/// One openai-compatible model at `base_url` with `limits`, and `jobs` prompts of one run.
async fn seed(store: &Store, base_url: &str, limits: serde_json::Value, jobs: usize) {
    let model = support::openai_model("limited", "fake-1", base_url, limits);
    support::seed(store, &[model], jobs, 1).await;
}
