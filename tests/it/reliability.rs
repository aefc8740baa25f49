//! Reliability under faults, bounded in time: workers killed at random points, PostgreSQL
//! restarted mid-batch, ten schedulers ticking together, and random request bodies.
//!
//! Each fault test also proves that its fault hit work in flight (a kill lands only after the
//! worker claimed jobs, and abandoned attempts are on record; the server stops while jobs are
//! pending and jobs finish after it is back), so none can pass without exercising its case.

use std::collections::HashMap;
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use promptq::app::App;
use promptq::engine::worker::{PoolOptions, run_pool};
use promptq::schedule::Trigger;
use promptq::store::{JobFilter, Page, Store};
use rand::RngExt;
use tokio_util::sync::CancellationToken;

use crate::support::{self, fake, on_both};

on_both!(
    a_429s_retry_after_is_the_recorded_wait_before_the_next_attempt,
    workers_killed_at_random_points_lose_nothing,
    ten_schedulers_ticking_together_neither_duplicate_nor_miss,
    a_killed_workers_jobs_come_back_long_before_their_lease,
);

/// `models` mock models with `params`, and `prompts` prompts of `runs` runs on each.
async fn seed(store: &Store, params: serde_json::Value, models: usize, prompts: usize, runs: i32) {
    let models: Vec<_> = (0..models)
        .map(|m| support::mock_model(format!("mock-{m}"), "mock", params.clone()))
        .collect();
    support::seed(store, &models, prompts, runs).await;
}

async fn assert_each_succeeded_job_has_one_response(store: &Store, expected: i64) {
    let s = support::summary(store).await;
    assert_eq!(
        (s.succeeded, s.processing, s.queued, s.failed),
        (expected, 0, 0, 0)
    );
    let responses = support::all_responses(store).await;
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for r in responses {
        *per_job.entry(r.job_id).or_default() += 1;
    }
    assert_eq!(per_job.len() as i64, expected, "a job lost its response");
    assert!(per_job.values().all(|&n| n == 1), "a job has two responses");
}

/// Attempts spent by every job so far: it grows exactly when a worker claims.
async fn attempts_spent(store: &Store) -> i64 {
    let stats = store.jobs_stats(&JobFilter::default()).await.unwrap();
    stats.per_model.iter().map(|m| m.attempts).sum()
}

/// Attempt records of every job whose outcome was `abandoned` (rescued from a dead worker).
async fn abandoned_attempts(store: &Store) -> usize {
    let jobs = support::all_jobs(store).await;
    let mut abandoned = 0;
    for job in jobs {
        let attempts = store.job_attempts(job.id).await.unwrap();
        abandoned += attempts.iter().filter(|a| a.outcome == "abandoned").count();
    }
    abandoned
}

fn worker(url: &str) -> Child {
    support::spawn_worker(
        url,
        &[
            ("WORKER_CONCURRENCY", "6"),
            ("JOB_LEASE_SECS", "2"),
            ("MAX_ATTEMPTS", "20"),
        ],
    )
}

async fn workers_killed_at_random_points_lose_nothing(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 300}), 2, 15, 2).await;
    let config = support::config(&db.url, &[]);
    let app = App::with_store(config, store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let mut rng = rand::rng();
    // Four workers die by SIGKILL at random moments after their first claim: mid-call,
    // mid-finish, mid-claim of the next jobs. None is killed before it took work.
    let kills = 4;
    for kill in 0..kills {
        let before = attempts_spent(&store).await;
        let mut child = worker(&db.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = support::summary(&store).await;
            if s.processing > 0 && attempts_spent(&store).await > before {
                break;
            }
            assert!(
                s.succeeded < 60,
                "kill {kill}: the batch was done before the kill"
            );
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the worker claimed nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut last = worker(&db.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::summary(&store).await.succeeded < 60 {
        assert!(
            Instant::now() < deadline,
            "the batch did not finish after the kills"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::terminate(&mut last, Duration::from_secs(20));
    assert_each_succeeded_job_has_one_response(&store, 60).await;
    let abandoned = abandoned_attempts(&store).await;
    eprintln!("{abandoned} attempts abandoned by {kills} killed workers");
    assert!(
        abandoned >= kills,
        "{abandoned} attempts abandoned by {kills} kills: a kill interrupted nothing"
    );
}

/// A 429 with `Retry-After: 7` is honoured: checked on the times the store recorded (the
/// attempt's finish and the job's `next_attempt_at`, and claims at chosen instants), not on
/// the wall clock, so a slow machine changes nothing.
async fn a_429s_retry_after_is_the_recorded_wait_before_the_next_attempt(db: &support::TestDb) {
    let provider = fake::Fake::start().await;
    provider.reply(
        fake::Reply::json(429, serde_json::json!({"error": {"message": "slow down"}}))
            .header("retry-after", "7"),
    );
    let store = db.store.clone();
    let model = support::openai_model(
        "limited",
        "fake-1",
        &provider.base_url(),
        serde_json::json!({}),
    );
    support::seed(&store, &[model], 1, 1).await;
    let app = App::with_store(support::config(&db.url, &[]), store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let job = store
        .jobs_list(&JobFilter::default(), Page::default())
        .await
        .unwrap()[0]
        .clone();

    let report = app.process_job(job.id).await.unwrap();
    assert_eq!(
        report.status,
        promptq::domain::JobStatus::Queued,
        "{report:?}"
    );
    let attempts = store.job_attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].http_status),
        ("retry", Some(429))
    );
    let finished = attempts[0].finished_at;
    let due = store
        .job_get(job.id)
        .await
        .unwrap()
        .unwrap()
        .next_attempt_at;
    let wait = (due - finished).to_std().expect("due after the attempt");
    // What the provider asked for, plus at most 10 % of spread so retries do not bunch.
    assert!(
        wait >= Duration::from_secs(7) && wait <= Duration::from_millis(7_700),
        "due {wait:?} after the 429 that asked for 7 s"
    );
    let lease = std::time::Duration::from_secs(30);
    let early = finished + chrono::Duration::seconds(6);
    assert!(
        store.jobs_claim(10, early, lease).await.unwrap().is_empty(),
        "claimed before its Retry-After"
    );
    let claimed = store.jobs_claim(10, due, lease).await.unwrap();
    assert_eq!(claimed.len(), 1, "due at its recorded time");
    assert_eq!(claimed[0].attempt, 2);
}

async fn ten_schedulers_ticking_together_neither_duplicate_nor_miss(db: &support::TestDb) {
    seed(&db.store, serde_json::json!({}), 2, 5, 2).await;
    // Ten independent processes' views of the database, each with its own connections.
    let mut apps = Vec::new();
    for _ in 0..10 {
        let store = Store::connect(&db.url).await.unwrap();
        let config = support::config(&db.url, &["--cron-schedule", "*/15 * * * *"]);
        apps.push(App::with_store(config, store).unwrap());
    }
    let first = Utc.with_ymd_and_hms(2025, 10, 14, 0, 0, 0).unwrap();
    let ticks = 12;
    for tick in 0..ticks {
        let slot = first + chrono::Duration::minutes(15 * tick);
        let mut passes = Vec::new();
        for app in &apps {
            let app = app.clone();
            passes.push(tokio::spawn(async move {
                app.run_cron(Trigger::Tick { slot }).await.unwrap()
            }));
        }
        let mut created = 0;
        for pass in passes {
            created += pass.await.unwrap().jobs_created;
        }
        assert_eq!(
            created, 20,
            "tick {tick}: {created} jobs for 5 prompts × 2 models × 2 runs"
        );
    }
    let jobs = support::all_jobs(&db.store).await;
    assert_eq!(jobs.len() as i64, 20 * ticks);
    let mut per_batch: HashMap<String, usize> = HashMap::new();
    for job in &jobs {
        *per_batch.entry(job.batch_key.clone()).or_default() += 1;
    }
    assert_eq!(per_batch.len() as i64, ticks, "a tick's batch is missing");
    assert!(per_batch.values().all(|&n| n == 20));
    assert!(per_batch.contains_key("2025-10-14T02:45"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_batch_the_pool_recovers_and_finishes() {
    let Some(server) = support::dedicated_postgres("restart") else {
        return;
    };
    let url = server.database("restart").await;
    let store = Store::open(&url).await.unwrap();
    // 40 jobs of 200 ms on 4 slots: about 2 s of work, so the stop lands mid-batch.
    seed(&store, serde_json::json!({"latencyMs": 200}), 2, 20, 1).await;
    let config = support::config(
        &url,
        &["--worker-concurrency", "4", "--job-lease-secs", "5"],
    );
    let app = App::with_store(config, store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(run_pool(
        app.clone(),
        PoolOptions::for_app(&app),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::summary(&store).await.succeeded < 4 {
        assert!(Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_stop = support::summary(&store).await;
    server.stop();
    assert!(
        before_stop.queued + before_stop.processing > 0,
        "the batch was done before the server stopped: {before_stop:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start();
    let restarted = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Reads fail while the connections are re-made; the pool must get there by itself.
        if let Ok(s) = store.jobs_summary(&JobFilter::default()).await
            && s.succeeded == 40
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs = store
        .jobs_list(&JobFilter::default(), Page::default())
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.finished_at.is_some_and(|at| at > restarted)),
        "no job finished after the restart"
    );
    shutdown.cancel();
    pool.await.unwrap().unwrap();
    assert_each_succeeded_job_has_one_response(&store, 40).await;
}

// ---------------------------------------------------------------- request parsing

mod request_parsing {
    use proptest::prelude::*;

    use crate::support;

    const ROUTES: [(&str, &str); 7] = [
        ("POST", "/api/jobs/process"),
        ("POST", "/api/prompts"),
        ("POST", "/api/models"),
        ("POST", "/api/jobs/retry"),
        ("POST", "/api/jobs/cancel"),
        ("POST", "/api/cron"),
        ("PATCH", "/api/prompts/1"),
    ];

    /// JSON-ish values: nested objects with the API's own field names, wrong types, nulls.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[a-z0-9 <>'\"-]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("jobId".to_owned()),
                        Just("text".to_owned()),
                        Just("modelIds".to_owned()),
                        Just("runs".to_owned()),
                        Just("batchKey".to_owned()),
                        Just("status".to_owned()),
                        Just("name".to_owned()),
                        Just("provider".to_owned()),
                        Just("model".to_owned()),
                        Just("params".to_owned()),
                        Just("schedule".to_owned()),
                        "[a-zA-Z]{1,8}",
                    ],
                    inner,
                    0..5,
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
            "\\{[\"a-zA-Z:0-9,\\[\\] ]{0,40}".prop_map(String::into_bytes),
        ]
    }

    #[test]
    fn random_bodies_never_get_a_server_error() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (db, base) = runtime.block_on(async {
            let db = support::sqlite().await;
            let config = support::config(&db.url, &["--cron-secret", "s3cret"]);
            let app = promptq::app::App::with_store(config, db.store.clone()).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, promptq::http::router(app)).await });
            (db, base)
        });
        let client = reqwest::Client::new();
        proptest!(ProptestConfig::with_cases(150), |(route in 0..ROUTES.len(), payload in body(), json_type in any::<bool>())| {
            let (method, path) = ROUTES[route];
            let status = runtime.block_on(async {
                let mut request = client
                    .request(method.parse().unwrap(), format!("{base}{path}"))
                    .header("Authorization", "Bearer s3cret")
                    .body(payload.clone());
                if json_type {
                    request = request.header("Content-Type", "application/json");
                }
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap();
                assert!(!text.contains("s3cret"), "the secret leaked: {text}");
                status
            });
            prop_assert!(status < 500, "{method} {path} {:?} → {status}", String::from_utf8_lossy(&payload));
        });
        drop(db);
    }
}

/// A worker killed with SIGKILL mid-call gives its jobs back long before their lease (ten
/// minutes here): on PostgreSQL once the server released its lock, on SQLite once it has been
/// silent for a few beats and its process is gone; another worker finishes them, each with
/// one answer.
async fn a_killed_workers_jobs_come_back_long_before_their_lease(db: &support::TestDb) {
    let store = db.store.clone();
    seed(&store, serde_json::json!({"latencyMs": 2000}), 1, 10, 2).await;
    let config = support::config(&db.url, &[]);
    let app = App::with_store(config, store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let env = [("WORKER_CONCURRENCY", "8"), ("JOB_LEASE_SECS", "600")];
    let mut doomed = support::spawn_worker(&db.url, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::summary(&store).await.processing == 0 {
        assert!(Instant::now() < deadline, "the worker claimed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Mid-call: its calls take 2 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let killed_at = Instant::now();
    let held = support::summary(&store).await.processing;
    assert!(held > 0, "the kill interrupted nothing");

    let mut survivor = support::spawn_worker(&db.url, &env);
    let mut back_after = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while support::summary(&store).await.succeeded < 20 {
        if back_after.is_none() && abandoned_attempts(&store).await > 0 {
            back_after = Some(killed_at.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "the dead worker's jobs did not come back before their lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::terminate(&mut survivor, Duration::from_secs(20));
    eprintln!("{held} jobs of the killed worker came back after {back_after:?}");
    assert_each_succeeded_job_has_one_response(&store, 20).await;
    let jobs = support::all_jobs(&store).await;
    let mut orphaned = 0;
    for job in jobs {
        let attempts = store.job_attempts(job.id).await.unwrap();
        orphaned += attempts
            .iter()
            .filter(|a| {
                a.outcome == "abandoned"
                    && a.error_message
                        .as_deref()
                        .is_some_and(|m| m.contains("process died"))
            })
            .count();
    }
    assert_eq!(
        orphaned as i64, held,
        "each held job came back once, as orphaned"
    );
}
