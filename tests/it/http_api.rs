//! The HTTP API over real HTTP: a server bound to 127.0.0.1:0 (`axum::serve` on
//! `promptq::http::router`), a reqwest client, a fresh database per test. Every scenario is
//! written once and runs on SQLite and on PostgreSQL.
//!
//! What is checked: the original three routes' exact shapes, the management routes, every way
//! auth can fail, a table of bad inputs (none may answer 5xx), concurrent triggers and claims,
//! the body limit, the database going away, metrics, the OpenAPI document against real answers,
//! the HTTP fan-out, and the store's read-only figures behind `/api/jobs/status`.

use crate::support;

mod auth;
mod bad_input;
mod catalog;
mod concurrency;
mod openapi;
pub(crate) mod operations;
mod queue;
mod store_stats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_without_details() {
    operations::a_panicking_handler_answers_500_without_details(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_api_is_open() {
    auth::without_a_secret_the_api_is_open(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_against_the_openapi_3_1_schema() {
    openapi::the_served_document_validates_against_the_openapi_3_1_schema().await;
}
