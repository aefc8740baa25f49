//! [`Store`]: the one handle the rest of promptq holds, whichever database is behind it.
//!
//! Every queue operation is a one-line delegation to the backend's [`QueueDriver`]
//! implementation; what each one guarantees is documented once, on the trait
//! ([`super::driver`]). What is here besides is what only the handle can do: open a URL, and
//! the few PostgreSQL-only tools (LISTEN, administrative statements, WAL position).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::driver::{Catalog, Figures, Jobs, Lifecycle, Pacing, Queue, Retention};
use super::driver_alerts::{Alert, AlertCounts, Alerts, NewAlert};
use super::driver_batches::ProviderBatches;
use super::driver_insights::Insights;
use super::driver_spend::{ModelSpend, Spending, TokenAverage};
use super::workers::{NewWorker, Worker, WorkerId, Workers};
use super::{
    AttemptRecord, Backend, ClaimOne, ClaimSize, Clock, EnqueueOptions, EnqueueReport, JobFilter,
    JobSelector, ModelPatch, NewModel, NewPrompt, Page, Pause, PauseScope, PromptPatch,
    PruneCounts, PruneStep, PruneTarget, RateGrant, Readers, Rescued, ResponseFilter, StoreError,
    StoreResult, StoredResponse, location, postgres, sqlite,
};
use crate::domain::provider_batch::{
    LineResult, ProviderBatch, ProviderBatchPatch, ProviderBatchState,
};
use crate::domain::stats::{BatchSummary, DueStats, JobStats, ModelWindow, QueueFigures};
use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, Model, ModelId, PlannedBatch, Prompt, PromptId,
    ScheduledPrompt, Summary,
};
use crate::insights::{
    AnalysedAnswer, Analysis, AnswerText, NewTracker, Progress, Tracker, TrackerId,
};

/// The queue on one of its two databases.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

/// Calls the same driver method on whichever backend this store is.
macro_rules! on_backend {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

/// Methods that delegate to the driver trait `$trait`, with its signature and its docs.
macro_rules! delegate {
    ($trait:ident: $(fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        impl Store {
            $(
                #[doc = concat!("See [`", stringify!($trait), "::", stringify!($method), "`].")]
                pub async fn $method(&self $(, $arg: $ty)*) -> $out {
                    on_backend!(self.$method($($arg),*))
                }
            )*
        }
    };
}

impl Store {
    /// Opens (and for SQLite creates) the database at `url` without migrating it. A failure
    /// names the database (never its password) and the cause; a refused PostgreSQL is
    /// reported at once.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        Store::connect_for(url, None, Readers::One).await
    }

    /// [`Store::connect`] for a process that runs `readers` reads side by side, where
    /// `direct` (`DATABASE_DIRECT_URL`) reaches the PostgreSQL server that `url` reaches
    /// through a transaction-mode pooler.
    pub async fn connect_for(
        url: &str,
        direct: Option<&str>,
        readers: Readers,
    ) -> StoreResult<Store> {
        let named = |err| location::named(&location::describe(url), err);
        if let Some(path) = url.strip_prefix("sqlite:") {
            location::check_sqlite(path)?;
            Ok(Store::Sqlite(
                sqlite::SqliteStore::open(path, readers)
                    .await
                    .map_err(named)?,
            ))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            location::probe_postgres(url).await?;
            Ok(Store::Postgres(
                postgres::PostgresStore::connect(url, direct)
                    .await
                    .map_err(named)?,
            ))
        } else {
            Err(StoreError::InvalidUrl(
                "DATABASE_URL must start with sqlite: or postgres://".to_owned(),
            ))
        }
    }

    /// Opens the database and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Store> {
        Store::open_for(url, None, Readers::One).await
    }

    /// [`Store::open`] with the readers and the direct URL of [`Store::connect_for`].
    pub async fn open_for(url: &str, direct: Option<&str>, readers: Readers) -> StoreResult<Store> {
        let store = Store::connect_for(url, direct, readers).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// The time now on the database's clock, the one the queue's statements judge by: the
    /// clock every time this process writes to shared rows (rate reservations, pauses, due
    /// times) is taken from. On PostgreSQL this process's clock moved by its offset from the
    /// server's, as last read; on SQLite, whose processes share one machine, that machine's.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Store::Sqlite(_) => Utc::now(),
            Store::Postgres(store) => store.now(),
        }
    }

    /// Wakes `notify` whenever another process may have made work, until `stop`: on
    /// PostgreSQL an announcement (LISTEN/NOTIFY), on SQLite any commit to the file by another
    /// connection (`PRAGMA data_version`, a look every 100 ms).
    pub fn spawn_job_listener(
        &self,
        notify: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Store::Sqlite(store) => Some(store.spawn_change_watch(notify, stop)),
            Store::Postgres(store) => store.spawn_job_listener(notify, stop),
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

    /// The process id of a backend serving this store (PostgreSQL), to find its server's
    /// processes on this machine.
    pub async fn backend_pid(&self) -> StoreResult<Option<u32>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(store) => Ok(u32::try_from(store.backend_pid().await?).ok()),
        }
    }

    /// See [`Queue::jobs_claim`].
    pub async fn jobs_claim(
        &self,
        limit: i64,
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        self.jobs_claim_except(ClaimSize::exactly(limit), now, lease, &[], None)
            .await
    }

    /// See [`Queue::jobs_claim_except`].
    pub async fn jobs_claim_except(
        &self,
        size: ClaimSize,
        now: impl Into<Clock>,
        lease: Duration,
        except: &[ModelId],
        worker: Option<WorkerId>,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now.into();
        on_backend!(self.jobs_claim_except(size, now, lease, except, worker))
    }

    /// See [`Queue::job_claim`].
    pub async fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<ClaimOne> {
        let now = now.into();
        on_backend!(self.job_claim(id, now, lease))
    }

    /// See [`Queue::jobs_finish`].
    pub async fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: impl Into<Clock>,
    ) -> StoreResult<Vec<FinishResult>> {
        let now = now.into();
        on_backend!(self.jobs_finish(finishes, now))
    }

    /// See [`Queue::jobs_rescue_expired`].
    pub async fn jobs_rescue_expired(&self, now: impl Into<Clock>) -> StoreResult<Vec<Rescued>> {
        let now = now.into();
        on_backend!(self.jobs_rescue_expired(now))
    }

    /// See [`Queue::jobs_heartbeat`].
    pub async fn jobs_heartbeat(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock>,
        lease: Duration,
    ) -> StoreResult<Vec<(JobId, i32)>> {
        let now = now.into();
        on_backend!(self.jobs_heartbeat(attempts, now, lease))
    }

    /// See [`Queue::jobs_release`].
    pub async fn jobs_release(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock>,
        delay: Duration,
    ) -> StoreResult<u64> {
        let now = now.into();
        on_backend!(self.jobs_release(attempts, now, delay))
    }

    /// See [`Jobs::jobs_retry`].
    pub async fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: impl Into<Clock>,
    ) -> StoreResult<u64> {
        let now = now.into();
        on_backend!(self.jobs_retry(selector, extra_attempts, now))
    }

    /// See [`Jobs::jobs_due_ids`].
    pub async fn jobs_due_ids(
        &self,
        now: impl Into<Clock>,
        limit: i64,
        except: &[ModelId],
    ) -> StoreResult<Vec<JobId>> {
        let now = now.into();
        on_backend!(self.jobs_due_ids(now, limit, except))
    }

    /// See [`Jobs::jobs_count_expired`].
    pub async fn jobs_count_expired(&self, now: impl Into<Clock>) -> StoreResult<i64> {
        let now = now.into();
        on_backend!(self.jobs_count_expired(now))
    }

    /// See [`Figures::models_window`].
    pub async fn models_window(&self, batch_keys: &[String]) -> StoreResult<Vec<ModelWindow>> {
        if batch_keys.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self.models_window(batch_keys))
    }
}

delegate! { Lifecycle:
    fn migrate(&self) -> StoreResult<()>;
    fn clock_now(&self) -> StoreResult<DateTime<Utc>>;
    fn ping(&self) -> StoreResult<()>;
    fn close(&self) -> ();
}

delegate! { Catalog:
    fn model_insert(&self, new: &NewModel, now: DateTime<Utc>) -> StoreResult<Model>;
    fn model_get(&self, id: ModelId) -> StoreResult<Option<Model>>;
    fn model_list(&self) -> StoreResult<Vec<Model>>;
    fn model_update(&self, id: ModelId, patch: &ModelPatch, now: DateTime<Utc>)
        -> StoreResult<Option<Model>>;
    fn model_delete(&self, id: ModelId, now: DateTime<Utc>) -> StoreResult<bool>;
    fn prompt_insert(&self, new: &NewPrompt, now: DateTime<Utc>) -> StoreResult<Prompt>;
    fn prompt_get(&self, id: PromptId) -> StoreResult<Option<Prompt>>;
    fn prompt_list(&self) -> StoreResult<Vec<Prompt>>;
    fn prompt_update(&self, id: PromptId, patch: &PromptPatch, now: DateTime<Utc>)
        -> StoreResult<Option<Prompt>>;
    fn prompt_delete(&self, id: PromptId, now: DateTime<Utc>) -> StoreResult<bool>;
    fn prompts_schedulable(&self) -> StoreResult<Vec<ScheduledPrompt>>;
}

delegate! { Queue:
    fn jobs_enqueue(&self, plan: &[PlannedBatch], options: EnqueueOptions)
        -> StoreResult<EnqueueReport>;
}

delegate! { Jobs:
    fn jobs_cancel(&self, selector: &JobSelector, now: DateTime<Utc>) -> StoreResult<u64>;
    fn job_get(&self, id: JobId) -> StoreResult<Option<Job>>;
    fn jobs_list(&self, filter: &JobFilter, page: Page) -> StoreResult<Vec<Job>>;
    fn jobs_summary(&self, filter: &JobFilter) -> StoreResult<Summary>;
    fn job_attempts(&self, id: JobId) -> StoreResult<Vec<AttemptRecord>>;
    fn jobs_queued_exist(&self, models: &[ModelId], except: JobId) -> StoreResult<bool>;
    fn responses_list(&self, filter: &ResponseFilter, page: Page)
        -> StoreResult<Vec<StoredResponse>>;
}

delegate! { Pacing:
    fn pause(&self, scope: PauseScope, until: DateTime<Utc>, reason: &str, now: DateTime<Utc>)
        -> StoreResult<u64>;
    fn pauses_active(&self, now: DateTime<Utc>) -> StoreResult<Vec<Pause>>;
    fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32>;
    fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()>;
    fn rate_reserve(&self, scope: &str, now: DateTime<Utc>, cost: Duration)
        -> StoreResult<DateTime<Utc>>;
    fn rate_reserve_within(&self, costs: &[(String, Duration)], now: DateTime<Utc>,
        max_wait: Duration) -> StoreResult<RateGrant>;
    fn rate_adjust(&self, scope: &str, now: DateTime<Utc>, delta: chrono::TimeDelta)
        -> StoreResult<()>;
}

delegate! { Retention:
    fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts>;
    fn prune_batch(&self, target: PruneTarget, cutoff: DateTime<Utc>, after: i64, limit: i64)
        -> StoreResult<PruneStep>;
}

delegate! { Figures:
    fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats>;
    fn batches_recent(&self, limit: i64) -> StoreResult<Vec<BatchSummary>>;
    fn queue_figures(&self, now: DateTime<Utc>) -> StoreResult<QueueFigures>;
    fn jobs_due_stats(&self, now: DateTime<Utc>) -> StoreResult<DueStats>;
}

delegate! { Workers:
    fn worker_register(&self, new: &NewWorker, now: Clock) -> StoreResult<WorkerId>;
    fn worker_beat(&self, id: WorkerId, running: usize, held: usize, now: Clock)
        -> StoreResult<WorkerId>;
    fn worker_stop(&self, id: WorkerId, now: Clock) -> StoreResult<()>;
    fn workers_live(&self, now: Clock, within: Duration) -> StoreResult<Vec<Worker>>;
    fn jobs_rescue_orphaned(&self, now: Clock) -> StoreResult<Vec<Rescued>>;
}

delegate! { Spending:
    fn spend_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<ModelSpend>>;
    fn token_averages(&self, models: &[ModelId], since: DateTime<Utc>)
        -> StoreResult<Vec<TokenAverage>>;
}

delegate! { ProviderBatches:
    fn provider_batch_open(&self, model: ModelId, limit: i64, now: DateTime<Utc>,
        job_lease: Duration, hold: Duration, token: &str)
        -> StoreResult<Option<(ProviderBatch, Vec<ClaimedJob>)>>;
    fn provider_batch_take(&self, models: &[ModelId], now: DateTime<Utc>, hold: Duration)
        -> StoreResult<Option<ProviderBatch>>;
    fn provider_batch_update(&self, id: i64, expected: ProviderBatchState,
        patch: &ProviderBatchPatch, now: DateTime<Utc>) -> StoreResult<bool>;
    fn provider_batch_pending(&self, id: i64) -> StoreResult<Vec<(JobId, i32)>>;
    fn provider_batch_record(&self, lines: &[LineResult]) -> StoreResult<()>;
    fn provider_batch_return(&self, id: i64, attempts: &[(JobId, i32)], now: DateTime<Utc>)
        -> StoreResult<u64>;
    fn provider_batch_close(&self, id: i64, expected: ProviderBatchState,
        state: ProviderBatchState, error: Option<&str>, now: DateTime<Utc>)
        -> StoreResult<Option<u64>>;
    fn provider_batch_cancel_job(&self, job: JobId, now: DateTime<Utc>)
        -> StoreResult<Option<(ProviderBatch, u64)>>;
    fn provider_batch_get(&self, id: i64) -> StoreResult<Option<ProviderBatch>>;
    fn provider_batches_recent(&self, limit: i64) -> StoreResult<Vec<ProviderBatch>>;
    fn provider_batch_ids_of_jobs(&self, jobs: &[JobId]) -> StoreResult<Vec<(JobId, String)>>;
    fn provider_batch_of_job(&self, job: JobId) -> StoreResult<Option<ProviderBatch>>;
}

delegate! { Insights:
    fn tracker_insert(&self, new: &NewTracker, now: DateTime<Utc>) -> StoreResult<Tracker>;
    fn tracker_get(&self, id: TrackerId) -> StoreResult<Option<Tracker>>;
    fn tracker_list(&self) -> StoreResult<Vec<Tracker>>;
    fn tracker_update(&self, id: TrackerId, new: &NewTracker, now: DateTime<Utc>)
        -> StoreResult<Option<Tracker>>;
    fn tracker_delete(&self, id: TrackerId) -> StoreResult<bool>;
    fn answers_unanalysed(&self, tracker: TrackerId, version: i64, after: i64, limit: i64)
        -> StoreResult<Vec<AnswerText>>;
    fn analyses_write(&self, tracker: TrackerId, version: i64, analyses: &[Analysis])
        -> StoreResult<u64>;
    fn analysis_progress(&self, tracker: TrackerId, version: i64) -> StoreResult<Progress>;
    fn analysis_watermark(&self, tracker: TrackerId, version: i64) -> StoreResult<Option<i64>>;
    fn batch_answered_latest(&self, before: Option<&str>) -> StoreResult<Option<String>>;
    fn batch_analysed(&self, tracker: TrackerId, version: i64, batch_key: &str)
        -> StoreResult<Vec<AnalysedAnswer>>;
}

delegate! { Alerts:
    fn alert_insert(&self, new: &NewAlert, now: DateTime<Utc>) -> StoreResult<Option<i64>>;
    fn alerts_claim(&self, limit: i64, now: DateTime<Utc>, lease: Duration)
        -> StoreResult<Vec<Alert>>;
    fn alert_delivered(&self, id: i64, attempt: i32, now: DateTime<Utc>) -> StoreResult<bool>;
    fn alert_retry(&self, id: i64, attempt: i32, at: DateTime<Utc>, error: &str)
        -> StoreResult<bool>;
    fn alert_failed(&self, id: i64, attempt: i32, error: &str) -> StoreResult<bool>;
    fn alerts_count(&self) -> StoreResult<AlertCounts>;
    fn alerts_recent(&self, limit: i64) -> StoreResult<Vec<Alert>>;
}
