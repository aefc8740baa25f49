//! Running jobs: the worker pool, retries, the built-in cron and the HTTP fan-out.
//!
//! Everything here takes one [`runtime::Runtime`] (store, providers, limits, retry policy,
//! metrics, wake-up signal, settings); the engine depends on the store and provider contracts,
//! never on the use cases above it ([`crate::app`]), a backend or an LLM API directly.

pub mod attempt;
pub mod batch;
pub mod blocked;
pub mod budget;
pub mod dispatch;
pub mod due;
pub mod guard;
pub mod limits;
pub mod outage;
pub mod pace;
pub mod retry;
pub mod runtime;
pub mod webhook;
pub mod worker;
