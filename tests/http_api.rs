//! The HTTP API over real HTTP: a server bound to 127.0.0.1:0 (`axum::serve` on
//! `promptq::http::router`), a reqwest client, a fresh database per test. Every scenario is
//! written once and runs on SQLite and on PostgreSQL.
//!
//! What is checked: the original three routes' exact shapes, the management routes, every way
//! auth can fail, a table of bad inputs (none may answer 5xx), concurrent triggers and claims,
//! the body limit, the database going away, metrics, the OpenAPI document against real answers,
//! the HTTP fan-out, and the store's read-only figures behind `/api/jobs/status`.

mod support;

// A test crate's root looks for modules next to itself; these live under tests/http_api/
#[path = "http_api/auth.rs"]
mod auth;
#[path = "http_api/bad_input.rs"]
mod bad_input;
#[path = "http_api/catalog.rs"]
mod catalog;
#[path = "http_api/concurrency.rs"]
mod concurrency;
#[path = "http_api/harness.rs"]
mod harness;
#[path = "http_api/operations.rs"]
mod operations;
#[path = "http_api/queue.rs"]
mod queue;
#[path = "http_api/store_stats.rs"]
mod store_stats;

/// Runs each named scenario (an `async fn(support::TestDb)` in a module of this crate) on
/// SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::support::sqlite().await;
                    crate::$module::$name(db).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = crate::support::postgres().await else { return };
                    crate::$module::$name(db).await;
                }
            )*
        }
    };
}

on_both_databases!(
    queue::cron_creates_each_batch_once_with_the_original_shape,
    queue::cron_backfills_a_named_batch_from_query_or_body,
    queue::status_has_the_original_shape_and_richer_figures,
    queue::status_filters_and_pages,
    queue::process_runs_a_job_and_detail_shows_it,
    queue::failed_attempts_answer_200_with_queued_then_failed,
    queue::retry_and_cancel_by_job_and_by_batch,
    queue::responses_are_listed_with_filters,
    queue::http_dispatch_fans_out_every_due_job,
    catalog::models_are_created_listed_patched_and_deleted,
    catalog::prompts_are_created_listed_patched_and_deleted,
    auth::every_api_route_refuses_a_missing_or_wrong_secret,
    auth::the_secret_is_accepted_as_is_or_as_a_bearer_token,
    auth::no_error_body_carries_the_secret,
    bad_input::bad_inputs_answer_4xx_with_a_message,
    bad_input::bodies_over_one_mebibyte_answer_413,
    concurrency::concurrent_crons_create_each_job_once,
    concurrency::concurrent_process_calls_run_the_model_once,
    operations::healthz_and_metrics_are_open,
    operations::concurrent_scrapes_share_one_database_read,
    operations::healthz_and_api_answer_503_when_the_database_is_gone,
    operations::openapi_document_describes_the_real_answers,
    store_stats::stats_count_per_model_and_sum_tokens_and_cost,
    store_stats::latency_percentiles_are_nearest_rank,
    store_stats::due_stats_count_due_queued_jobs,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_without_details() {
    operations::a_panicking_handler_answers_500_without_details(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_api_is_open() {
    auth::without_a_secret_the_api_is_open(support::sqlite().await).await;
}
