//! The integration suite in one test binary (one link of the crate instead of one per file):
//! each module is one theme, run against real SQLite and a real PostgreSQL over real HTTP and
//! real processes. `cargo test --test it MODULE::` runs one theme; see `tests/README.md`.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod cli;
mod clock_skew;
mod cost;
mod dashboard;
mod engine;
mod hostile_headers;
mod http_api;
mod insights;
mod limits;
mod pooler;
mod provider_batch;
mod providers;
mod pushback;
mod readme;
mod reliability;
mod retention;
mod schedule_props;
mod security;
mod serverless;
mod sessions;
