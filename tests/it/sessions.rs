//! Workers across a PostgreSQL restart. A restart ends every session at once and so frees
//! every worker's lock: that must not be taken for the death of every worker. An outage longer
//! than a lease leaves every running job's lease expired: that must not be taken for hung
//! workers either. Two worker pools (each with its own store, as two processes would be) run
//! slow calls across a stop of their server; none of their jobs may be handed back, and each
//! is called once.

use std::time::{Duration, Instant};

use chrono::Utc;
use promptq::app::App;
use promptq::domain::JobStatus;
use promptq::engine::worker::{PoolOptions, run_pool};
use promptq::store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support;

/// 2 models × 8 prompts, one run each, on two pools of 4 slots.
const JOBS: i64 = 16;
/// The first key of the workers' advisory locks (`pg_advisory_lock(int, int)`).
const WORKER_LOCK_CLASS: i64 = 0x7071_776b;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_is_not_the_death_of_every_worker() {
    // Calls of 3 s, leases of 30 s, the server down for 1.5 s.
    across_a_stop("sessions", 3000, "30", Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_longer_than_a_lease_hands_no_live_job_back() {
    // Calls of 8 s, leases of 3 s (renewed every second), the server down for 5 s.
    across_a_stop("outage", 8000, "3", Duration::from_secs(5)).await;
}

async fn across_a_stop(name: &str, latency_ms: u64, lease_secs: &str, down_for: Duration) {
    let Some(server) = support::dedicated_postgres(name) else {
        return;
    };
    let url = server.database(name).await;
    let store = Store::open(&url).await.unwrap();
    let models: Vec<_> = (0..2)
        .map(|m| {
            support::mock_model(
                format!("slow-{m}"),
                "mock",
                json!({"latencyMs": latency_ms}),
            )
        })
        .collect();
    support::seed(&store, &models, JOBS as usize / 2, 1).await;
    let config = support::config(
        &url,
        &["--worker-concurrency", "4", "--job-lease-secs", lease_secs],
    );
    let app = App::with_store(config.clone(), store.clone()).unwrap();
    assert_eq!(
        app.trigger_cron(None).await.unwrap().jobs_created,
        JOBS as u64
    );

    let shutdown = CancellationToken::new();
    let mut pools = Vec::new();
    for _ in 0..2 {
        let own = Store::open(&url).await.unwrap();
        let app = App::with_store(config.clone(), own).unwrap();
        pools.push(tokio::spawn(run_pool(
            app.clone(),
            PoolOptions::for_app(&app),
            shutdown.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::summary(&store).await.processing < 8 {
        assert!(
            Instant::now() < deadline,
            "the pools did not fill their slots"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Calls are under way when every session ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    tokio::time::sleep(down_for).await;
    server.start();
    let restarted = Utc::now();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = store.jobs_summary(&Default::default()).await
            && s.succeeded + s.failed + s.skipped == JOBS
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both workers hold their locks again (a beat that came while the server was down, and
    // failed to take the lock back, must not leave a worker without one for good).
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL test database")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND classid::bigint = $1 AND objsubid = 2 AND granted",
        )
        .bind(WORKER_LOCK_CLASS)
        .fetch_one(pg.pool())
        .await
        .unwrap();
        if held == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} of the 2 workers hold their lock again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    for pool in pools {
        pool.await.unwrap().unwrap();
    }

    let jobs = support::all_jobs(&store).await;
    assert!(
        jobs.iter()
            .any(|j| j.finished_at.is_some_and(|at| at > restarted)),
        "no job finished after the restart: the restart hit no call"
    );
    for job in &jobs {
        let attempts = store.job_attempts(job.id).await.unwrap();
        assert!(
            attempts.iter().all(|a| a.outcome != "abandoned"),
            "job {} was handed back from a live worker: {attempts:?}",
            job.id
        );
        assert_eq!(
            (job.attempt_count, job.status),
            (1, JobStatus::Succeeded),
            "job {} ({attempts:?})",
            job.id
        );
    }
}
