//! Running and acting on jobs: one job's attempt for `POST /api/jobs/process`, the worker
//! pool, status and detail, retry and cancel.

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::provider_batch::ProviderBatch;
use crate::domain::{BlockedModel, ClaimedJob, Finish, Job, JobId, JobStatus, Outcome, Summary};
use crate::engine::attempt::{self, Ended};
use crate::engine::budget::SpendToday;
use crate::engine::worker::{PoolOptions, run_pool};
use crate::store::workers::{WORKER_SILENT_AFTER, WorkerTotals};
use crate::store::{
    AttemptRecord, ClaimOne, Clock, JobFilter, JobSelector, Page, ResponseFilter, StoredResponse,
};

use super::{App, AppError, AppResult, check_page};

/// The answer of `POST /api/jobs/process`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReport {
    pub success: bool,
    pub job_id: JobId,
    pub status: JobStatus,
    /// The stored response's id, for a success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// The newest provider batches a status looks at for the open ones.
const OPEN_BATCHES_SHOWN: i64 = 50;

/// A job query as the status endpoint and the CLI take it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusQuery {
    pub filter: JobFilter,
    pub page: Page,
}

/// Summary counts of every matching job and one page of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub success: bool,
    pub summary: Summary,
    pub jobs: Vec<Job>,
    /// `processing` jobs whose lease has expired (waiting for a rescue).
    pub expired_leases: i64,
    /// Providers and models paused now (rate limited, or an account error), with why.
    pub pauses: Vec<crate::store::Pause>,
    /// Active models this process cannot call (a key it lacks, a daily budget spent): their
    /// jobs wait unclaimed.
    pub blocked: Vec<BlockedModel>,
    /// The workers heard from lately: their slots, calls in flight and claimed jobs waiting
    /// for a slot (a `processing` job may be either).
    pub workers: WorkerTotals,
    /// What today's answers cost, by model, beside the daily budget.
    pub spent_today: SpendToday,
    /// Provider batches still open (being sent, or waiting for the provider's answer); their
    /// jobs are `processing` while the batch is sent, then `submitted` until the answers are
    /// read.
    pub provider_batches: Vec<ProviderBatch>,
}

/// One job with its attempts and its stored response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub job: Job,
    pub attempts: Vec<AttemptRecord>,
    pub response: Option<StoredResponse>,
    /// The provider batch the job waits in (`processing` while the batch is sent, `submitted`
    /// once the provider accepted it, until its answer is read).
    pub provider_batch: Option<ProviderBatch>,
}

impl App {
    // ---- running one job (serverless dispatch)

    /// Claims one queued job, runs its model call, stores the outcome.
    pub async fn process_job(&self, id: JobId) -> AppResult<ProcessReport> {
        self.refuse_blocked(id).await?;
        let claimed = match self
            .store()
            .job_claim(id, Clock::Database, self.config().job_lease)
            .await?
        {
            ClaimOne::Claimed(claimed) => {
                self.metrics()
                    .claimed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                claimed
            }
            ClaimOne::NotFound => return Err(AppError::NotFound(format!("job {id} not found"))),
            ClaimOne::NotClaimable(status) => {
                return Err(AppError::Conflict(format!(
                    "job {id} is {status}, not queued"
                )));
            }
            ClaimOne::Skipped => {
                return Ok(ProcessReport {
                    success: true,
                    job_id: id,
                    status: JobStatus::Skipped,
                    entity_id: None,
                    error_message: Some(crate::store::SKIPPED_INACTIVE.to_owned()),
                });
            }
        };
        let runtime = self.runtime();
        let lease_lost = attempt::beat_alone(runtime, &claimed);
        match attempt::run(runtime, &claimed, lease_lost, || {}).await {
            Ended::Finished(finish) => self.finish_one(&claimed, finish).await,
            Ended::HandedBack(at) => {
                attempt::hand_back(runtime, &claimed, at).await?;
                Ok(ProcessReport {
                    success: true,
                    job_id: id,
                    status: JobStatus::Queued,
                    entity_id: None,
                    error_message: Some(format!(
                        "model {} is rate limited or paused; the job is due again at {}",
                        claimed.model.name,
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )),
                })
            }
        }
    }

    /// A job of a model this process cannot call is not claimed (no attempt is spent): 409,
    /// saying what is missing.
    async fn refuse_blocked(&self, id: JobId) -> AppResult<()> {
        let blocked = self.runtime().blocked_models().await?;
        if blocked.is_empty() {
            return Ok(());
        }
        let Some(job) = self.store().job_get(id).await? else {
            return Ok(());
        };
        match blocked.iter().find(|b| b.model_id == job.model_id) {
            Some(b) if job.status == JobStatus::Queued => Err(AppError::Conflict(format!(
                "job {id} waits: model '{}' cannot run here ({}); it stays queued until it can",
                b.model_name, b.reason
            ))),
            _ => Ok(()),
        }
    }

    /// The active models this process cannot call, each with its `queued` jobs among those
    /// `filter` matches.
    pub async fn blocked(&self, filter: &JobFilter) -> AppResult<Vec<BlockedModel>> {
        let blocked = self.runtime().blocked_models().await?;
        let mut out = Vec::with_capacity(blocked.len());
        for model in blocked.iter() {
            let mut queued = 0;
            let wanted = filter.model_id.is_none_or(|id| id == model.model_id)
                && filter.status.is_none_or(|s| s == JobStatus::Queued);
            if wanted {
                let only = JobFilter {
                    model_id: Some(model.model_id),
                    status: Some(JobStatus::Queued),
                    ..filter.clone()
                };
                queued = self.store().jobs_summary(&only).await?.queued;
            }
            out.push(BlockedModel {
                queued,
                ..model.clone()
            });
        }
        Ok(out)
    }

    async fn finish_one(&self, claimed: &ClaimedJob, finish: Finish) -> AppResult<ProcessReport> {
        let error_message = match &finish.outcome {
            Outcome::Succeeded(_) => None,
            Outcome::Retry { error, .. } | Outcome::Failed(error) => Some(error.message.clone()),
        };
        let result = attempt::record(self.runtime(), std::slice::from_ref(&finish))
            .await?
            .pop()
            .ok_or_else(|| AppError::Internal("finish returned no result".into()))?;
        if !result.applied {
            return Err(AppError::Conflict(format!(
                "job {} changed while attempt {} ran (its lease expired or it was cancelled); the result was discarded",
                claimed.job.id, claimed.attempt
            )));
        }
        Ok(ProcessReport {
            success: true,
            job_id: claimed.job.id,
            status: result.status.unwrap_or(JobStatus::Processing),
            entity_id: result.response_id,
            error_message,
        })
    }

    /// Starts the worker pool of `WORKER_CONCURRENCY` slots; it runs until `shutdown`, then
    /// hands back what it still holds.
    pub fn spawn_pool(&self, shutdown: CancellationToken) -> JoinHandle<anyhow::Result<()>> {
        let runtime = self.runtime().clone();
        tokio::spawn(run_pool(
            runtime.clone(),
            PoolOptions::for_app(&runtime),
            shutdown,
        ))
    }

    // ---- observing

    /// Counts by status of the jobs matching `filter`.
    pub async fn summary(&self, filter: &JobFilter) -> AppResult<Summary> {
        Ok(self.store().jobs_summary(filter).await?)
    }

    pub async fn status(&self, query: &StatusQuery) -> AppResult<StatusReport> {
        check_page(query.page)?;
        let store = self.store();
        let now = store.now();
        let (summary, mut jobs, expired, pauses, workers, mut provider_batches) = tokio::try_join!(
            store.jobs_summary(&query.filter),
            store.jobs_list(&query.filter, query.page),
            store.jobs_count_expired(Clock::Database),
            store.pauses_active(now),
            store.workers_live(Clock::Database, WORKER_SILENT_AFTER),
            store.provider_batches_recent(OPEN_BATCHES_SHOWN),
        )?;
        let workers = WorkerTotals::of(&workers);
        provider_batches.retain(|batch| !batch.state.is_closed());
        self.name_provider_batches(&mut jobs).await?;
        let (blocked, spent_today) = tokio::try_join!(self.blocked(&query.filter), async {
            Ok(self.runtime().spent_today().await?)
        })?;
        Ok(StatusReport {
            success: true,
            summary,
            jobs,
            expired_leases: expired,
            pauses,
            blocked,
            workers,
            spent_today,
            provider_batches,
        })
    }

    /// Fills in the provider's batch id of each `submitted` job of `jobs`.
    async fn name_provider_batches(&self, jobs: &mut [Job]) -> AppResult<()> {
        let submitted: Vec<JobId> = jobs
            .iter()
            .filter(|job| job.status == JobStatus::Submitted)
            .map(|job| job.id)
            .collect();
        let ids: std::collections::HashMap<JobId, String> = self
            .store()
            .provider_batch_ids_of_jobs(&submitted)
            .await?
            .into_iter()
            .collect();
        for job in jobs.iter_mut() {
            job.provider_batch_id = ids.get(&job.id).cloned();
        }
        Ok(())
    }

    /// What the workers heard from lately report, summed.
    pub async fn workers(&self) -> AppResult<WorkerTotals> {
        let live = self
            .store()
            .workers_live(Clock::Database, WORKER_SILENT_AFTER)
            .await?;
        Ok(WorkerTotals::of(&live))
    }

    pub async fn job_detail(&self, id: JobId) -> AppResult<JobDetail> {
        let store = self.store();
        let mut job = store
            .job_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("job {id} not found")))?;
        self.name_provider_batches(std::slice::from_mut(&mut job))
            .await?;
        let attempts = store.job_attempts(id).await?;
        let response = store
            .responses_list(
                &ResponseFilter {
                    job_id: Some(id),
                    ..ResponseFilter::default()
                },
                Page {
                    limit: 1,
                    offset: 0,
                },
            )
            .await?
            .pop();
        let provider_batch = store.provider_batch_of_job(id).await?;
        Ok(JobDetail {
            job,
            attempts,
            response,
            provider_batch,
        })
    }

    pub async fn responses(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> AppResult<Vec<StoredResponse>> {
        check_page(page)?;
        Ok(self.store().responses_list(filter, page).await?)
    }

    // ---- acting on jobs

    /// `failed | skipped → queued` with a fresh budget of attempts.
    pub async fn retry(&self, selector: &JobSelector) -> AppResult<u64> {
        if let JobSelector::One(id) = selector {
            self.refuse_submitted(*id).await?;
            self.expect_job_status(*id, &[JobStatus::Failed, JobStatus::Skipped], "retried")
                .await?;
        }
        let retried = self
            .store()
            .jobs_retry(selector, self.config().max_attempts, Clock::Database)
            .await?;
        if retried > 0 {
            self.runtime().announce_work();
        }
        Ok(retried)
    }

    /// `queued → skipped`; a job waiting in a provider batch too (see
    /// [`crate::engine::batch::cancel_job`]), and a batch key's `submitted` jobs when the
    /// selector names that status.
    pub async fn cancel(&self, selector: &JobSelector) -> AppResult<u64> {
        if let JobSelector::Batch {
            batch_key,
            status: Some(JobStatus::Submitted),
        } = selector
        {
            return self.cancel_submitted(batch_key).await;
        }
        if let JobSelector::One(id) = selector {
            if let Some(cancelled) = crate::engine::batch::cancel_job(self.runtime(), *id).await? {
                return Ok(cancelled);
            }
            self.expect_job_status(*id, &[JobStatus::Queued], "cancelled")
                .await?;
        }
        Ok(self
            .store()
            .jobs_cancel(selector, self.store().now())
            .await?)
    }

    /// Cancels the `submitted` jobs of `batch_key` one by one, each as a single cancel does (the
    /// last one of a provider batch cancels it at the provider).
    async fn cancel_submitted(&self, batch_key: &str) -> AppResult<u64> {
        let filter = JobFilter {
            batch_key: Some(batch_key.to_owned()),
            status: Some(JobStatus::Submitted),
            ..JobFilter::default()
        };
        let page = Page {
            limit: 1000,
            offset: 0,
        };
        let mut cancelled = 0;
        loop {
            let jobs = self.store().jobs_list(&filter, page).await?;
            let before = cancelled;
            for job in &jobs {
                cancelled += crate::engine::batch::cancel_job(self.runtime(), job.id)
                    .await?
                    .unwrap_or(0);
            }
            // A page that cancelled nothing holds only jobs answered meanwhile.
            if jobs.len() < page.limit as usize || cancelled == before {
                return Ok(cancelled);
            }
        }
    }

    /// A `submitted` job's answer is on its way from the provider's Batch API: a retry would
    /// pay for it twice, so it is refused (409) with what the user can do instead.
    async fn refuse_submitted(&self, id: JobId) -> AppResult<()> {
        let Some(job) = self.store().job_get(id).await? else {
            return Ok(());
        };
        if job.status != JobStatus::Submitted {
            return Ok(());
        }
        let remote = self
            .store()
            .provider_batch_ids_of_jobs(&[id])
            .await?
            .pop()
            .map(|(_, remote)| format!(" {remote}"))
            .unwrap_or_default();
        Err(AppError::Conflict(format!(
            "job {id} is submitted in provider batch{remote} and cannot be retried until its \
             results are read; cancel it first to run it again"
        )))
    }

    async fn expect_job_status(
        &self,
        id: JobId,
        allowed: &[JobStatus],
        verb: &str,
    ) -> AppResult<()> {
        let job = self
            .store()
            .job_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("job {id} not found")))?;
        if allowed.contains(&job.status) {
            Ok(())
        } else {
            Err(AppError::Conflict(format!(
                "job {id} is {}, it cannot be {verb}",
                job.status
            )))
        }
    }
}
