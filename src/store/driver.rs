//! The queue's contract: what every backend guarantees, written down once.
//!
//! A backend is a [`QueueDriver`]: the union of a few traits, one per concern, so that each
//! backend implements each concern in a file of its own. Each method is documented here and
//! only here, with what it guarantees; the backends' code says how. The conformance suite
//! (`tests/store_conformance.rs`) is generic over [`QueueDriver`] and runs on both backends.
//!
//! Words used below:
//! - *atomic*: the change commits whole or not at all (one statement or one transaction).
//! - *fenced*: a write made for an attempt applies only while the job is still `processing`
//!   in that attempt (`attempt_count = attempt`); a stale attempt changes nothing.
//! - *idempotent*: repeating the call with the same input leaves the same rows.
//! - *clock*: a [`Clock`] is the instant a statement acts at; [`Clock::Database`] is the
//!   database's own `now()` (this machine's on SQLite), shared by every process.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::workers::{WorkerId, Workers};
use super::{
    AttemptRecord, Backend, ClaimOne, ClaimSize, Clock, EnqueueOptions, EnqueueReport, JobFilter,
    JobSelector, ModelPatch, NewModel, NewPrompt, Page, Pause, PauseScope, PromptPatch,
    PruneCounts, PruneStep, PruneTarget, RateGrant, Rescued, ResponseFilter, StoreResult,
    StoredResponse,
};
use crate::domain::stats::{BatchSummary, DueStats, JobStats, ModelWindow, QueueFigures};
use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, Model, ModelId, PlannedBatch, Prompt, PromptId,
    ScheduledPrompt, Summary,
};

/// A backend of the queue: every concern below, on one database.
pub trait QueueDriver:
    Lifecycle
    + Catalog
    + Queue
    + Jobs
    + Pacing
    + Retention
    + Figures
    + Workers
    + super::driver_batches::ProviderBatches
    + Clone
    + 'static
{
}

impl<T> QueueDriver for T where
    T: Lifecycle
        + Catalog
        + Queue
        + Jobs
        + Pacing
        + Retention
        + Figures
        + Workers
        + super::driver_batches::ProviderBatches
        + Clone
        + 'static
{
}

/// Schema and connection.
pub trait Lifecycle: Send + Sync {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Applies the embedded migrations not applied yet, then gives every prompt without a
    /// version its current text as version. Idempotent; safe to run from several processes.
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// The database's clock now (this machine's on SQLite): the "now" of due-ness, shared by
    /// every process whatever their own clocks say.
    fn clock_now(&self) -> impl Future<Output = StoreResult<DateTime<Utc>>> + Send;

    /// Answers when the database answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Closes the pools; calls after it fail with [`super::StoreError::Unavailable`].
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Models and prompts. Deletes are soft (history stays); every write is atomic, and a write
/// that deactivates, deletes or unlinks skips the queued jobs it strands in the same
/// transaction.
pub trait Catalog: Send + Sync {
    /// Creates a model; a taken name is [`super::StoreError::Conflict`].
    fn model_insert(
        &self,
        new: &NewModel,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Model>> + Send;

    /// A model not deleted, by id.
    fn model_get(&self, id: ModelId) -> impl Future<Output = StoreResult<Option<Model>>> + Send;

    /// Every model not deleted, by id.
    fn model_list(&self) -> impl Future<Output = StoreResult<Vec<Model>>> + Send;

    /// Applies a patch; deactivating a model skips its queued jobs in the same transaction.
    /// `None` when no such model.
    fn model_update(
        &self,
        id: ModelId,
        patch: &ModelPatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<Model>>> + Send;

    /// Soft-deletes a model (its history stays) and skips its queued jobs; `false` when no
    /// such model.
    fn model_delete(
        &self,
        id: ModelId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Creates a prompt and its first version; an unknown model is
    /// [`super::StoreError::NotFound`].
    fn prompt_insert(
        &self,
        new: &NewPrompt,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Prompt>> + Send;

    /// A prompt not deleted, by id.
    fn prompt_get(&self, id: PromptId) -> impl Future<Output = StoreResult<Option<Prompt>>> + Send;

    /// Every prompt not deleted, by id.
    fn prompt_list(&self) -> impl Future<Output = StoreResult<Vec<Prompt>>> + Send;

    /// Applies a patch (a new text is a new version; jobs already queued keep theirs);
    /// deactivating a prompt or unlinking a model skips the stranded queued jobs in the same
    /// transaction.
    fn prompt_update(
        &self,
        id: PromptId,
        patch: &PromptPatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<Prompt>>> + Send;

    /// Soft-deletes a prompt (its history stays) and skips its queued jobs.
    fn prompt_delete(
        &self,
        id: PromptId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The active prompts with what due-ness needs.
    fn prompts_schedulable(&self)
    -> impl Future<Output = StoreResult<Vec<ScheduledPrompt>>> + Send;
}

/// A job's way through the queue. Every method is atomic; every method taking attempts is
/// fenced by `(job id, attempt)`.
pub trait Queue: Send + Sync {
    /// Creates every job of the planned batches (active prompts × their active models ×
    /// runs) and, with `mark_prompts`, records the batch as the latest run of the prompts that
    /// have an active model (one without stays due, so its batch is not used up), in one
    /// transaction. Idempotent: jobs are unique by `(prompt, model, run, batch)` and inserted
    /// `ON CONFLICT DO NOTHING`; concurrent enqueues of one batch create each job once, and
    /// `jobs_created` counts the rows really inserted. Each job snapshots the prompt's
    /// current version and the model's generation params. Wakes sleeping workers.
    fn jobs_enqueue(
        &self,
        plan: &[PlannedBatch],
        options: EnqueueOptions,
    ) -> impl Future<Output = StoreResult<EnqueueReport>> + Send;

    /// Claims up to `size` `queued` jobs due at `now` (see [`ClaimSize`]: the part claimed
    /// ahead only while enough others stay due), oldest due first (then by id):
    /// `processing`, attempt + 1, leased until `now + lease`. Concurrent claimers never get
    /// the same job. A picked job whose prompt or model is no longer active ends `skipped`
    /// instead and is not returned. The claim carries the prompt version and generation
    /// params snapshotted at enqueue, not the prompt's or model's current ones. Jobs of the
    /// models in `except` (those this process cannot call: a key it lacks) are not picked at
    /// all: they stay `queued` with no attempt spent, and do not hold back the jobs behind them.
    /// The claimed jobs carry `worker` (who holds them; see [`super::workers`]).
    fn jobs_claim_except(
        &self,
        size: ClaimSize,
        now: impl Into<Clock> + Send,
        lease: Duration,
        except: &[ModelId],
        worker: Option<WorkerId>,
    ) -> impl Future<Output = StoreResult<Vec<ClaimedJob>>> + Send;

    /// [`Queue::jobs_claim_except`] of every model's jobs.
    fn jobs_claim(
        &self,
        limit: i64,
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<Vec<ClaimedJob>>> + Send {
        self.jobs_claim_except(ClaimSize::exactly(limit), now, lease, &[], None)
    }

    /// Claims one job by id if it is `queued`, due or not (an explicit call runs it now);
    /// of concurrent claims of one job exactly one gets it.
    fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<ClaimOne>> + Send;

    /// Finishes attempts, each fenced, in one transaction, answering in input order. A
    /// success stores its one response (`responses.job_id` is unique) with the status
    /// change; a stale finish changes nothing and says so (`applied: false`). Rows are dated
    /// `now`; a retry falls due `now` plus the delay its worker chose
    /// (`Retry::at - Finish::finished_at`, at most a year), so the worker's clock never
    /// dates a row. A refunded retry does not spend an attempt.
    fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<Vec<FinishResult>>> + Send;

    /// Moves `processing` jobs whose lease expired before `now` back to `queued` (due now),
    /// or to `failed` once their attempts are spent, recording each abandoned attempt; by
    /// job id. Concurrent rescuers rescue each job once.
    fn jobs_rescue_expired(
        &self,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<Vec<Rescued>>> + Send;

    /// Extends the leases of the attempts still running to `now + lease`; returns the
    /// attempts that still own their job (a stale one is not among them).
    fn jobs_heartbeat(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<Vec<(JobId, i32)>>> + Send;

    /// Hands claimed attempts back to `queued`, due `delay` after `now`, without spending an
    /// attempt (shutdown, or a limit that asks to wait); returns how many. Wakes workers.
    fn jobs_release(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock> + Send,
        delay: Duration,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Reads of jobs and responses, and the user's actions on jobs.
pub trait Jobs: Send + Sync {
    /// `queued → skipped` for the selected jobs, atomically; returns how many changed.
    fn jobs_cancel(
        &self,
        selector: &JobSelector,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// `failed | skipped → queued`, due `now`, with `extra_attempts` more attempts,
    /// atomically; returns how many changed. Wakes workers.
    fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Ids of `queued` jobs due at `now`, oldest due first, but none of the models in
    /// `except` (for the HTTP fan-out, which does not send what cannot run).
    fn jobs_due_ids(
        &self,
        now: impl Into<Clock> + Send,
        limit: i64,
        except: &[ModelId],
    ) -> impl Future<Output = StoreResult<Vec<JobId>>> + Send;

    fn job_get(&self, id: JobId) -> impl Future<Output = StoreResult<Option<Job>>> + Send;

    /// One page of the matching jobs, by id.
    fn jobs_list(
        &self,
        filter: &JobFilter,
        page: Page,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;

    /// Counts of every matching job by status, computed in the database.
    fn jobs_summary(&self, filter: &JobFilter)
    -> impl Future<Output = StoreResult<Summary>> + Send;

    /// `processing` jobs whose lease expired before `now` (work for the next rescue).
    fn jobs_count_expired(
        &self,
        now: impl Into<Clock> + Send,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// A job's recorded attempts, in attempt order.
    fn job_attempts(
        &self,
        id: JobId,
    ) -> impl Future<Output = StoreResult<Vec<AttemptRecord>>> + Send;

    /// Whether any of `models` has a queued job other than `except`: whether a pause of them
    /// would hold anything back.
    fn jobs_queued_exist(
        &self,
        models: &[ModelId],
        except: JobId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// One page of the matching responses, newest first.
    fn responses_list(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> impl Future<Output = StoreResult<Vec<StoredResponse>>> + Send;
}

/// Pauses and rate reservations: state in the database, so they hold across every process
/// sharing it.
pub trait Pacing: Send + Sync {
    /// Pauses `scope` until `until` (extending, never shortening, a pause in force) and moves
    /// its queued jobs that would fall due earlier to `until`, atomically; returns how many
    /// moved. An endpoint's jobs are not moved (the store does not know which models share
    /// it): each is handed back to `until` by admission when it is claimed.
    fn pause(
        &self,
        scope: PauseScope,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The pauses still in force at `now`, by scope.
    fn pauses_active(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<Pause>>> + Send;

    /// Counts one more rate-limited answer in a row for `scope` and returns the run's length.
    /// The count lives in the `pauses` row, so every process adds to the same run.
    fn pause_strike(
        &self,
        scope: PauseScope,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<i32>> + Send;

    /// Ends the run of rate-limited answers of `scope` (a call succeeded).
    fn pause_strikes_clear(
        &self,
        scope: PauseScope,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reserves one request of weight `cost` (the request's share of the limit's period) on
    /// the rate limit `scope` (GCRA), atomically: returns when the request may start, `now`
    /// or later.
    fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: Duration,
    ) -> impl Future<Output = StoreResult<DateTime<Utc>>> + Send;

    /// Reserves one request on every rate limit in `costs` (scope, the request's share of
    /// its period) at the first time all of them have room, but only when that time is at
    /// most `max_wait` away; otherwise nothing is reserved and the answer says when the first
    /// free slot is, so a job that cannot wait never pushes the others back. Scopes are
    /// locked in one order (by scope, each once) whatever the caller's: no two reservations
    /// deadlock.
    fn rate_reserve_within(
        &self,
        costs: &[(String, Duration)],
        now: DateTime<Utc>,
        max_wait: Duration,
    ) -> impl Future<Output = StoreResult<RateGrant>> + Send;

    /// Moves the rate limit `scope`'s next free slot by `delta` (positive: a call cost more
    /// than was reserved; negative: a refund). A refund never frees time before `now`.
    fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Retention in bounded steps, so that the queue keeps running while history is pruned.
pub trait Retention: Send + Sync {
    /// What a prune with `cutoff` would remove now, counted without changing a row.
    fn prune_count(
        &self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<PruneCounts>> + Send;

    /// Removes at most `limit` rows of `target` older than `cutoff` with ids above `after`,
    /// in one short transaction; returns how many it changed and the greatest id it looked
    /// at (the `after` of the next batch), `None` when nothing is left. Never touches a job
    /// that is `queued` or `processing`, nor the attempts of one, even one that became live
    /// while the batch ran.
    fn prune_batch(
        &self,
        target: PruneTarget,
        cutoff: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<PruneStep>> + Send;
}

/// Read-only aggregates, computed in the database; nothing here writes.
pub trait Figures: Send + Sync {
    /// Per-model counts, token and cost sums, latency percentiles of the matching jobs.
    fn jobs_stats(&self, filter: &JobFilter) -> impl Future<Output = StoreResult<JobStats>> + Send;

    /// The `limit` greatest batch keys (the newest batches: keys of one schedule sort in time
    /// order) with their jobs' counts by status, newest first.
    fn batches_recent(
        &self,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<BatchSummary>>> + Send;

    /// Per model, counts by status and latency percentiles of the jobs of `batch_keys`, by
    /// model id. Models without jobs in those batches are left out.
    fn models_window(
        &self,
        batch_keys: &[String],
    ) -> impl Future<Output = StoreResult<Vec<ModelWindow>>> + Send;

    /// The queue's gauges at `now` in one statement: counts by status, due jobs and the oldest
    /// of them from the due jobs alone, expired leases from the running jobs alone (PostgreSQL
    /// lists both apart; SQLite has a partial index of each).
    fn queue_figures(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<QueueFigures>> + Send;

    /// Queued jobs due at `now` and when the oldest of them became due.
    fn jobs_due_stats(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<DueStats>> + Send;
}
