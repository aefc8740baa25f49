//! Two real `promptq worker` processes share one PostgreSQL, one of them under Debian's
//! `faketime` with its clock a minute off: leases, rescues and due-ness must follow the
//! database's clock, so neither worker takes the other's live jobs and both get work; and a
//! rate limit they share must be reserved on that clock too, or the worker ahead reserves its
//! slots a minute into the other's future and every job the other takes is put off a minute.
//! A `serve` ahead of the database fills its built-in cron's slots by the database's clock too.
//!
//! Needs `faketime` (`apt-get install -y faketime`); without it the test says so and passes
//! unless `PROMPTQ_REQUIRE_POSTGRES=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use promptq::app::App;
use promptq::store::Store;
use serde_json::json;

use crate::support;

/// Jobs of the batch: 2 models × 12 prompts.
const JOBS: i64 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_a_minute_ahead_never_takes_live_jobs() {
    two_workers_one_skewed("+60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_a_minute_behind_claims_and_keeps_its_jobs() {
    two_workers_one_skewed("-60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_shared_with_a_worker_a_minute_ahead_keeps_its_pace() {
    rate_limit_shared_with_a_skewed_worker("+60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_shared_with_a_worker_a_minute_behind_keeps_its_pace() {
    rate_limit_shared_with_a_skewed_worker("-60s").await;
}

fn faketime() -> Option<PathBuf> {
    let path = Path::new("/usr/bin/faketime");
    if path.exists() {
        return Some(path.to_owned());
    }
    if std::env::var("PROMPTQ_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("faketime is required in CI: apt-get install -y faketime");
    }
    eprintln!("\n!!! SKIPPING the clock-skew test: faketime is not installed\n");
    None
}

/// A worker whose log (one line per finished job) goes to `log`.
fn worker(url: &str, skew: Option<&str>, log: &Path) -> Child {
    let bin = support::PROMPTQ;
    let mut command = match skew {
        Some(offset) => {
            let mut c = Command::new("/usr/bin/faketime");
            c.arg("-f").arg(offset).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    command
        .arg("worker")
        .env("DATABASE_URL", url)
        .env("WORKER_CONCURRENCY", "3")
        // Rescue sweeps every second; each model call (2.5 s) outlives several of them and
        // its lease, so only heartbeats keep it.
        .env("JOB_LEASE_SECS", "2")
        .env("CRON_SCHEDULE", "off")
        .env("MAX_ATTEMPTS", "10")
        .env("RUST_LOG", "promptq=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("log file"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log file"))
        .spawn()
        .expect("start a worker")
}

/// faketime does not pass SIGTERM on, so the signal goes to the process it runs.
fn stop(mut child: Child, skewed: bool) {
    let pid = if skewed {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
            .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .map_or(child.id().to_string(), str::to_owned)
    } else {
        child.id().to_string()
    };
    let sent = Command::new("kill").arg(&pid).status().expect("run kill");
    assert!(sent.success(), "SIGTERM to worker {pid}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait for the worker") {
            assert!(status.success(), "worker {pid} exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "worker {pid} did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Jobs this worker finished, by its log.
fn succeeded_in(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default()
        + &std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    text.lines().filter(|l| l.contains("job succeeded")).count()
}

/// The normal worker starts first, the skewed one once jobs are running.
async fn start_both(db: &support::TestDb, offset: &str, logs: &Path) -> (Child, Child) {
    let normal = worker(&db.url, None, &logs.join("normal.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::summary(&db.store).await.processing == 0 {
        assert!(
            Instant::now() < deadline,
            "the normal worker claimed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let skewed = worker(&db.url, Some(offset), &logs.join("skewed.log"));
    (normal, skewed)
}

async fn seed(store: &Store) {
    let models: Vec<_> = (0..2)
        .map(|m| support::mock_model(format!("slow-{m}"), "mock", json!({"latencyMs": 2500})))
        .collect();
    support::seed(store, &models, JOBS as usize / 2, 1).await;
}

async fn two_workers_one_skewed(offset: &str) {
    let Some(_) = faketime() else { return };
    let Some(db) = support::postgres().await else {
        return;
    };
    let store = db.store.clone();
    seed(&store).await;
    let app = App::with_store(support::config(&db.url, &[]), store.clone()).unwrap();
    assert_eq!(
        app.trigger_cron(None).await.unwrap().jobs_created,
        JOBS as u64
    );

    let logs = tempfile::tempdir().unwrap();
    let (normal_log, skewed_log) = (
        logs.path().join("normal.log"),
        logs.path().join("skewed.log"),
    );
    // The skewed worker arrives while calls are in flight: the moment its rescue sweeps would
    // take them if it judged leases by its own clock.
    let (normal, skewed) = start_both(&db, offset, logs.path()).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = support::summary(&store).await;
        if s.succeeded + s.failed + s.skipped == JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish within 90 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(skewed, true);
    stop(normal, false);

    let s = support::summary(&store).await;
    assert_eq!(s.succeeded, JOBS, "every job succeeded: {s:?}");
    let jobs = support::all_jobs(&store).await;
    let mut abandoned = 0;
    for job in &jobs {
        let attempts = store.job_attempts(job.id).await.unwrap();
        abandoned += attempts.iter().filter(|a| a.outcome == "abandoned").count();
        assert_eq!(
            job.attempt_count, 1,
            "job {} was called {} times (attempts: {attempts:?})",
            job.id, job.attempt_count
        );
    }
    assert_eq!(abandoned, 0, "a live job was rescued");
    let (by_normal, by_skewed) = (succeeded_in(&normal_log), succeeded_in(&skewed_log));
    assert!(by_normal > 0, "the normal worker finished no job");
    assert!(by_skewed > 0, "the worker {offset} finished no job");
    assert_eq!(
        by_normal + by_skewed,
        JOBS as usize,
        "each job finished once"
    );
    // Rows are dated by the database: none of them carries the skewed clock.
    let Store::Postgres(pg) = &store else {
        unreachable!("a postgres test database")
    };
    let db_now: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    for job in &jobs {
        let finished = job.finished_at.expect("finished");
        assert!(
            (db_now - finished).num_seconds().abs() < 45,
            "job {} finished at {finished}, the database says {db_now}",
            job.id
        );
    }
}

/// Paced jobs: 240 calls a minute (one every 0.26 s with the margin), short calls.
const PACED_JOBS: i64 = 40;
/// Three times the ideal (about 10 s): a job put off by a minute cannot make it.
const PACED_DEADLINE: Duration = Duration::from_secs(35);

async fn rate_limit_shared_with_a_skewed_worker(offset: &str) {
    let Some(_) = faketime() else { return };
    let Some(db) = support::postgres().await else {
        return;
    };
    let store = db.store.clone();
    let model = support::mock_model("paced", "mock", json!({"latencyMs": 50, "rpm": 240}));
    support::seed(&store, &[model], PACED_JOBS as usize, 1).await;
    let app = App::with_store(support::config(&db.url, &[]), store.clone()).unwrap();
    assert_eq!(
        app.trigger_cron(None).await.unwrap().jobs_created,
        PACED_JOBS as u64
    );
    let started = Instant::now();
    let logs = tempfile::tempdir().unwrap();
    let (normal, skewed) = start_both(&db, offset, logs.path()).await;
    let finished = loop {
        let s = support::summary(&store).await;
        if s.succeeded + s.failed + s.skipped == PACED_JOBS {
            break started.elapsed();
        }
        if started.elapsed() > PACED_DEADLINE {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop(skewed, true);
    stop(normal, false);
    let s = support::summary(&store).await;
    assert_eq!(
        s.succeeded, PACED_JOBS,
        "every job succeeded within {PACED_DEADLINE:?} (took {finished:?}): {s:?}"
    );
    let (by_normal, by_skewed) = (
        succeeded_in(&logs.path().join("normal.log")),
        succeeded_in(&logs.path().join("skewed.log")),
    );
    assert_eq!(by_normal + by_skewed, PACED_JOBS as usize, "each job once");
    assert!(
        by_normal > 0 && by_skewed > 0,
        "both workers called the model: {by_normal} and {by_skewed} (the one {offset})"
    );
}

/// A `serve` whose clock runs 150 s ahead, with a schedule that fires every minute: its
/// start-up pass must fill the slot that has come by the database's clock, not the one its
/// own clock has reached (two minutes later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_ahead_fills_the_slot_of_the_database_clock() {
    let Some(_) = faketime() else { return };
    let Some(db) = support::postgres().await else {
        return;
    };
    let store = db.store.clone();
    let model = support::mock_model("m", "mock", json!({}));
    support::seed(&store, &[model], 2, 1).await;
    let minute = |at: chrono::DateTime<Utc>| at.format("%Y-%m-%dT%H:%M").to_string();
    let before = minute(store.clock_now().await.unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let logs = tempfile::tempdir().unwrap();
    let serve = Command::new("/usr/bin/faketime")
        .arg("-f")
        .arg("+150s")
        .arg(support::PROMPTQ)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("CRON_SECRET", support::server::SECRET)
        .env("CRON_SCHEDULE", "* * * * *")
        .env("TIMEZONE", "UTC")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.path().join("serve.err")).expect("log file"))
        .spawn()
        .expect("start promptq serve");
    support::wait_until("the start-up pass", Duration::from_secs(30), async || {
        !support::all_jobs(&store).await.is_empty()
    })
    .await;
    let after = minute(store.clock_now().await.unwrap());
    stop(serve, true);
    let keys: std::collections::BTreeSet<String> = support::all_jobs(&store)
        .await
        .into_iter()
        .map(|job| job.batch_key)
        .collect();
    assert_eq!(keys.len(), 1, "one batch: {keys:?}");
    let key = keys.first().expect("a batch key");
    assert!(
        before.as_str() <= key.as_str() && key.as_str() <= after.as_str(),
        "the batch {key} is not a slot of the database's clock ({before} to {after})"
    );
}
