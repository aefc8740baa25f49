//! The engine end to end: the worker pool in-process, and the real binary as processes that
//! are killed, restarted and run side by side, on SQLite and on PostgreSQL.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use promptq::app::App;
use promptq::domain::JobStatus;
use promptq::engine::worker::{PoolOptions, run_pool};
use promptq::store::{JobFilter, NewPrompt, Page, Store};
use tokio_util::sync::CancellationToken;

use crate::support::{self, on_both, summary, wait_until};

on_both!(
    pool_drains_a_batch_with_retries_and_one_response_per_job,
    shutdown_hands_every_held_job_back,
    killed_worker_loses_nothing_after_a_restart,
    three_workers_share_a_batch_and_a_killed_one_loses_nothing,
    the_cron_wakes_for_a_prompts_finer_schedule_of_its_own,
    status_tells_calls_in_flight_from_claimed_jobs_waiting_for_a_slot,
    an_idle_worker_wakes_when_another_process_enqueues,
    a_fleets_last_jobs_go_to_free_slots_not_to_a_claim_ahead,
);

/// `prompts` prompts on one mock model with these params, `runs` runs each.
async fn seed(store: &Store, params: serde_json::Value, prompts: usize, runs: i32) {
    support::seed(
        store,
        &[support::mock_model("mock", "mock-1", params)],
        prompts,
        runs,
    )
    .await;
}

/// Every succeeded job has exactly one response and every response a succeeded job.
async fn assert_one_response_per_succeeded_job(store: &Store) {
    let responses = support::all_responses(store).await;
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for r in &responses {
        *per_job.entry(r.job_id).or_default() += 1;
    }
    assert!(per_job.values().all(|&n| n == 1), "a job has two responses");
    let succeeded = store
        .jobs_list(
            &JobFilter {
                status: Some(JobStatus::Succeeded),
                ..JobFilter::default()
            },
            Page {
                limit: 100_000,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(succeeded.len(), responses.len());
    for job in succeeded {
        assert_eq!(
            per_job.get(&job.id),
            Some(&1),
            "job {} lacks its response",
            job.id
        );
    }
}

async fn pool_drains_a_batch_with_retries_and_one_response_per_job(db: &support::TestDb) {
    let store = db.store.clone();
    seed(
        &store,
        serde_json::json!({"latencyMs": 5, "failRate": 0.3}),
        20,
        3,
    )
    .await;
    let config = support::config(
        &db.url,
        &["--worker-concurrency", "8", "--max-attempts", "5"],
    );
    let app = App::with_store(config, store.clone()).unwrap();
    let report = app.trigger_cron(None).await.unwrap();
    assert_eq!(report.jobs_created, 60);
    let shutdown = CancellationToken::new();
    let mut options = PoolOptions::for_app(&app);
    // Retries come back within a few hundred milliseconds.
    options.poll_interval = Duration::from_millis(50);
    let pool = tokio::spawn(run_pool(app.clone(), options, shutdown.clone()));
    wait_until("the batch to finish", Duration::from_secs(60), async || {
        let s = summary(&store).await;
        s.queued + s.processing == 0
    })
    .await;
    shutdown.cancel();
    pool.await.unwrap().unwrap();
    let s = summary(&store).await;
    assert_eq!(s.total, 60);
    assert_eq!(s.succeeded + s.failed, 60);
    assert!(
        s.succeeded >= 50,
        "with 5 attempts at 30% failure almost all succeed: {s:?}"
    );
    assert_one_response_per_succeeded_job(&store).await;
    // The failures showed as retries, each recorded as an attempt.
    let retried = app
        .metrics()
        .retried
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(retried > 0, "a 30% failure rate produced no retry");
    let mut attempts = 0;
    for job in store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 100,
                offset: 0,
            },
        )
        .await
        .unwrap()
    {
        let recorded = store.job_attempts(job.id).await.unwrap();
        assert_eq!(recorded.len() as i32, job.attempt_count);
        attempts += recorded.len();
    }
    assert_eq!(attempts as u64, 60 + retried);
}

async fn shutdown_hands_every_held_job_back(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 5000}), 10, 2).await;
    let config = support::config(
        &db.url,
        &["--worker-concurrency", "4", "--shutdown-grace-secs", "0"],
    );
    let app = App::with_store(config, store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(run_pool(
        app.clone(),
        PoolOptions::for_app(&app),
        shutdown.clone(),
    ));
    wait_until("calls to start", Duration::from_secs(10), async || {
        summary(&store).await.processing >= 4
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), pool)
        .await
        .expect("the pool stops within its grace period")
        .unwrap()
        .unwrap();
    let s = summary(&store).await;
    assert_eq!(s.processing, 0, "shutdown left jobs processing: {s:?}");
    assert_eq!(s.queued, 20);
    for job in store
        .jobs_list(&JobFilter::default(), Page::default())
        .await
        .unwrap()
    {
        assert_eq!(job.attempt_count, 0, "a released job spent an attempt");
    }
}

/// A pool claims ahead of its free slots: of its `processing` jobs, the status says how many
/// are calling their model and how many wait for a slot (what the workers report), and a
/// stopped pool is no longer counted.
async fn status_tells_calls_in_flight_from_claimed_jobs_waiting_for_a_slot(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 5000}), 10, 2).await;
    let config = support::config(
        &db.url,
        &["--worker-concurrency", "3", "--shutdown-grace-secs", "0"],
    );
    let app = App::with_store(config, store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(run_pool(
        app.clone(),
        PoolOptions::for_app(&app),
        shutdown.clone(),
    ));
    let everything = promptq::app::StatusQuery::default();
    wait_until(
        "the worker to report",
        Duration::from_secs(15),
        async || {
            let report = app.status(&everything).await.unwrap();
            let w = report.workers;
            w.live == 1 && w.running == 3 && w.waiting_for_slot > 0
        },
    )
    .await;
    let report = app.status(&everything).await.unwrap();
    assert_eq!(report.workers.slots, 3);
    assert!(
        report.summary.processing > 3,
        "claimed ahead of the slots: {:?}",
        report.summary
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), pool)
        .await
        .expect("the pool stops")
        .unwrap()
        .unwrap();
    assert_eq!(app.status(&everything).await.unwrap().workers.live, 0);
}

// ---------------------------------------------------------------- processes

fn worker(url: &str, concurrency: usize) -> Child {
    let concurrency = concurrency.to_string();
    support::spawn_worker(
        url,
        &[
            ("WORKER_CONCURRENCY", concurrency.as_str()),
            ("JOB_LEASE_SECS", "2"),
        ],
    )
}

fn cron(url: &str) {
    let status = Command::new(support::PROMPTQ)
        .arg("cron")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("CRON_SCHEDULE", "off")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn kill_9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn stop(child: &mut Child) {
    // SIGTERM: the orderly shutdown, which must end the process cleanly and soon.
    support::terminate(child, Duration::from_secs(20));
}

async fn killed_worker_loses_nothing_after_a_restart(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 300}), 20, 2).await;
    cron(&db.url);
    let mut first = worker(&db.url, 8);
    wait_until("some progress", Duration::from_secs(30), async || {
        summary(&store).await.succeeded >= 8
    })
    .await;
    kill_9(&mut first);
    let mid = summary(&store).await;
    assert!(
        mid.processing > 0 || mid.queued > 0,
        "killed too late to matter: {mid:?}"
    );
    let mut second = worker(&db.url, 8);
    wait_until(
        "the batch to finish after the restart",
        Duration::from_secs(60),
        async || {
            let s = summary(&store).await;
            s.succeeded == 40
        },
    )
    .await;
    stop(&mut second);
    let s = summary(&store).await;
    assert_eq!(
        (s.succeeded, s.processing, s.queued, s.failed),
        (40, 0, 0, 0)
    );
    assert_one_response_per_succeeded_job(&store).await;
}

async fn three_workers_share_a_batch_and_a_killed_one_loses_nothing(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 100}), 30, 2).await;
    cron(&db.url);
    let mut workers: Vec<Child> = (0..3).map(|_| worker(&db.url, 4)).collect();
    wait_until("half the batch", Duration::from_secs(30), async || {
        summary(&store).await.succeeded >= 20
    })
    .await;
    kill_9(&mut workers[0]);
    wait_until("the batch to finish", Duration::from_secs(60), async || {
        summary(&store).await.succeeded == 60
    })
    .await;
    for w in workers.iter_mut().skip(1) {
        stop(w);
    }
    let s = summary(&store).await;
    assert_eq!((s.succeeded, s.processing, s.queued), (60, 0, 0));
    assert_one_response_per_succeeded_job(&store).await;
    // No job ran twice except those the killed worker held when it died.
    let mut run_twice = 0;
    for job in store
        .jobs_list(&JobFilter::default(), Page::default())
        .await
        .unwrap()
    {
        let attempts = store.job_attempts(job.id).await.unwrap();
        let succeeded = attempts.iter().filter(|a| a.outcome == "succeeded").count();
        assert_eq!(succeeded, 1, "job {} succeeded {succeeded} times", job.id);
        if attempts.len() > 1 {
            assert!(attempts.iter().any(|a| a.outcome == "abandoned"));
            run_twice += 1;
        }
    }
    // The killed worker held at most its 4 slots and its claim-ahead.
    let most_held = 4 + promptq::engine::worker::most_ahead(4, 200);
    assert!(
        run_twice <= most_held,
        "{run_twice} jobs re-ran: more than the killed worker could hold ({most_held})"
    );
}

async fn the_cron_wakes_for_a_prompts_finer_schedule_of_its_own(db: &support::TestDb) {
    use chrono::TimeZone;
    use promptq::schedule::Trigger;
    let store = db.store.clone();
    seed(&store, serde_json::json!({}), 1, 1).await;
    store
        .prompt_insert(
            &NewPrompt {
                text: "every six hours".into(),
                model_ids: None,
                runs: 1,
                active: true,
                schedule: Some("0 */6 * * *".into()),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let config = support::config(&db.url, &["--cron-schedule", "0 0 * * *"]);
    let app = App::with_store(config, store.clone()).unwrap();
    let at = |h: u32| chrono::Utc.with_ymd_and_hms(2025, 10, 14, h, 0, 0).unwrap();
    // The daily global cron would sleep until tomorrow; the prompt's own schedule wakes it at 06:00.
    assert_eq!(app.next_scheduled_slot(at(1)).await.unwrap(), Some(at(6)));
    let midnight = app.run_cron(Trigger::Tick { slot: at(0) }).await.unwrap();
    assert_eq!(
        (midnight.jobs_created, midnight.batch_key.as_str()),
        (2, "2025-10-14")
    );
    let six = app.run_cron(Trigger::Tick { slot: at(6) }).await.unwrap();
    assert_eq!(
        six.jobs_created, 1,
        "only the six-hourly prompt is due at 06:00"
    );
    let keys: std::collections::BTreeSet<String> = store
        .jobs_list(&JobFilter::default(), Page::default())
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.batch_key)
        .collect();
    assert!(keys.contains("2025-10-14T06:00"), "{keys:?}");
}

/// A worker that found nothing to do sleeps until told of work: another process's enqueue
/// (its own connections, as a `promptq cron` beside a `promptq worker`) wakes it, on
/// PostgreSQL by NOTIFY, on SQLite by the file's version. Its own poll is an hour away.
async fn an_idle_worker_wakes_when_another_process_enqueues(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 0}), 3, 2).await;
    let config = support::config(&db.url, &["--worker-concurrency", "4"]);
    let app = App::with_store(config, store.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let mut options = PoolOptions::for_app(&app);
    options.poll_interval = Duration::from_secs(3600);
    let pool = tokio::spawn(run_pool(app.clone(), options, shutdown.clone()));
    wait_until(
        "the worker to register",
        Duration::from_secs(30),
        async || app.workers().await.unwrap().live >= 1,
    )
    .await;
    // Its first claim (of nothing) is long done: it is asleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(summary(&store).await.total, 0);

    let other = Store::connect(&db.url).await.unwrap();
    let cron = App::with_store(support::config(&db.url, &[]), other).unwrap();
    assert_eq!(cron.trigger_cron(None).await.unwrap().jobs_created, 6);
    wait_until(
        "the sleeping worker to run the other process's batch",
        Duration::from_secs(60),
        async || summary(&store).await.succeeded == 6,
    )
    .await;
    shutdown.cancel();
    pool.await.unwrap().unwrap();
}

/// Two workers of four slots each, both idle, and a batch of eight jobs: either worker alone
/// would claim all eight (four for its slots, four ahead of them) and leave the other idle
/// while half the batch waits a whole call for a slot. Knowing the other's four slots, each
/// claims only for its own free slots: every job runs on its own slot at once.
async fn a_fleets_last_jobs_go_to_free_slots_not_to_a_claim_ahead(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 300}), 8, 1).await;
    let shutdown = CancellationToken::new();
    let mut pools = Vec::new();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let own = Store::connect(&db.url).await.unwrap();
        let config = support::config(&db.url, &["--worker-concurrency", "4"]);
        let app = App::with_store(config, own).unwrap();
        let options = PoolOptions::for_app(&app);
        assert_eq!(options.prefetch, 4, "each would claim four ahead");
        pools.push(tokio::spawn(run_pool(
            app.clone(),
            options,
            shutdown.clone(),
        )));
        apps.push(app);
    }
    // Each has reported after both registered, and so has counted the other's slots.
    wait_until(
        "both workers to hear of each other",
        Duration::from_secs(30),
        async || {
            let live = store
                .workers_live(promptq::store::Clock::Database, Duration::from_secs(30))
                .await
                .unwrap();
            let last_start = live.iter().map(|w| w.started_at).max();
            live.len() == 2 && live.iter().all(|w| Some(w.seen_at) > last_start)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(apps[0].trigger_cron(None).await.unwrap().jobs_created, 8);
    // PostgreSQL records a job's worker in its list of running jobs only: read while all
    // eight run (each call lasts 300 ms).
    let running = match &db.store {
        Store::Postgres(pg) => {
            let listed = "SELECT count(*) FROM job_claims GROUP BY worker_id ORDER BY 1";
            let mut counts = Vec::new();
            wait_until(
                "all eight jobs claimed",
                Duration::from_secs(30),
                async || {
                    counts = sqlx::query_scalar(listed)
                        .fetch_all(pg.pool())
                        .await
                        .unwrap();
                    counts.iter().sum::<i64>() == 8
                },
            )
            .await;
            Some(counts)
        }
        Store::Sqlite(_) => None,
    };
    wait_until("the batch to finish", Duration::from_secs(60), async || {
        summary(&store).await.succeeded == 8
    })
    .await;
    let per_worker = match running {
        Some(counts) => counts,
        None => jobs_per_worker(db).await,
    };
    assert_eq!(per_worker, vec![4, 4]);
    shutdown.cancel();
    for pool in pools {
        pool.await.unwrap().unwrap();
    }
}

/// How many jobs each worker ran, fewest first.
/// How many jobs each worker ran, on SQLite (which records it in the job's row).
async fn jobs_per_worker(db: &support::TestDb) -> Vec<i64> {
    let sql = "SELECT count(*) FROM prompt_jobs GROUP BY worker_id ORDER BY 1";
    match &db.store {
        Store::Postgres(_) => unreachable!("PostgreSQL lists running jobs apart"),
        Store::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let counts = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            counts
        }
    }
}
