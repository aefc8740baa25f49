//! Batch-mode models (`params.batch: true`) through a local server speaking OpenAI's Batch API:
//! a batch of several hundred jobs cut into several files, with line errors (permanent, and
//! retryable ones that succeed in a later submission) and one batch that expires with partial
//! output; `kill -9` of a real `promptq worker` at each step (after the upload, after the
//! submission, while reading results), after which another process finishes everything with
//! no duplicate submission and no lost job; and the refusal of `batch` where the provider has
//! no Batch API. Every scenario runs on SQLite and on PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use promptq::app::App;
use promptq::domain::JobStatus;
use serde_json::json;

use crate::support::batch_api::{BatchApi, Counts, Step};
use crate::support::{
    TestDb, all_jobs, all_responses, on_both, openai_model, seed_model, seed_prompts, spawn_worker,
    summary, wait_until, wait_until_done,
};

/// Settings that make a batch's life short: small files, quick polls, short step holds.
const FAST: [&str; 8] = [
    "--batch-max-requests",
    "100",
    "--batch-poll-secs",
    "0.05",
    "--batch-step-secs",
    "2",
    "--max-attempts",
    "3",
];

/// The same settings for a `promptq worker` process.
const FAST_ENV: [(&str, &str); 5] = [
    ("BATCH_MAX_REQUESTS", "100"),
    ("BATCH_POLL_SECS", "0.05"),
    ("BATCH_STEP_SECS", "2"),
    ("MAX_ATTEMPTS", "3"),
    ("WORKER_CONCURRENCY", "4"),
];

/// A batch-mode model on `api`, `prompts` prompts of `runs` runs on it, enqueued.
async fn seed_batch(db: &TestDb, api: &BatchApi, prompts: usize, runs: i32) -> App {
    let model = openai_model(
        "batched",
        "gpt-4o-mini",
        &api.base_url(),
        json!({"batch": true}),
    );
    let model = seed_model(&db.store, &model).await;
    seed_prompts(&db.store, prompts, runs, Some(&[model.id])).await;
    let app =
        App::with_store(crate::support::config(&db.url, &FAST), db.store.clone()).expect("an app");
    app.trigger_cron(None).await.expect("enqueue the batch");
    app
}

/// Waits until every provider batch is closed (a batch closes just after its last answer is
/// stored, so "no job left" comes a moment before it).
async fn wait_until_batches_close(db: &TestDb) {
    wait_until(
        "the provider batches to close",
        Duration::from_secs(30),
        async || {
            let batches = db.store.provider_batches_recent(100).await.unwrap();
            batches.iter().all(|b| b.state.is_closed())
        },
    )
    .await;
}

/// Every job ended, each succeeded one with exactly one answer (its own prompt's), each
/// failed one with none.
async fn assert_each_job_answered_once(db: &TestDb) -> BTreeMap<&'static str, i64> {
    let jobs = all_jobs(&db.store).await;
    let responses = all_responses(&db.store).await;
    let mut by_job = HashSet::new();
    for response in &responses {
        assert!(
            by_job.insert(response.job_id),
            "job {} answered twice",
            response.job_id
        );
        assert_eq!(
            response.text,
            format!(
                "answer to {}",
                response.prompt_text.as_deref().unwrap_or_default()
            )
        );
        assert_eq!(
            response.served_model.as_deref(),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(response.total_tokens, Some(14));
        assert!(
            response
                .provider_request_id
                .as_deref()
                .is_some_and(|id| id.starts_with("req_"))
        );
    }
    let mut counts = BTreeMap::new();
    for job in &jobs {
        match job.status {
            JobStatus::Succeeded => {
                assert!(by_job.contains(&job.id), "job {} has no answer", job.id)
            }
            JobStatus::Failed => assert!(
                !by_job.contains(&job.id),
                "failed job {} has an answer",
                job.id
            ),
            other => panic!("job {} ended {other}", job.id),
        }
        *counts.entry(job.status.as_str()).or_insert(0) += 1;
    }
    counts
}

/// 360 jobs, 100 requests or 12 kB a file (about 80 lines): five files at least; prompts "question 7…" fail for good (400),
/// "question 5…" fail once (500) and succeed in a later batch, and the first batch expires half
/// done, its other half going into later batches.
async fn several_hundred_jobs_round_trip(db: &TestDb) {
    let api = BatchApi::start().await;
    api.fail_lines("question 7", 400);
    api.fail_once("question 5");
    api.expire_next(1);
    let app = seed_batch(db, &api, 120, 3).await;
    let settings = [&FAST[..], &["--batch-max-bytes", "12000"]].concat();
    let pool = crate::support::RunningPool::start(&db.store, &db.url, &settings).await;
    wait_until_done(&db.store, Duration::from_secs(90)).await;
    wait_until_batches_close(db).await;
    pool.stop().await;
    drop(app);

    // question 7 and 70..=79: 11 prompts of 3 runs.
    let counts = assert_each_job_answered_once(db).await;
    assert_eq!(counts.get("failed"), Some(&33), "{counts:?}");
    assert_eq!(counts.get("succeeded"), Some(&(360 - 33)), "{counts:?}");
    let server = api.counts();
    assert!(server.creates >= 6, "{server:?}");
    assert!(server.largest_upload <= 12_000, "{server:?}");
    assert!(server.largest_upload > 6_000, "{server:?}");
    assert_eq!(server.uploads, server.creates, "{server:?}");
    let statuses = api.statuses();
    assert_eq!(
        statuses.iter().filter(|s| *s == "expired").count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| s == "completed" || s == "expired"),
        "{statuses:?}"
    );
    // No job was answered twice by the provider, and every line the server received was a
    // first run, a retry of a 500, or a line the expired batch never ran.
    let answered = api.answered();
    let jobs: HashSet<&str> = answered
        .iter()
        .map(|id| id.rsplit_once('-').unwrap().0)
        .collect();
    assert_eq!(jobs.len(), answered.len(), "a job was answered twice");
    assert_eq!(answered.len(), 360 - 33);
    // Failed jobs say why, as a direct call's would.
    let failed = all_jobs(&db.store).await;
    let failed = failed
        .iter()
        .find(|j| j.status == JobStatus::Failed)
        .expect("a failed job");
    let message = failed.error_message.as_deref().unwrap_or_default();
    assert!(
        message.contains("400") && message.contains("scripted failure"),
        "{message}"
    );
    // Every provider batch is closed.
    let batches = db
        .store
        .provider_batches_recent(100)
        .await
        .expect("batches");
    assert!(batches.iter().all(|b| b.state.is_closed()), "{batches:?}");
    assert!(
        batches
            .iter()
            .any(|b| b.error.as_deref().is_some_and(|e| e.contains("expired")))
    );
}

/// Batch mode turned off while a batch is at the provider: the batch is still carried on and
/// its jobs answered from it (none is called directly: the server has no chat endpoint).
async fn a_batch_outlives_its_model_leaving_batch_mode(db: &TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    seed_batch(db, &api, 4, 1).await;
    let pool = crate::support::RunningPool::start(&db.store, &db.url, &FAST).await;
    wait_until(
        "a batch at the provider",
        Duration::from_secs(30),
        async || api.statuses() == ["in_progress"],
    )
    .await;
    let model = all_jobs(&db.store).await[0].model_id;
    let direct = promptq::store::ModelPatch {
        params: Some(json!({"baseUrl": api.base_url(), "batch": false})),
        ..Default::default()
    };
    db.store
        .model_update(model, &direct, chrono::Utc::now())
        .await
        .unwrap();
    // Past the second for which a process keeps its read of the models.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.stall(false);
    wait_until_done(&db.store, Duration::from_secs(10)).await;
    wait_until_batches_close(db).await;
    pool.stop().await;
    let counts = assert_each_job_answered_once(db).await;
    assert_eq!(counts.get("succeeded"), Some(&4), "{counts:?}");
    assert_eq!(api.counts().creates, 1);
}

/// Kills a worker (SIGKILL) once the server hangs on `step`, then lets another one finish.
async fn killed_at(db: &TestDb, step: Step, after: bool) -> Counts {
    let api = BatchApi::start().await;
    api.fail_lines("question 3", 400);
    api.hang(step, after);
    seed_batch(db, &api, 40, 1).await;
    let mut first = spawn_worker(&db.url, &FAST_ENV);
    wait_until(
        "the worker to reach the step",
        Duration::from_secs(30),
        async || api.counts().hung == 1,
    )
    .await;
    first.kill().expect("kill -9 the worker");
    first.wait().expect("reap the worker");
    let mut second = spawn_worker(&db.url, &FAST_ENV);
    wait_until_done(&db.store, Duration::from_secs(60)).await;
    wait_until_batches_close(db).await;
    crate::support::terminate(&mut second, Duration::from_secs(20));

    let counts = assert_each_job_answered_once(db).await;
    // question 3, 30..=39: 11 prompts.
    assert_eq!(counts.get("failed"), Some(&11), "{counts:?}");
    assert_eq!(counts.get("succeeded"), Some(&29), "{counts:?}");
    let server = api.counts();
    assert_eq!(server.creates, 1, "submitted twice: {server:?}");
    assert_eq!(server.lines, 40, "{server:?}");
    assert_eq!(summary(&db.store).await.total, 40);
    let batches = db.store.provider_batches_recent(10).await.expect("batches");
    assert!(batches.iter().all(|b| b.state.is_closed()), "{batches:?}");
    server
}

/// Uploaded, not submitted: the next process looks the batch up, finds nothing, submits it.
async fn killed_after_upload(db: &TestDb) {
    let server = killed_at(db, Step::Create, false).await;
    assert_eq!(server.uploads, 1, "{server:?}");
    assert!(server.lists >= 1, "{server:?}");
}

/// Submitted, the answer lost: the next process finds the batch by its token and adopts it.
async fn killed_after_submit(db: &TestDb) {
    let server = killed_at(db, Step::Create, true).await;
    assert_eq!(server.uploads, 1, "{server:?}");
    assert!(server.lists >= 1, "{server:?}");
}

/// The output file read and stored, the error file not: the next process reads both again,
/// and the answers already stored are not stored twice.
async fn killed_while_reading_results(db: &TestDb) {
    let server = killed_at(db, Step::ErrorFile, false).await;
    assert!(server.downloads >= 3, "{server:?}");
}

/// Killed before the upload was recorded: the batch is abandoned, its jobs sent again.
async fn killed_during_upload(db: &TestDb) {
    killed_at(db, Step::Upload, false).await;
    let batches = db.store.provider_batches_recent(10).await.expect("batches");
    let states: Vec<_> = batches.iter().map(|b| b.state.as_str()).collect();
    assert_eq!(states, ["done", "abandoned"], "{batches:?}");
}

on_both!(
    several_hundred_jobs_round_trip,
    a_batch_outlives_its_model_leaving_batch_mode,
    killed_after_upload,
    killed_after_submit,
    killed_while_reading_results,
    killed_during_upload,
    batch_answers_cost_the_batch_price,
);

/// A priced batch-mode model: each answer costs its tokens at the price, less the batch
/// discount (half by default); the same answers called directly would cost twice as much.
async fn batch_answers_cost_the_batch_price(db: &TestDb) {
    let api = BatchApi::start().await;
    let model = openai_model(
        "priced",
        "gpt-4o-mini",
        &api.base_url(),
        json!({"batch": true, "price": {"input": 1000, "output": 2000}}),
    );
    let model = seed_model(&db.store, &model).await;
    seed_prompts(&db.store, 4, 1, Some(&[model.id])).await;
    let app =
        App::with_store(crate::support::config(&db.url, &FAST), db.store.clone()).expect("an app");
    app.trigger_cron(None).await.expect("enqueue the batch");
    let pool = crate::support::RunningPool::start(&db.store, &db.url, &FAST).await;
    wait_until_done(&db.store, Duration::from_secs(60)).await;
    pool.stop().await;
    let responses = all_responses(&db.store).await;
    assert_eq!(responses.len(), 4);
    // 10 prompt and 4 completion tokens a line: (10 × 1000 + 4 × 2000) / 1e6 = 0.018 direct.
    for response in responses {
        let cost = response.cost_usd.expect("a priced answer has a cost");
        assert!((cost - 0.009).abs() < 1e-9, "cost {cost}");
    }
}

/// What users see and do: refusals, where a job waits, cancelling.
#[path = "provider_batch/faces.rs"]
mod faces;
/// Migration 0011 on databases that already hold jobs.
#[path = "provider_batch/migration.rs"]
mod migration;
/// The `submitted` state: rescues leave it alone, an expired batch hands its jobs back.
#[path = "provider_batch/submitted.rs"]
mod submitted;

/// The daily batch, 1,000 prompts × 3 models × 3 runs, through the local Batch API end
/// to end: a measurement (`cargo test --test it provider_batch::measure -- --ignored
/// --nocapture`), not part of the suite.
async fn daily_batch_end_to_end(db: &TestDb) {
    let api = BatchApi::start().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let model = openai_model(name, "gpt-4o-mini", &api.base_url(), json!({"batch": true}));
        ids.push(seed_model(&db.store, &model).await.id);
    }
    seed_prompts(&db.store, 1000, 3, Some(&ids)).await;
    let settings = ["--batch-poll-secs", "0.05", "--batch-step-secs", "5"];
    let started = std::time::Instant::now();
    let pool = crate::support::RunningPool::start(&db.store, &db.url, &settings).await;
    wait_until_done(&db.store, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    pool.stop().await;
    let summary = summary(&db.store).await;
    assert_eq!(
        (summary.succeeded, summary.total),
        (9000, 9000),
        "{summary:?}"
    );
    assert_eq!(api.counts().creates, 3);
    println!(
        "{:?}: 9,000 jobs through the local Batch API in {elapsed:.2?}",
        db.store.backend()
    );
}

mod measure {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement"]
    async fn daily_batch_on_sqlite() {
        super::daily_batch_end_to_end(&crate::support::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement"]
    async fn daily_batch_on_postgres() {
        let Some(db) = crate::support::postgres().await else {
            return;
        };
        super::daily_batch_end_to_end(&db).await;
    }
}
