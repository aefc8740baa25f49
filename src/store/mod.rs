//! The queue's storage contract: the only code in promptq that speaks SQL.
//!
//! [`Store`] is one set of Noun+Verb operations (`jobs_enqueue`, `jobs_claim`, `jobs_finish`,
//! `jobs_rescue_expired`, …) with two implementations: [`sqlite`] (the embedded default: WAL,
//! one writer connection, `BEGIN IMMEDIATE`) and [`postgres`] (scale-out: `FOR UPDATE SKIP
//! LOCKED`, `LISTEN/NOTIFY`, advisory locks). Every operation that changes a job is one
//! statement or one short transaction, and every write made on behalf of an attempt is fenced
//! by `(job id, attempt)`: a stale attempt can never overwrite a job that moved on.
//!
//! Whose clock a queue statement reads is the caller's choice, as a [`Clock`]: the processes
//! pass [`Clock::Database`], so that leases, rescues and due-ness are judged by one clock (the
//! database's) whatever the clocks of the machines sharing it say; tests pass an instant
//! ([`Clock::At`]) to move time without sleeping. One conformance suite (`tests/store_conformance.rs`)
//! runs against both implementations; extend it whenever behaviour changes here.

pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, JobStatus, Model, ModelId, PlannedBatch, Prompt,
    PromptId, ProviderKind, ScheduledPrompt, Summary,
};

/// The instant a queue statement acts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The database's own clock (`now()` on PostgreSQL; on SQLite, whose processes share one
    /// machine, that machine's clock). What every process sharing a database must use: a
    /// process whose clock runs ahead would otherwise rescue live jobs, and one behind would
    /// claim nothing.
    Database,
    /// A given instant (tests, and figures about a moment already chosen).
    At(DateTime<Utc>),
}

impl From<DateTime<Utc>> for Clock {
    fn from(at: DateTime<Utc>) -> Self {
        Clock::At(at)
    }
}

impl Clock {
    /// The instant, or `None` for the database's clock (bound as NULL: `COALESCE($n, now())`).
    pub fn fixed(self) -> Option<DateTime<Utc>> {
        match self {
            Clock::Database => None,
            Clock::At(at) => Some(at),
        }
    }

    /// The instant on this machine's clock (SQLite, where every process shares it).
    pub fn local(self) -> DateTime<Utc> {
        self.fixed().unwrap_or_else(Utc::now)
    }
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What can go wrong in the store, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down: answer 503, try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The URL names no supported database.
    #[error("{0}")]
    InvalidUrl(String),
    /// A row conflicts with an existing one (e.g. a model name already taken).
    #[error("{0}")]
    Conflict(String),
    /// A foreign key names a row that does not exist (e.g. a prompt on an unknown model).
    #[error("{0}")]
    NotFound(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else: a bug or a corrupt database; logged, answered 500 without details.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound(db.message().to_owned())
            }
            // Postgres: admin shutdown, cannot connect now, too many connections.
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "53300")
                ) =>
            {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Database(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A model to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub name: String,
    pub provider: ProviderKind,
    pub model: String,
    pub params: serde_json::Value,
    pub active: bool,
}

/// Changes to a model; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub params: Option<serde_json::Value>,
    pub active: Option<bool>,
}

/// A prompt to create. `model_ids: None` means every active model.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub text: String,
    pub model_ids: Option<Vec<ModelId>>,
    pub runs: i32,
    pub active: bool,
    pub schedule: Option<String>,
}

/// Changes to a prompt; `None` leaves a field as it is, `schedule: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptPatch {
    pub text: Option<String>,
    pub model_ids: Option<Vec<ModelId>>,
    pub runs: Option<i32>,
    pub active: Option<bool>,
    pub schedule: Option<Option<String>>,
}

/// Settings of one enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// When the jobs are created and fall due.
    pub now: Clock,
    pub max_attempts: i32,
    /// Record the batch as the prompts' latest run (`last_run_at`, `last_batch_key`).
    /// Off for an explicit backfill of an older batch.
    pub mark_prompts: bool,
}

/// What an enqueue really did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueReport {
    /// Rows actually inserted (jobs that already existed are not counted).
    pub jobs_created: u64,
    /// Prompts that got at least one new job.
    pub prompt_count: u64,
}

/// The answer to "claim this job" (`POST /api/jobs/process`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOne {
    Claimed(Box<ClaimedJob>),
    /// The job exists but is not `queued` (or not due yet); its current status.
    NotClaimable(JobStatus),
    /// The job was queued but its prompt or model is no longer active: it is now `skipped`.
    Skipped,
    NotFound,
}

/// A job that a rescue moved out of an expired lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rescued {
    pub job_id: JobId,
    pub attempt: i32,
    /// `queued` when attempts remain, else `failed`.
    pub status: JobStatus,
}

/// The jobs a retry or a cancel applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSelector {
    One(JobId),
    Batch {
        batch_key: String,
        status: Option<JobStatus>,
    },
}

/// Filters of a job query; all of them must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub job_id: Option<JobId>,
    pub batch_key: Option<String>,
    pub prompt_id: Option<PromptId>,
    pub model_id: Option<ModelId>,
    pub status: Option<JobStatus>,
}

/// One page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 100,
            offset: 0,
        }
    }
}

/// One attempt of a job, as recorded in `job_attempts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub job_id: JobId,
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// `succeeded`, `retry`, `failed` or `abandoned`.
    pub outcome: String,
    pub http_status: Option<i32>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
}

/// A stored response with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    pub id: i64,
    pub job_id: JobId,
    pub prompt_id: PromptId,
    pub model_id: ModelId,
    pub batch_key: String,
    pub run_index: i32,
    pub text: String,
    pub served_model: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub latency_ms: i64,
    pub provider_request_id: Option<String>,
    pub citations: Option<String>,
    pub raw: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The version of the prompt this answers (SHA-256 of its text, hex) and that text;
    /// `None` for answers stored before prompts had versions.
    pub prompt_version: Option<String>,
    pub prompt_text: Option<String>,
}

/// The version key of a prompt text: its SHA-256, in lower-case hex.
pub fn prompt_version_hash(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Filters of a response query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFilter {
    pub prompt_id: Option<PromptId>,
    pub model_id: Option<ModelId>,
    pub batch_key: Option<String>,
    pub job_id: Option<JobId>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// What a pause applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseScope {
    /// Every model of a provider type. Kept for pauses recorded by earlier versions; the engine
    /// pauses an endpoint instead, so that one bad key does not stop its neighbours.
    Provider(ProviderKind),
    Model(ModelId),
    /// One endpoint (base URL and key), by its identity hash
    /// ([`crate::providers::Providers::endpoint`]): every model that calls it.
    Endpoint(u64),
}

impl PauseScope {
    /// The key stored in `pauses.scope`.
    pub fn key(&self) -> String {
        match self {
            PauseScope::Provider(kind) => format!("provider:{kind}"),
            PauseScope::Model(id) => format!("model:{id}"),
            PauseScope::Endpoint(id) => format!("endpoint:{id:016x}"),
        }
    }
}

/// The answer of [`Store::rate_reserve_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateGrant {
    /// Reserved: the call may start at this time.
    Reserved(DateTime<Utc>),
    /// Nothing reserved: the first free slot is at this time, beyond the allowed wait.
    Busy(DateTime<Utc>),
}

/// A provider, endpoint or model that must not be called before `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    pub scope: String,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Rate-limited answers in a row with no success (a model's scope only).
    pub strikes: i32,
}

/// The queue on one of its two databases.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

/// Calls the same method on whichever backend this store is.
macro_rules! on_backend {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

// After the macro, which it uses.
pub mod stats;
pub use stats::{
    BatchSummary, DueStats, JobStats, LatencyStats, ModelCounts, ModelWindow, QueueFigures,
    TokenTotals,
};

impl Store {
    /// Opens (and for SQLite creates) the database at `url` without migrating it.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(
                postgres::PostgresStore::connect(url).await?,
            ))
        } else {
            Err(StoreError::InvalidUrl(
                "DATABASE_URL must start with sqlite: or postgres://".to_owned(),
            ))
        }
    }

    /// Opens the database and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> StoreResult<()> {
        on_backend!(self.migrate())
    }

    /// The database's clock now (this machine's on SQLite): the "now" of due-ness, shared by
    /// every process whatever their own clocks say.
    pub async fn clock_now(&self) -> StoreResult<DateTime<Utc>> {
        match self {
            Store::Sqlite(_) => Ok(Utc::now()),
            Store::Postgres(store) => store.clock_now().await,
        }
    }

    /// Answers when the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        on_backend!(self.ping())
    }

    pub async fn close(&self) {
        on_backend!(self.close())
    }

    /// Wakes `notify` whenever another process announces work (Postgres LISTEN/NOTIFY), until
    /// `stop`. `None` on SQLite, where announcements are in-process only.
    pub fn spawn_job_listener(
        &self,
        notify: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(store) => Some(store.spawn_job_listener(notify, stop)),
        }
    }

    /// Runs an administrative statement (`CREATE DATABASE` for the benchmark) on Postgres.
    pub async fn admin_execute(&self, sql: &str) -> StoreResult<()> {
        match self {
            Store::Sqlite(_) => Err(StoreError::InvalidUrl(
                "administrative statements need a postgres:// URL".into(),
            )),
            Store::Postgres(store) => store.admin_execute(sql).await,
        }
    }

    /// Bytes written to the write-ahead log so far (Postgres), for WAL bytes per job.
    pub async fn wal_position(&self) -> StoreResult<Option<i64>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(store) => store.wal_position().await.map(Some),
        }
    }

    // ---- models

    pub async fn model_insert(&self, new: &NewModel, now: DateTime<Utc>) -> StoreResult<Model> {
        on_backend!(self.model_insert(new, now))
    }

    pub async fn model_get(&self, id: ModelId) -> StoreResult<Option<Model>> {
        on_backend!(self.model_get(id))
    }

    /// Every model not deleted, by id.
    pub async fn model_list(&self) -> StoreResult<Vec<Model>> {
        on_backend!(self.model_list())
    }

    /// Applies a patch; deactivating a model skips its queued jobs in the same transaction.
    pub async fn model_update(
        &self,
        id: ModelId,
        patch: &ModelPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Model>> {
        on_backend!(self.model_update(id, patch, now))
    }

    /// Soft-deletes a model (its history stays) and skips its queued jobs.
    pub async fn model_delete(&self, id: ModelId, now: DateTime<Utc>) -> StoreResult<bool> {
        on_backend!(self.model_delete(id, now))
    }

    // ---- prompts

    pub async fn prompt_insert(&self, new: &NewPrompt, now: DateTime<Utc>) -> StoreResult<Prompt> {
        on_backend!(self.prompt_insert(new, now))
    }

    pub async fn prompt_get(&self, id: PromptId) -> StoreResult<Option<Prompt>> {
        on_backend!(self.prompt_get(id))
    }

    pub async fn prompt_list(&self) -> StoreResult<Vec<Prompt>> {
        on_backend!(self.prompt_list())
    }

    /// Applies a patch; deactivating a prompt skips its queued jobs in the same transaction.
    pub async fn prompt_update(
        &self,
        id: PromptId,
        patch: &PromptPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Prompt>> {
        on_backend!(self.prompt_update(id, patch, now))
    }

    /// Soft-deletes a prompt (its history stays) and skips its queued jobs.
    pub async fn prompt_delete(&self, id: PromptId, now: DateTime<Utc>) -> StoreResult<bool> {
        on_backend!(self.prompt_delete(id, now))
    }

    /// The active prompts with what due-ness needs.
    pub async fn prompts_schedulable(&self) -> StoreResult<Vec<ScheduledPrompt>> {
        on_backend!(self.prompts_schedulable())
    }

    // ---- the queue

    /// Creates every job of the planned batches (active models × runs) with
    /// `ON CONFLICT DO NOTHING`, and marks the prompts run, in one transaction.
    pub async fn jobs_enqueue(
        &self,
        plan: &[PlannedBatch],
        options: EnqueueOptions,
    ) -> StoreResult<EnqueueReport> {
        on_backend!(self.jobs_enqueue(plan, options))
    }

    /// Claims up to `limit` jobs due at `now` in one statement: `processing`, attempt + 1,
    /// leased until `now + lease`. A picked job whose prompt or model is no longer active ends
    /// `skipped` instead and is not returned. The claim carries the prompt version and the
    /// generation params snapshotted at enqueue, not the prompt's or model's current ones.
    pub async fn jobs_claim(
        &self,
        limit: i64,
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now.into();
        on_backend!(self.jobs_claim(limit, now, lease))
    }

    /// Claims one job by id, if it is queued (due or not: an explicit call runs it now).
    pub async fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<ClaimOne> {
        let now = now.into();
        on_backend!(self.job_claim(id, now, lease))
    }

    /// Finishes attempts, each fenced by (job id, attempt), in one transaction. A success stores
    /// its response with the status change; a stale finish changes nothing and says so.
    ///
    /// The finish is written at `now`; a retry falls due `now` plus the delay its worker chose
    /// (`Retry::at - Finish::finished_at`), so the worker's own clock never dates a row.
    pub async fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: impl Into<Clock>,
    ) -> StoreResult<Vec<FinishResult>> {
        let now = now.into();
        on_backend!(self.jobs_finish(finishes, now))
    }

    /// Moves `processing` jobs whose lease expired before `now` back to `queued`, or to
    /// `failed` once their attempts are spent, recording the abandoned attempt.
    pub async fn jobs_rescue_expired(&self, now: impl Into<Clock>) -> StoreResult<Vec<Rescued>> {
        let now = now.into();
        on_backend!(self.jobs_rescue_expired(now))
    }

    /// Extends the leases of attempts still running to `now + lease`; returns the attempts that
    /// still own their job (a stale attempt of a job that another attempt now holds is not
    /// among them).
    pub async fn jobs_heartbeat(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<Vec<(JobId, i32)>> {
        let now = now.into();
        on_backend!(self.jobs_heartbeat(attempts, now, lease))
    }

    /// Hands claimed attempts back to `queued`, due `delay` after `now`, without spending an
    /// attempt (shutdown, or a limit that asks to wait).
    pub async fn jobs_release(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock>,
        delay: Duration,
    ) -> StoreResult<u64> {
        let now = now.into();
        on_backend!(self.jobs_release(attempts, now, delay))
    }

    /// `queued → skipped` for the selected jobs; returns how many changed.
    pub async fn jobs_cancel(
        &self,
        selector: &JobSelector,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        on_backend!(self.jobs_cancel(selector, now))
    }

    /// `failed | skipped → queued`, due now, with `extra_attempts` more attempts.
    pub async fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: impl Into<Clock>,
    ) -> StoreResult<u64> {
        let now = now.into();
        on_backend!(self.jobs_retry(selector, extra_attempts, now))
    }

    /// Pauses `scope` until `until` (extending, never shortening, a pause in force) and moves
    /// its queued jobs that would fall due earlier to `until`; returns how many moved. An
    /// endpoint's jobs are not moved (the store does not know which models share it): each is
    /// handed back to `until` by admission when it is claimed.
    pub async fn pause(
        &self,
        scope: PauseScope,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        on_backend!(self.pause(scope, until, reason, now))
    }

    /// The pauses still in force at `now`.
    pub async fn pauses_active(&self, now: DateTime<Utc>) -> StoreResult<Vec<Pause>> {
        on_backend!(self.pauses_active(now))
    }

    /// Counts one more rate-limited answer in a row for `scope` and returns the run's length.
    /// The count lives in the `pauses` row, so every process adds to the same run.
    pub async fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32> {
        on_backend!(self.pause_strike(scope, now))
    }

    /// Ends the run of rate-limited answers of `scope` (a call succeeded).
    pub async fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()> {
        on_backend!(self.pause_strikes_clear(scope))
    }

    /// Whether any of `models` has a queued job other than `except`: whether a pause of them
    /// would hold anything back.
    pub async fn jobs_queued_exist(&self, models: &[ModelId], except: JobId) -> StoreResult<bool> {
        on_backend!(self.jobs_queued_exist(models, except))
    }

    /// Reserves one request of weight `cost` (the request's share of the limit's period) on the
    /// rate limit `scope` (GCRA): returns when the request may start, `now` or later. The
    /// state lives in the database, so the limit holds across every process sharing it.
    pub async fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: std::time::Duration,
    ) -> StoreResult<DateTime<Utc>> {
        on_backend!(self.rate_reserve(scope, now, cost))
    }

    /// Reserves one request on every rate limit in `costs` (scope, the request's share of the
    /// limit's period) at the first time all of them have room, but only when that time is at
    /// most `max_wait` away; otherwise nothing is reserved and the answer says when the first
    /// free slot is. A job that cannot wait therefore never pushes the others back.
    pub async fn rate_reserve_within(
        &self,
        costs: &[(String, std::time::Duration)],
        now: DateTime<Utc>,
        max_wait: std::time::Duration,
    ) -> StoreResult<RateGrant> {
        let mut costs = costs.to_vec();
        // One lock order for every caller: no two reservations can deadlock.
        costs.sort_by(|a, b| a.0.cmp(&b.0));
        costs.dedup_by(|a, b| a.0 == b.0);
        on_backend!(self.rate_reserve_within(&costs, now, max_wait))
    }

    /// Moves the rate limit `scope`'s next free slot by `delta` (positive: a call cost more
    /// than was reserved; negative: a refund). A refund never frees time before `now`.
    pub async fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> StoreResult<()> {
        on_backend!(self.rate_adjust(scope, now, delta))
    }

    /// Ids of queued jobs due at `now`, oldest first (for the HTTP fan-out).
    pub async fn jobs_due_ids(&self, now: impl Into<Clock>, limit: i64) -> StoreResult<Vec<JobId>> {
        let now = now.into();
        on_backend!(self.jobs_due_ids(now, limit))
    }

    pub async fn job_get(&self, id: JobId) -> StoreResult<Option<Job>> {
        on_backend!(self.job_get(id))
    }

    /// One page of the matching jobs, by id.
    pub async fn jobs_list(&self, filter: &JobFilter, page: Page) -> StoreResult<Vec<Job>> {
        on_backend!(self.jobs_list(filter, page))
    }

    /// Counts of every matching job by status, computed in the database.
    pub async fn jobs_summary(&self, filter: &JobFilter) -> StoreResult<Summary> {
        on_backend!(self.jobs_summary(filter))
    }

    /// `processing` jobs whose lease expired before `now` (work for the next rescue).
    pub async fn jobs_count_expired(&self, now: impl Into<Clock>) -> StoreResult<i64> {
        let now = now.into();
        on_backend!(self.jobs_count_expired(now))
    }

    pub async fn job_attempts(&self, id: JobId) -> StoreResult<Vec<AttemptRecord>> {
        on_backend!(self.job_attempts(id))
    }

    // ---- retention

    /// What a prune with `cutoff` would remove now, counted without changing a row.
    pub async fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts> {
        on_backend!(self.prune_count(cutoff))
    }

    /// Removes at most `limit` rows of `target` older than `cutoff` with ids above `after`, in
    /// one short transaction; returns how many it changed and the greatest id it looked at
    /// (the `after` of the next batch), `None` when nothing is left. Never touches a job that
    /// is `queued` or `processing`, nor the attempts of one.
    pub async fn prune_batch(
        &self,
        target: PruneTarget,
        cutoff: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> StoreResult<PruneStep> {
        on_backend!(self.prune_batch(target, cutoff, after, limit))
    }

    /// One page of the matching responses, newest first.
    pub async fn responses_list(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> StoreResult<Vec<StoredResponse>> {
        on_backend!(self.responses_list(filter, page))
    }
}

/// What a prune removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PruneTarget {
    /// `job_attempts` rows finished before the cutoff, of jobs that are no longer live.
    Attempts,
    /// The raw provider body (`responses.raw`) of responses stored before the cutoff; the
    /// answer's text, tokens and cost stay.
    RawBodies,
    /// Finished jobs (`succeeded`, `failed`, `skipped`) that ended before the cutoff, with
    /// their response and attempts.
    Jobs,
}

/// Rows a prune would remove (or did), by target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneCounts {
    pub attempts: u64,
    pub raw_bodies: u64,
    /// Jobs, and in `responses` how many of them have a stored response.
    pub jobs: u64,
    pub responses: u64,
}

/// What one bounded prune transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// Rows deleted or cleared (for `Jobs`: jobs deleted).
    pub changed: u64,
    /// Responses deleted with those jobs (`Jobs` only).
    pub responses: u64,
    /// The greatest id this batch looked at; `None` when no candidate was left.
    pub last_id: Option<i64>,
}

/// An attempt's outcome as the columns both backends write.
pub(crate) struct OutcomeColumns<'a> {
    /// `succeeded`, `retry` or `failed`, as in `job_attempts.outcome`.
    pub name: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<&'a crate::domain::AttemptError>,
    pub http_status: Option<u16>,
    pub refund_attempt: bool,
}

impl<'a> OutcomeColumns<'a> {
    pub(crate) fn of(outcome: &'a crate::domain::Outcome) -> Self {
        use crate::domain::Outcome;
        match outcome {
            Outcome::Succeeded(response) => OutcomeColumns {
                name: "succeeded",
                next_attempt_at: None,
                error: None,
                http_status: response.http_status,
                refund_attempt: false,
            },
            Outcome::Retry {
                at,
                error,
                refund_attempt,
            } => OutcomeColumns {
                name: "retry",
                next_attempt_at: Some(*at),
                error: Some(error),
                http_status: error.http_status,
                refund_attempt: *refund_attempt,
            },
            Outcome::Failed(error) => OutcomeColumns {
                name: "failed",
                next_attempt_at: None,
                error: Some(error),
                http_status: error.http_status,
                refund_attempt: false,
            },
        }
    }
}

/// The message a job carries when it ends `skipped` because its prompt or model went away.
pub const SKIPPED_INACTIVE: &str =
    "skipped: its prompt or model was deactivated or deleted before it ran";
/// The message a job carries when a user cancels it.
pub const SKIPPED_CANCELLED: &str = "skipped: cancelled by a user";

/// The message recorded for an attempt whose worker vanished.
pub const ABANDONED: &str =
    "attempt abandoned: its lease expired (the worker stopped or lost the database)";
