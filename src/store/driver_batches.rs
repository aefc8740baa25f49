//! The store's part of provider Batch APIs: the local record of each provider batch and the
//! link from each job attempt to the batch it went into.
//!
//! Jobs gathered into a provider batch are `processing` in the attempt their batch claimed,
//! with a lease as long as the provider's window, until the provider accepts the batch: then
//! they are `submitted` (no lease; no rescue reads them) until their line is read. Either way
//! they are finished through the normal fenced [`super::Queue::jobs_finish`], so a result read
//! twice stores one answer. What is here keeps
//! the steps of a batch (written before the next depends on them) and lets any process carry
//! on a batch another one left: a row is taken by one process at a time, until its claim runs
//! out. Each method is atomic; methods that hand jobs back are fenced by (job, attempt).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::provider_batch::{
    LineResult, ProviderBatch, ProviderBatchPatch, ProviderBatchState,
};
use crate::domain::{ClaimedJob, JobId, ModelId};

/// Provider batches and their jobs.
pub trait ProviderBatches: Send + Sync {
    /// Claims up to `limit` `queued` jobs of `model` due at `now`, all of one batch key (that
    /// of the oldest due job), as a claim does (`processing`, attempt + 1, leased for
    /// `job_lease`; a job whose prompt or model went away ends `skipped`), and records them as
    /// a new provider batch in state `preparing`, taken by the caller until `now + hold`,
    /// with `token`: all in one transaction. `None` when no job was claimed.
    fn provider_batch_open(
        &self,
        model: ModelId,
        limit: i64,
        now: DateTime<Utc>,
        job_lease: Duration,
        hold: Duration,
        token: &str,
    ) -> impl Future<Output = StoreResult<Option<(ProviderBatch, Vec<ClaimedJob>)>>> + Send;

    /// Takes the open provider batch of one of `models` that is due soonest (its
    /// `next_poll_at` at or before `now`), untaken or whose taker's claim ran out, for the
    /// caller until `now + hold`. Concurrent takers never get the same batch.
    fn provider_batch_take(
        &self,
        models: &[ModelId],
        now: DateTime<Utc>,
        hold: Duration,
    ) -> impl Future<Output = StoreResult<Option<ProviderBatch>>> + Send;

    /// Applies `patch` to batch `id` if it is still in state `expected`; whether it applied.
    /// A patch that moves the batch to `submitted` moves its pending jobs from `processing` to
    /// `submitted` in the same transaction.
    fn provider_batch_update(
        &self,
        id: i64,
        expected: ProviderBatchState,
        patch: &ProviderBatchPatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The attempts of batch `id` still waiting for their line: linked, no outcome recorded,
    /// and their job still `processing` or `submitted` in that attempt. By job id.
    fn provider_batch_pending(
        &self,
        id: i64,
    ) -> impl Future<Output = StoreResult<Vec<(JobId, i32)>>> + Send;

    /// Records how lines ended (on the links of their attempts).
    fn provider_batch_record(
        &self,
        lines: &[LineResult],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Hands the `attempts` of batch `id` back to `queued` (due `now`, without spending the
    /// attempt, fenced), unlinks them and takes them off its request count (they were cut
    /// before it was sent); returns how many were handed back. Wakes workers.
    fn provider_batch_return(
        &self,
        id: i64,
        attempts: &[(JobId, i32)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Closes batch `id` (state `state`, `done` or `abandoned`, with `error`) if it is still
    /// in state `expected`, and hands back every attempt still pending in it, in one
    /// transaction; `None` when the state did not match, else how many jobs went back.
    fn provider_batch_close(
        &self,
        id: i64,
        expected: ProviderBatchState,
        state: ProviderBatchState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<u64>>> + Send;

    /// Cancels job `job` where it waits in a provider batch (`processing` or `submitted` in its
    /// linked attempt, no line read yet): `skipped`, its link marked `cancelled`, atomically.
    /// Returns the batch and how many of its attempts are still pending; `None` when the job
    /// waits in no batch.
    fn provider_batch_cancel_job(
        &self,
        job: JobId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<(ProviderBatch, u64)>>> + Send;

    /// One provider batch by its local id.
    fn provider_batch_get(
        &self,
        id: i64,
    ) -> impl Future<Output = StoreResult<Option<ProviderBatch>>> + Send;

    /// The `limit` newest provider batches, newest first.
    fn provider_batches_recent(
        &self,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<ProviderBatch>>> + Send;

    /// The provider's batch id of each of `jobs` that is `submitted` (its latest attempt linked
    /// to a batch the provider accepted, no line read yet). By job id.
    fn provider_batch_ids_of_jobs(
        &self,
        jobs: &[JobId],
    ) -> impl Future<Output = StoreResult<Vec<(JobId, String)>>> + Send;

    /// The provider batch job `job` is waiting in (its latest attempt is linked to an open
    /// batch and has no outcome yet), if any.
    fn provider_batch_of_job(
        &self,
        job: JobId,
    ) -> impl Future<Output = StoreResult<Option<ProviderBatch>>> + Send;
}
