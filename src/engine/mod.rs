//! Running jobs: the worker pool, retries, the built-in cron and the HTTP fan-out.
//!
//! The engine depends on the store and provider contracts and on the use cases in
//! [`crate::app`], never on a backend or on an LLM API directly.

pub mod attempt;
pub mod dispatch;
pub mod due;
pub mod guard;
pub mod limits;
pub mod pace;
pub mod retry;
pub mod scheduler;
pub mod worker;
