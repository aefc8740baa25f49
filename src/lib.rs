//! promptq: a job queue that runs a fixed set of prompts against several LLMs, several times,
//! on a schedule, and keeps every answer.
//!
//! A scheduling pass ([`schedule`]) decides which prompts are due and in which batch; the
//! [`store`] creates one job per (prompt, model, run index, batch key) idempotently; workers
//! claim jobs atomically, call the model through [`providers`], and finish each attempt fenced
//! by its attempt number. The same use cases serve the HTTP API, the CLI and the built-in cron.
//!
//! Arrows that must never be: [`domain`] imports nothing of the crate; only [`store`] knows
//! SQL; only [`providers`] knows an LLM API.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod insights;
pub mod metrics;
pub mod providers;
pub mod schedule;
pub mod store;
