//! The processes that run jobs: who holds a claimed job, how many calls are in flight, and
//! (on PostgreSQL) which holders died.
//!
//! A pool registers itself as a worker when it starts and reports, every few seconds, how many
//! model calls it has in flight and how many jobs it holds (a claimed job may wait for a free
//! slot); its claims carry its id. On PostgreSQL a worker also holds a session advisory lock
//! named by its id, on a connection of its own: the server releases the lock the moment that
//! session dies (`kill -9`, a lost machine), so any process can tell a dead worker from a slow
//! one by trying to take the lock, and hand its jobs back at once instead of after their lease.
//! A worker that is alive but hung keeps its lock, and its jobs wait for their lease as before.
//! Behind a transaction-mode pooler without `DATABASE_DIRECT_URL` no session outlives a
//! transaction, so such a worker holds no lock and says so (`holds_lock`), and leases bring its jobs back.
//! On SQLite, whose processes share one machine, a worker whose process ended is dead (see the
//! SQLite store's `workers` module).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Clock, Rescued, StoreResult};

/// A worker's id, carried by the jobs it claims.
pub type WorkerId = i64;

/// A process that is about to run jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorker {
    pub host: String,
    pub pid: u32,
    /// Its slots: model calls in flight at most.
    pub concurrency: usize,
}

impl NewWorker {
    /// This process, with `concurrency` slots.
    pub fn this_process(concurrency: usize) -> Self {
        // Read once: the SQLite store asks for this machine's name at every worker report.
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "unknown".to_owned())
        });
        NewWorker {
            host: host.clone(),
            pid: std::process::id(),
            concurrency,
        }
    }
}

/// A registered worker as last reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    pub id: WorkerId,
    pub host: String,
    pub pid: i64,
    pub concurrency: i64,
    /// Whether the database releases a lock when this worker dies (PostgreSQL with a session).
    pub holds_lock: bool,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    /// Model calls in flight, as of `seen_at`.
    pub running: i64,
    /// Jobs claimed: in flight or waiting for a free slot, as of `seen_at`.
    pub held: i64,
}

/// What the workers report, summed over the live ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerTotals {
    /// Workers heard from lately.
    pub live: i64,
    pub slots: i64,
    pub running: i64,
    /// Claimed jobs that wait for a free slot of their worker.
    pub waiting_for_slot: i64,
}

impl WorkerTotals {
    pub fn of(workers: &[Worker]) -> Self {
        workers
            .iter()
            .fold(WorkerTotals::default(), |t, w| WorkerTotals {
                live: t.live + 1,
                slots: t.slots + w.concurrency,
                running: t.running + w.running,
                waiting_for_slot: t.waiting_for_slot + (w.held - w.running).max(0),
            })
    }
}

/// How often a worker reports (and, on PostgreSQL, looks for dead workers); one not heard
/// from in [`WORKER_SILENT_AFTER`] is not listed.
pub const WORKER_BEAT: Duration = Duration::from_secs(1);
pub const WORKER_SILENT_AFTER: Duration = Duration::from_secs(30);

/// The worker registry (see the module documentation).
pub trait Workers: Send + Sync {
    /// Registers a worker at `now`. On PostgreSQL, where a session can be held (a direct URL,
    /// or `DATABASE_DIRECT_URL` beside a pooled one), the worker's lock is taken before its row
    /// becomes visible, so no other process ever sees it registered and unlocked.
    fn worker_register(
        &self,
        new: &NewWorker,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<WorkerId>> + Send;

    /// Records the worker's counts at `now`. Returns its id, which changes when its lock's
    /// session was lost and it registered again (its jobs were, or will be, handed back).
    fn worker_beat(
        &self,
        id: WorkerId,
        running: usize,
        held: usize,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<WorkerId>> + Send;

    /// Marks the worker stopped at `now` and lets go of its lock.
    fn worker_stop(
        &self,
        id: WorkerId,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The workers not stopped and heard from within `within` of `now`, by id.
    fn workers_live(
        &self,
        now: impl Into<Clock> + Send,
        within: Duration,
    ) -> impl Future<Output = StoreResult<Vec<Worker>>> + Send;

    /// Hands back (as a lease rescue does: `queued`, or `failed` once attempts are spent, an
    /// abandoned attempt recorded) the `processing` jobs of workers that hold a lock no longer:
    /// their process died. Such workers are marked stopped. A live worker's jobs, and jobs
    /// claimed by no worker or by one without a lock, are never touched. On PostgreSQL only a
    /// process that holds a worker lock itself judges, on that lock's session, and not within
    /// [`SESSION_SETTLE`](crate::store::postgres::SESSION_SETTLE) of taking its own back after
    /// losing it (a server restart frees every lock, and the live workers take theirs back
    /// meanwhile). On
    /// SQLite: the workers of this host silent for a few beats whose process is gone.
    fn jobs_rescue_orphaned(
        &self,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<Vec<Rescued>>> + Send;
}
