//! The store's conformance suite: every behaviour of the queue contract, written once against
//! the driver trait ([`promptq::store::QueueDriver`]) and run on both backends, each through
//! its own driver type (a fresh SQLite file and a fresh PostgreSQL database per test).
//!
//! Extend it whenever the store's behaviour changes. Time is passed in ([`promptq::store::Clock::At`]),
//! so leases expire by moving `now`, not by sleeping.

mod support;

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use promptq::domain::{
    AttemptError, BatchKey, ErrorClass, Finish, JobStatus, NewResponse, Outcome, PlannedBatch,
    ProviderKind,
};
use promptq::store::postgres::PostgresStore;
use promptq::store::sqlite::SqliteStore;
use promptq::store::{
    ClaimOne, EnqueueOptions, JobFilter, JobSelector, ModelPatch, NewModel, NewPrompt, Page,
    PromptPatch, QueueDriver, Store, StoreError,
};

/// A driver the suite runs on, taken out of the handle the test harness opens.
trait Backend: QueueDriver {
    fn of(store: Store) -> Self;
}

impl Backend for SqliteStore {
    fn of(store: Store) -> Self {
        match store {
            Store::Sqlite(driver) => driver,
            Store::Postgres(_) => unreachable!("a sqlite: URL opens SQLite"),
        }
    }
}

impl Backend for PostgresStore {
    fn of(store: Store) -> Self {
        match store {
            Store::Postgres(driver) => driver,
            Store::Sqlite(_) => unreachable!("a postgres:// URL opens PostgreSQL"),
        }
    }
}

/// A fresh test database, seen through one backend's driver.
struct Db<D> {
    store: D,
    url: String,
    /// Keeps the database (and SQLite's directory) alive for the test.
    _db: support::TestDb,
}

impl<D: Backend> Db<D> {
    fn new(db: support::TestDb) -> Self {
        Db {
            store: D::of(db.store.clone()),
            url: db.url.clone(),
            _db: db,
        }
    }
}

/// Runs each named scenario on SQLite and on PostgreSQL.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::support::sqlite().await;
                    super::$name(&super::Db::<super::SqliteStore>::new(db)).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = crate::support::postgres().await else { return };
                    super::$name(&super::Db::<super::PostgresStore>::new(db)).await;
                }
            )*
        }
    };
}

conformance!(
    enqueue_creates_each_prompt_model_run_once,
    enqueue_ignores_inactive_prompts_and_models,
    concurrent_enqueues_of_one_batch_create_each_job_once,
    claim_takes_due_jobs_in_order_and_leases_them,
    concurrent_claimers_claim_each_job_exactly_once,
    success_stores_one_response_and_a_second_finish_is_stale,
    retry_and_failure_outcomes_record_attempts,
    stale_attempt_cannot_finish_a_rescued_job,
    rescue_fails_a_job_whose_attempts_are_spent,
    claimer_whose_pool_closes_unfinished_is_recovered_by_rescue,
    heartbeat_extends_only_attempts_still_owned,
    release_hands_jobs_back_without_spending_an_attempt,
    cancel_and_retry_by_job_and_by_batch,
    deactivated_model_skips_its_queued_and_requeued_jobs,
    claim_by_id_answers_each_case,
    concurrent_claims_of_one_job_let_exactly_one_through,
    batched_finish_of_many_jobs_mixes_outcomes,
    query_filters_pages_and_summarises,
    prompts_and_models_crud,
    bulk_twenty_thousand_jobs_enqueue_claim_finish,
    edit_mid_batch_keeps_the_batch_on_its_prompt_version,
    unlinking_a_model_skips_its_queued_jobs,
    finish_dates_rows_by_the_store_clock,
    database_clock_decides_leases,
);

/// Prompt versions and the store's clock.
#[path = "store_conformance/versions.rs"]
mod versions;
use versions::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 10, 14, 0, 0, 0).unwrap()
}

fn key(s: &str) -> BatchKey {
    s.parse().unwrap()
}

fn opts(now: DateTime<Utc>) -> EnqueueOptions {
    EnqueueOptions {
        now: now.into(),
        max_attempts: 3,
        mark_prompts: true,
    }
}

/// Finishes a batch at its first finish's instant (all of a test's finishes share one).
async fn finish_all(
    store: &impl QueueDriver,
    finishes: &[Finish],
) -> Result<Vec<promptq::domain::FinishResult>, StoreError> {
    let at = finishes.first().map_or_else(t0, |f| f.finished_at);
    store.jobs_finish(finishes, at).await
}

async fn model(store: &impl QueueDriver, name: &str) -> i64 {
    store
        .model_insert(
            &NewModel {
                name: name.to_owned(),
                provider: ProviderKind::Mock,
                model: format!("mock-{name}"),
                params: serde_json::json!({"latencyMs": 0}),
                active: true,
            },
            t0(),
        )
        .await
        .unwrap()
        .id
}

async fn prompt(
    store: &impl QueueDriver,
    text: &str,
    model_ids: Option<Vec<i64>>,
    runs: i32,
) -> i64 {
    store
        .prompt_insert(
            &NewPrompt {
                text: text.to_owned(),
                model_ids,
                runs,
                active: true,
                schedule: None,
            },
            t0(),
        )
        .await
        .unwrap()
        .id
}

fn plan(prompt_ids: &[i64], batch: &str) -> Vec<PlannedBatch> {
    prompt_ids
        .iter()
        .map(|&prompt_id| PlannedBatch {
            prompt_id,
            batch_key: key(batch),
            scheduled_for: t0(),
        })
        .collect()
}

/// `models` models and `prompts` prompts on all of them, `runs` runs each, enqueued in one batch.
async fn seeded(store: &impl QueueDriver, models: usize, prompts: usize, runs: i32) -> Vec<i64> {
    for m in 0..models {
        model(store, &format!("m{m}")).await;
    }
    let mut ids = Vec::new();
    for p in 0..prompts {
        ids.push(prompt(store, &format!("prompt {p}"), None, runs).await);
    }
    let report = store
        .jobs_enqueue(&plan(&ids, "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(report.jobs_created, (models * prompts) as u64 * runs as u64);
    ids
}

fn success(text: &str) -> Outcome {
    Outcome::Succeeded(Box::new(NewResponse {
        text: text.to_owned(),
        served_model: Some("mock-1".into()),
        finish_reason: Some("stop".into()),
        prompt_tokens: Some(10),
        completion_tokens: Some(20),
        total_tokens: Some(30),
        latency_ms: 5,
        http_status: Some(200),
        ..NewResponse::default()
    }))
}

fn error(class: ErrorClass, message: &str) -> AttemptError {
    AttemptError {
        class,
        http_status: Some(503),
        message: message.to_owned(),
    }
}

fn finish(job_id: i64, attempt: i32, at: DateTime<Utc>, outcome: Outcome) -> Finish {
    Finish {
        job_id,
        attempt,
        finished_at: at,
        outcome,
    }
}

async fn status_of(store: &impl QueueDriver, job_id: i64) -> JobStatus {
    store.job_get(job_id).await.unwrap().unwrap().status
}

async fn all_jobs(store: &impl QueueDriver) -> Vec<promptq::domain::Job> {
    store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 100_000,
                offset: 0,
            },
        )
        .await
        .unwrap()
}

// ---------------------------------------------------------------- enqueue

async fn enqueue_creates_each_prompt_model_run_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p1 = prompt(&store, "best CRM?", None, 3).await;
    let p2 = prompt(&store, "best ERP?", Some(vec![m2]), 2).await;

    let first = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(first.jobs_created, 2 * 3 + 2);
    assert_eq!(first.prompt_count, 2);

    let again = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(
        again.jobs_created, 0,
        "a second pass for the same batch creates nothing"
    );
    assert_eq!(again.prompt_count, 0);

    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 8);
    let keys: HashSet<_> = jobs
        .iter()
        .map(|j| (j.prompt_id, j.model_id, j.run_index, j.batch_key.clone()))
        .collect();
    assert_eq!(keys.len(), 8);
    assert!(keys.contains(&(p1, m1, 2, "2025-10-14".to_owned())));
    assert!(!keys.contains(&(p2, m1, 0, "2025-10-14".to_owned())));
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.attempt_count, 0);
        assert_eq!(job.max_attempts, 3);
        assert_eq!(job.scheduled_for, t0());
    }

    let marked = store.prompt_get(p1).await.unwrap().unwrap();
    assert_eq!(marked.last_batch_key.as_deref(), Some("2025-10-14"));
    assert_eq!(marked.last_run_at, Some(t0()));

    // The next day is a new batch.
    let next = store
        .jobs_enqueue(&plan(&[p1], "2025-10-15"), opts(t0() + Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(next.jobs_created, 6);
}

async fn enqueue_ignores_inactive_prompts_and_models<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p1 = prompt(&store, "one", None, 1).await;
    let p2 = prompt(&store, "two", None, 1).await;
    store
        .model_update(
            m2,
            &ModelPatch {
                active: Some(false),
                ..ModelPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    store
        .prompt_update(
            p2,
            &PromptPatch {
                active: Some(false),
                ..PromptPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let report = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(report.jobs_created, 1);
    let jobs = all_jobs(&store).await;
    assert_eq!((jobs[0].prompt_id, jobs[0].model_id), (p1, m1));
    let schedulable = store.prompts_schedulable().await.unwrap();
    assert_eq!(
        schedulable.iter().map(|p| p.prompt_id).collect::<Vec<_>>(),
        vec![p1]
    );
}

async fn concurrent_enqueues_of_one_batch_create_each_job_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded_without_jobs(&store, 4, 10, 5).await;
    let expected = 4 * 10 * 5;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let plan = plan(&prompts, "2025-10-14");
        tasks.push(tokio::spawn(async move {
            store.jobs_enqueue(&plan, opts(t0())).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap().jobs_created;
    }
    assert_eq!(created, expected, "the inserted counts add up to the batch");
    assert_eq!(all_jobs(&store).await.len() as u64, expected);
}

async fn seeded_without_jobs(
    store: &impl QueueDriver,
    models: usize,
    prompts: usize,
    runs: i32,
) -> Vec<i64> {
    for m in 0..models {
        model(store, &format!("m{m}")).await;
    }
    let mut ids = Vec::new();
    for p in 0..prompts {
        ids.push(prompt(store, &format!("prompt {p}"), None, runs).await);
    }
    ids
}

// ---------------------------------------------------------------- claim

async fn claim_takes_due_jobs_in_order_and_leases_them<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 3, 1).await;
    let now = t0() + Duration::seconds(1);
    let lease = std::time::Duration::from_secs(30);
    let claimed = store.jobs_claim(2, now, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed[0].job.id < claimed[1].job.id, "oldest due first");
    for c in &claimed {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.job.status, JobStatus::Processing);
        assert_eq!(c.job.lease_expires_at, Some(now + Duration::seconds(30)));
        assert_eq!(c.job.started_at, Some(now));
        assert!(c.prompt_text.starts_with("prompt "));
        assert_eq!(c.model.provider, ProviderKind::Mock);
    }
    // Put the third job in the future with a retry; it is not due yet.
    let third = store.jobs_claim(10, now, lease).await.unwrap();
    assert_eq!(third.len(), 1);
    let later = now + Duration::minutes(5);
    finish_all(
        &store,
        &[finish(
            third[0].job.id,
            1,
            now,
            Outcome::Retry {
                at: later,
                error: error(ErrorClass::Retryable, "503"),
                refund_attempt: false,
            },
        )],
    )
    .await
    .unwrap();
    assert!(store.jobs_claim(10, now, lease).await.unwrap().is_empty());
    let again = store
        .jobs_claim(10, later, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

async fn concurrent_claimers_claim_each_job_exactly_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 4, 100, 5).await; // 2,000 jobs
    let now = t0() + Duration::seconds(1);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .jobs_claim(25, now, std::time::Duration::from_secs(30))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                let finishes: Vec<Finish> = batch
                    .iter()
                    .map(|c| finish(c.job.id, c.attempt, now, success("ok")))
                    .collect();
                let results = finish_all(&store, &finishes).await.unwrap();
                assert!(results.iter().all(|r| r.applied));
                mine.extend(batch.iter().map(|c| c.job.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 2000);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.succeeded, 2000);
    assert_eq!(summary.total, 2000);
}

// ---------------------------------------------------------------- finish

async fn success_stores_one_response_and_a_second_finish_is_stale<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let claimed = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let job = &claimed[0];
    let done = now + Duration::seconds(2);
    let first = finish_all(
        &store,
        &[finish(job.job.id, job.attempt, done, success("answer"))],
    )
    .await
    .unwrap();
    assert!(first[0].applied);
    assert_eq!(first[0].status, Some(JobStatus::Succeeded));
    let response_id = first[0].response_id.expect("a response id");

    let second = finish_all(
        &store,
        &[finish(job.job.id, job.attempt, done, success("again"))],
    )
    .await
    .unwrap();
    assert!(
        !second[0].applied,
        "a second finish of the same attempt is stale"
    );
    assert_eq!(second[0].status, Some(JobStatus::Succeeded));
    assert_eq!(second[0].response_id, None);

    let stored = store
        .responses_list(
            &promptq::store::ResponseFilter {
                job_id: Some(job.job.id),
                ..Default::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, response_id);
    assert_eq!(stored[0].text, "answer");
    assert_eq!(stored[0].total_tokens, Some(30));
    assert_eq!(stored[0].batch_key, "2025-10-14");

    let after = store.job_get(job.job.id).await.unwrap().unwrap();
    assert_eq!(after.finished_at, Some(done));
    assert_eq!(after.lease_expires_at, None);
    assert_eq!(after.error_message, None);
    let attempts = store.job_attempts(job.job.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "succeeded");
    assert_eq!(attempts[0].http_status, Some(200));
    assert_eq!(attempts[0].started_at, Some(now));
}

async fn retry_and_failure_outcomes_record_attempts<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let mut now = t0();
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    let retry_at = now + Duration::seconds(10);
    let r = finish_all(
        &store,
        &[finish(
            c.job.id,
            c.attempt,
            now,
            Outcome::Retry {
                at: retry_at,
                error: error(ErrorClass::RateLimited, "429 slow down"),
                refund_attempt: true,
            },
        )],
    )
    .await
    .unwrap();
    assert_eq!(r[0].status, Some(JobStatus::Queued));
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.next_attempt_at, retry_at);
    assert_eq!(
        (job.attempt_count, job.max_attempts, job.rate_limited_count),
        (0, 3, 1),
        "a rate-limited attempt is refunded and counted apart"
    );
    assert_eq!(job.error_message.as_deref(), Some("429 slow down"));
    assert_eq!(job.finished_at, None);

    now = retry_at;
    let c2 = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(c2.attempt, 2);
    let r = finish_all(
        &store,
        &[finish(
            c2.job.id,
            2,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "401 bad key")),
        )],
    )
    .await
    .unwrap();
    assert_eq!(r[0].status, Some(JobStatus::Failed));
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error_message.as_deref(), Some("401 bad key"));
    assert_eq!(job.finished_at, Some(now));
    let attempts = store.job_attempts(c.job.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "failed"]);
    assert_eq!(attempts[0].error_class.as_deref(), Some("rate_limited"));
    assert_eq!(attempts[1].error_class.as_deref(), Some("permanent"));
}

async fn stale_attempt_cannot_finish_a_rescued_job<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let first = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    // Not expired yet: nothing to rescue.
    assert!(
        store
            .jobs_rescue_expired(now + Duration::seconds(29))
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + Duration::seconds(31);
    let rescued = store.jobs_rescue_expired(later).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].status, JobStatus::Queued);
    let second = store
        .jobs_claim(1, later, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempt, 2);

    let stale = finish_all(
        &store,
        &[finish(first.job.id, 1, later, success("late answer"))],
    )
    .await
    .unwrap();
    assert!(
        !stale[0].applied,
        "the rescued attempt's finish is rejected"
    );
    assert_eq!(stale[0].status, Some(JobStatus::Processing));
    assert_eq!(status_of(&store, first.job.id).await, JobStatus::Processing);

    let fresh = finish_all(
        &store,
        &[finish(second.job.id, 2, later, success("answer"))],
    )
    .await
    .unwrap();
    assert!(fresh[0].applied);
    let attempts = store.job_attempts(first.job.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["abandoned", "succeeded"]);
}

async fn rescue_fails_a_job_whose_attempts_are_spent<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let mut now = t0();
    for attempt in 1..=3 {
        let c = store
            .jobs_claim(1, now, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(c.len(), 1, "attempt {attempt} is claimable");
        now += Duration::seconds(31);
        let rescued = store.jobs_rescue_expired(now).await.unwrap();
        let expected = if attempt < 3 {
            JobStatus::Queued
        } else {
            JobStatus::Failed
        };
        assert_eq!(rescued[0].status, expected);
    }
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error_message.unwrap().contains("lease expired"));
    assert_eq!(job.finished_at, Some(now));
}

async fn claimer_whose_pool_closes_unfinished_is_recovered_by_rescue<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let url_store = reopen(db).await;
    let now = t0();
    let claimed = url_store
        .jobs_claim(2, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // The claimer goes away without a finish. This is a graceful close of its pool, not a
    // crash; workers really killed with SIGKILL mid-batch are in tests/reliability.rs.
    url_store.close().await;
    drop(url_store);

    let later = now + Duration::seconds(45);
    let rescued = store.jobs_rescue_expired(later).await.unwrap();
    assert_eq!(rescued.len(), 2);
    let again = store
        .jobs_claim(10, later, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    let finishes: Vec<_> = again
        .iter()
        .map(|c| finish(c.job.id, c.attempt, later, success("recovered")))
        .collect();
    assert!(
        finish_all(&store, &finishes)
            .await
            .unwrap()
            .iter()
            .all(|r| r.applied)
    );
    let responses = store
        .responses_list(&Default::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 2, "one response per job");
}

/// A second, independent connection pool on the same database (another process's view).
async fn reopen<D: Backend>(db: &Db<D>) -> D {
    D::of(Store::connect(&db.url).await.unwrap())
}

async fn heartbeat_extends_only_attempts_still_owned<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let now = t0();
    let claimed = store
        .jobs_claim(2, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let a = (claimed[0].job.id, claimed[0].attempt);
    let b = (claimed[1].job.id, claimed[1].attempt);
    finish_all(&store, &[finish(b.0, b.1, now, success("done"))])
        .await
        .unwrap();
    let until = now + Duration::seconds(60);
    let owned = store
        .jobs_heartbeat(&[a, b, (a.0, 7)], now, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(owned, vec![a]);
    assert_eq!(
        store.job_get(a.0).await.unwrap().unwrap().lease_expires_at,
        Some(until)
    );
    // With the lease extended, a rescue at the old expiry takes nothing.
    assert!(
        store
            .jobs_rescue_expired(now + Duration::seconds(45))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn release_hands_jobs_back_without_spending_an_attempt<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    let released = store
        .jobs_release(&[(c.job.id, c.attempt)], now, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(released, 1);
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt_count, 0);
    assert_eq!(job.lease_expires_at, None);
    let again = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again[0].attempt, 1);
    // Releasing a job that is not ours (stale attempt) does nothing.
    assert_eq!(
        store
            .jobs_release(&[(c.job.id, 5)], now, std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}

async fn cancel_and_retry_by_job_and_by_batch<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 4, 1).await;
    let now = t0();
    assert_eq!(
        store.jobs_cancel(&JobSelector::One(1), now).await.unwrap(),
        1
    );
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Skipped);
    assert!(job.error_message.unwrap().contains("cancelled"));
    // A processing job is not cancelled.
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .jobs_cancel(&JobSelector::One(c.job.id), now)
            .await
            .unwrap(),
        0
    );
    finish_all(
        &store,
        &[finish(
            c.job.id,
            c.attempt,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "400")),
        )],
    )
    .await
    .unwrap();
    let batch = JobSelector::Batch {
        batch_key: "2025-10-14".into(),
        status: None,
    };
    assert_eq!(store.jobs_cancel(&batch, now).await.unwrap(), 2);
    let failed_only = JobSelector::Batch {
        batch_key: "2025-10-14".into(),
        status: Some(JobStatus::Failed),
    };
    assert_eq!(store.jobs_retry(&failed_only, 3, now).await.unwrap(), 1);
    let retried = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.max_attempts, retried.attempt_count + 3);
    assert_eq!(retried.finished_at, None);
    // Retrying the whole batch brings back the skipped jobs too.
    assert_eq!(store.jobs_retry(&batch, 3, now).await.unwrap(), 3);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.queued, 4);
    // A queued job is not retried again, and an unknown job changes nothing.
    assert_eq!(
        store
            .jobs_retry(&JobSelector::One(1), 3, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .jobs_retry(&JobSelector::One(999), 3, now)
            .await
            .unwrap(),
        0
    );
}

async fn deactivated_model_skips_its_queued_and_requeued_jobs<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p = prompt(&store, "q", None, 2).await;
    store
        .jobs_enqueue(&plan(&[p], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    let now = t0();
    // One job of m1 is running when m1 is deactivated; it comes back for a retry later.
    let running = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(running.model.id, m1);
    store
        .model_update(
            m1,
            &ModelPatch {
                active: Some(false),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(
        (summary.skipped, summary.processing, summary.queued),
        (1, 1, 2)
    );
    finish_all(
        &store,
        &[finish(
            running.job.id,
            1,
            now,
            Outcome::Retry {
                at: now,
                error: error(ErrorClass::Retryable, "503"),
                refund_attempt: false,
            },
        )],
    )
    .await
    .unwrap();
    let claimed = store
        .jobs_claim(10, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.model.id == m2));
    let job = store.job_get(running.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Skipped);
    assert!(job.error_message.unwrap().contains("deactivated"));

    // Deleting the prompt skips whatever is still queued of it.
    store
        .jobs_release(
            &claimed
                .iter()
                .map(|c| (c.job.id, c.attempt))
                .collect::<Vec<_>>(),
            now,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(store.prompt_delete(p, now).await.unwrap());
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.skipped, 4);
    assert!(store.prompt_get(p).await.unwrap().is_none());
}

async fn claim_by_id_answers_each_case<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let now = t0();
    let lease = std::time::Duration::from_secs(30);
    match store.job_claim(1, now, lease).await.unwrap() {
        ClaimOne::Claimed(c) => {
            assert_eq!(c.job.id, 1);
            assert_eq!(c.attempt, 1);
            assert_eq!(c.prompt_text, "prompt 0");
        }
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(
        store.job_claim(1, now, lease).await.unwrap(),
        ClaimOne::NotClaimable(JobStatus::Processing)
    );
    assert_eq!(
        store.job_claim(12345, now, lease).await.unwrap(),
        ClaimOne::NotFound
    );
    store
        .prompt_update(
            2,
            &PromptPatch {
                active: Some(false),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    // Deactivation skipped the queued job already.
    assert_eq!(
        store.job_claim(2, now, lease).await.unwrap(),
        ClaimOne::NotClaimable(JobStatus::Skipped)
    );
}

async fn concurrent_claims_of_one_job_let_exactly_one_through<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .job_claim(1, now, std::time::Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for task in tasks {
        match task.await.unwrap() {
            ClaimOne::Claimed(_) => claimed += 1,
            ClaimOne::NotClaimable(JobStatus::Processing) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1);
}

async fn batched_finish_of_many_jobs_mixes_outcomes<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 6, 1).await;
    let now = t0();
    let c = store
        .jobs_claim(6, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let finishes = vec![
        finish(c[0].job.id, 1, now, success("a")),
        finish(c[1].job.id, 1, now, success("b")),
        finish(
            c[2].job.id,
            1,
            now,
            Outcome::Retry {
                at: now + Duration::seconds(5),
                error: error(ErrorClass::Retryable, "timeout"),
                refund_attempt: false,
            },
        ),
        finish(
            c[3].job.id,
            1,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "404 model not found")),
        ),
        finish(c[4].job.id, 9, now, success("stale")),
        finish(424242, 1, now, success("nobody")),
    ];
    let results = finish_all(&store, &finishes).await.unwrap();
    assert_eq!(results.len(), 6);
    let by_id = |id: i64| results.iter().find(|r| r.job_id == id).unwrap();
    assert!(by_id(c[0].job.id).applied && by_id(c[0].job.id).response_id.is_some());
    assert!(by_id(c[1].job.id).response_id.is_some());
    assert_ne!(
        by_id(c[0].job.id).response_id,
        by_id(c[1].job.id).response_id
    );
    assert_eq!(by_id(c[2].job.id).status, Some(JobStatus::Queued));
    assert_eq!(by_id(c[3].job.id).status, Some(JobStatus::Failed));
    assert!(!by_id(c[4].job.id).applied);
    assert_eq!(by_id(c[4].job.id).status, Some(JobStatus::Processing));
    assert!(!by_id(424242).applied);
    assert_eq!(by_id(424242).status, None);
    let responses = store
        .responses_list(&Default::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 2);
}

async fn query_filters_pages_and_summarises<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded(&store, 2, 3, 2).await; // 12 jobs
    let now = t0();
    store
        .jobs_enqueue(&plan(&prompts[..1], "2025-10-15"), opts(now))
        .await
        .unwrap(); // +4
    let c = store
        .jobs_claim(3, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    finish_all(&store, &[finish(c[0].job.id, 1, now, success("x"))])
        .await
        .unwrap();

    let all = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(
        (all.total, all.queued, all.processing, all.succeeded),
        (16, 13, 2, 1)
    );
    let day2 = JobFilter {
        batch_key: Some("2025-10-15".into()),
        ..Default::default()
    };
    assert_eq!(store.jobs_summary(&day2).await.unwrap().total, 4);
    let by_prompt = JobFilter {
        prompt_id: Some(prompts[1]),
        ..Default::default()
    };
    assert_eq!(store.jobs_summary(&by_prompt).await.unwrap().total, 4);
    let processing = JobFilter {
        status: Some(JobStatus::Processing),
        ..Default::default()
    };
    let listed = store.jobs_list(&processing, Page::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let one = JobFilter {
        job_id: Some(c[0].job.id),
        ..Default::default()
    };
    assert_eq!(
        store.jobs_list(&one, Page::default()).await.unwrap()[0].status,
        JobStatus::Succeeded
    );

    let page1 = store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 5,
                offset: 0,
            },
        )
        .await
        .unwrap();
    let page4 = store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 5,
                offset: 15,
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.len(), 5);
    assert_eq!(page4.len(), 1);
    assert!(page1.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        store
            .jobs_count_expired(now + Duration::seconds(31))
            .await
            .unwrap(),
        2
    );
}

async fn prompts_and_models_crud<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let a = model(&store, "a").await;
    let b = model(&store, "b").await;
    let duplicate = store
        .model_insert(
            &NewModel {
                name: "a".into(),
                provider: ProviderKind::OpenAi,
                model: "gpt-4o-mini".into(),
                params: serde_json::json!({}),
                active: true,
            },
            t0(),
        )
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))));

    let p = prompt(&store, "all models", None, 1).await;
    assert_eq!(
        store.prompt_get(p).await.unwrap().unwrap().model_ids,
        vec![a, b]
    );
    let unknown = store
        .prompt_insert(
            &NewPrompt {
                text: "x".into(),
                model_ids: Some(vec![a, 999]),
                runs: 1,
                active: true,
                schedule: None,
            },
            t0(),
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound(m)) if m.contains("999")));
    assert_eq!(
        store.prompt_list().await.unwrap().len(),
        1,
        "nothing half-created"
    );

    let edited = store
        .prompt_update(
            p,
            &PromptPatch {
                text: Some("edited".into()),
                model_ids: Some(vec![b]),
                runs: Some(4),
                schedule: Some(Some("0 */6 * * *".into())),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.text, "edited");
    assert_eq!(edited.model_ids, vec![b]);
    assert_eq!(edited.runs, 4);
    assert_eq!(edited.schedule.as_deref(), Some("0 */6 * * *"));
    let cleared = store
        .prompt_update(
            p,
            &PromptPatch {
                schedule: Some(None),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.schedule, None);
    assert_eq!(cleared.runs, 4);

    let renamed = store
        .model_update(
            a,
            &ModelPatch {
                name: Some("renamed".into()),
                params: Some(serde_json::json!({"temperature": 0.2})),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.params["temperature"], 0.2);
    assert!(store.model_delete(a, t0()).await.unwrap());
    assert!(!store.model_delete(a, t0()).await.unwrap());
    assert_eq!(store.model_list().await.unwrap().len(), 1);
    assert!(store.model_get(a).await.unwrap().is_none());
    // A deleted model frees its name.
    model(&store, "a").await;
    assert!(
        store
            .model_update(999, &ModelPatch::default(), t0())
            .await
            .unwrap()
            .is_none()
    );
}

async fn bulk_twenty_thousand_jobs_enqueue_claim_finish<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded_without_jobs(&store, 4, 1000, 5).await;
    let now = t0();
    let started = Instant::now();
    let report = store
        .jobs_enqueue(&plan(&prompts, "2025-10-14"), opts(now))
        .await
        .unwrap();
    let enqueue = started.elapsed();
    assert_eq!(report.jobs_created, 20_000);
    assert_eq!(report.prompt_count, 1000);

    let started = Instant::now();
    let mut done = 0;
    loop {
        let batch = store
            .jobs_claim(500, now, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        let finishes: Vec<_> = batch
            .iter()
            .map(|c| finish(c.job.id, c.attempt, now, success("bulk answer")))
            .collect();
        let results = finish_all(&store, &finishes).await.unwrap();
        done += results.iter().filter(|r| r.applied).count();
    }
    let drain = started.elapsed();
    assert_eq!(done, 20_000);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.succeeded, 20_000);
    // A measurement for the record, never an assertion.
    eprintln!(
        "[{:?}] enqueue 20000 jobs: {:.0} ms ({:.0} jobs/s); claim+finish in batches of 500: {:.0} ms ({:.0} jobs/s)",
        store.backend(),
        enqueue.as_secs_f64() * 1000.0,
        20_000.0 / enqueue.as_secs_f64(),
        drain.as_secs_f64() * 1000.0,
        20_000.0 / drain.as_secs_f64()
    );
}
