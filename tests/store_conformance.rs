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
    ClaimOne, ClaimSize, EnqueueOptions, JobFilter, JobSelector, ModelPatch, NewModel, NewPrompt,
    Page, PromptPatch, QueueDriver, Store, StoreError,
};

/// A driver the suite runs on, taken out of the handle the test harness opens.
trait Backend: QueueDriver + promptq::store::Insights {
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
    a_claim_ahead_leaves_the_last_due_jobs_for_other_slots,
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
    all_models_prompt_takes_the_models_active_at_each_enqueue,
    workers_register_report_and_stop,
    claims_carry_their_worker_and_live_workers_keep_their_jobs,
    spend_and_token_means_cover_the_period,
    provider_batch_open_claims_one_model_and_one_key,
    provider_batch_is_taken_by_one_process_until_its_hold_ends,
    provider_batch_steps_are_fenced_by_state,
    provider_batch_close_hands_back_what_is_pending,
    provider_batch_job_cancel_is_fenced_and_counts_what_is_left,
    trackers_and_their_derived_rows,
    alerts_are_created_once_per_key_even_concurrently,
    concurrent_alert_claimers_take_each_alert_once,
    alert_marks_are_fenced_by_attempt_and_leases_expire,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_workers_jobs_come_back_at_once_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    dead_workers_jobs_come_back_at_once(&Db::<PostgresStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_workers_jobs_come_back_at_once_on_sqlite() {
    let db = support::sqlite().await;
    dead_workers_jobs_come_back_at_once_on_one_machine(&Db::<SqliteStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_renewal_is_a_heap_only_update_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    a_lease_renewal_is_a_heap_only_update(&Db::<PostgresStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_and_finishes_are_heap_only_updates_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    claims_and_finishes_are_heap_only_updates(&Db::<PostgresStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_emptied_by_a_crash_are_rebuilt_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    lists_emptied_by_a_crash_are_rebuilt(&Db::<PostgresStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_process_is_known_at_once_on_sqlite() {
    let db = support::sqlite().await;
    an_ended_process_is_known_at_once_on_one_machine(&Db::<SqliteStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_lost_its_session_takes_its_lock_back_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    a_worker_that_lost_its_session_takes_its_lock_back(&Db::<PostgresStore>::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_judged_dead_meanwhile_registers_again_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    a_worker_judged_dead_meanwhile_registers_again(&Db::<PostgresStore>::new(db)).await;
}

/// Runs each named scenario on PostgreSQL through a PgBouncer in transaction mode.
macro_rules! through_the_pooler {
    ($($name:ident),* $(,)?) => {
        mod on_pooled_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = crate::support::pooler::pooled_postgres().await else { return };
                    super::$name(&super::Db::<super::PostgresStore>::new(db)).await;
                }
            )*
        }
    };
}

// The core of the queue, as a serverless or managed PostgreSQL serves it.
through_the_pooler!(
    enqueue_creates_each_prompt_model_run_once,
    concurrent_enqueues_of_one_batch_create_each_job_once,
    claim_takes_due_jobs_in_order_and_leases_them,
    a_claim_ahead_leaves_the_last_due_jobs_for_other_slots,
    concurrent_claimers_claim_each_job_exactly_once,
    success_stores_one_response_and_a_second_finish_is_stale,
    retry_and_failure_outcomes_record_attempts,
    stale_attempt_cannot_finish_a_rescued_job,
    heartbeat_extends_only_attempts_still_owned,
    release_hands_jobs_back_without_spending_an_attempt,
    cancel_and_retry_by_job_and_by_batch,
    claim_by_id_answers_each_case,
    concurrent_claims_of_one_job_let_exactly_one_through,
    batched_finish_of_many_jobs_mixes_outcomes,
    query_filters_pages_and_summarises,
    prompts_and_models_crud,
    edit_mid_batch_keeps_the_batch_on_its_prompt_version,
    claims_carry_their_worker_and_live_workers_keep_their_jobs,
);

#[path = "store_conformance/actions.rs"]
mod actions;
/// The alert outbox.
#[path = "store_conformance/alerts.rs"]
mod alerts;
#[path = "store_conformance/catalog.rs"]
mod catalog;
#[path = "store_conformance/enqueue_claim.rs"]
mod enqueue_claim;
#[path = "store_conformance/finish_rescue.rs"]
mod finish_rescue;
/// Trackers and the rows derived from answers.
#[path = "store_conformance/insights.rs"]
mod insights;
/// Provider batches (Batch APIs).
#[path = "store_conformance/provider_batches.rs"]
mod provider_batches;
#[path = "store_conformance/queries.rs"]
mod queries;
/// What answers cost: spend per period, token means.
#[path = "store_conformance/spend.rs"]
mod spend;
/// Prompt versions and the store's clock.
#[path = "store_conformance/versions.rs"]
mod versions;
#[path = "store_conformance/workers.rs"]
mod workers;
use actions::*;
use alerts::*;
use catalog::*;
use enqueue_claim::*;
use finish_rescue::*;
use insights::*;
use provider_batches::*;
use queries::*;
use spend::*;
use versions::*;
use workers::*;

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
