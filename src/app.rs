//! The use cases: every face of promptq (HTTP, CLI, built-in cron, worker pool) calls these
//! and holds no logic of its own.
//!
//! [`App`] owns the store, the providers and the validated configuration, and turns their
//! errors into [`AppError`], whose variants say what the caller should answer (400, 404, 409,
//! 503, 500). Input is parsed into domain values at the edge before it gets here; the checks
//! that need the database (an unknown id, a job that is not queued) are made here.

mod catalog;
mod export;
mod overview;
mod prune;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::Config;
use crate::domain::{
    BatchKey, ClaimedJob, Finish, Job, JobId, JobStatus, Model, ModelId, Prompt, PromptId,
    ProviderKind, Summary,
};
use crate::engine::retry::RetryPolicy;
use crate::metrics::QueueGauges;
use crate::providers::{ProviderSettings, Providers};
use crate::schedule::{self, Schedule, Trigger};
use crate::store::{
    AttemptRecord, ClaimOne, Clock, EnqueueOptions, JobFilter, JobSelector, JobStats, ModelPatch,
    NewModel, NewPrompt, Page, PromptPatch, ResponseFilter, Store, StoreError, StoredResponse,
};

/// What went wrong in a use case, by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: 400 with this message.
    #[error("{0}")]
    BadInput(String),
    /// An id names nothing: 404.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a job that is not queued): 409.
    #[error("{0}")]
    Conflict(String),
    /// The database does not answer: 503.
    #[error("database unavailable")]
    Unavailable(String),
    /// A bug or a broken database: 500 without details; the details are logged.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => AppError::Unavailable(detail),
            StoreError::Conflict(detail) => AppError::Conflict(detail),
            StoreError::NotFound(detail) => AppError::NotFound(detail),
            StoreError::InvalidUrl(detail) => AppError::BadInput(detail),
            other => AppError::Internal(other.to_string()),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

pub use catalog::{Catalog, CatalogModel, CatalogPrompt, ImportCounts, ImportReport, ImportScope};
pub use export::ResponseExport;
pub use overview::Overview;
pub use prune::{PRUNE_BATCH, PruneReport, PruneRequest, spawn_retention};

/// The answer of a scheduling pass (`/api/cron`, `promptq cron`, the built-in cron).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronReport {
    pub success: bool,
    pub message: String,
    pub prompt_count: u64,
    pub jobs_created: u64,
    pub batch_key: String,
    /// Prompts left out because their own schedule is broken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule_errors: Vec<schedule::PromptScheduleError>,
}

/// How one processed job's attempt ended before its finish is written.
enum Attempted {
    Finished(Finish),
    HandedBack(ProcessReport),
}

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
}

/// One model's share of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelReport {
    pub model_id: ModelId,
    pub model_name: String,
    pub summary: Summary,
    pub attempts: i64,
    pub tokens: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

/// One job with its attempts and its stored response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub job: Job,
    pub attempts: Vec<AttemptRecord>,
    pub response: Option<StoredResponse>,
}

/// The largest page any listing returns.
pub const MAX_PAGE: i64 = 1000;

/// The service: cheap to clone, shared by every face.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    providers: Providers,
    config: Config,
    default_schedule: Schedule,
    retry_policy: RetryPolicy,
    metrics: Arc<crate::metrics::Metrics>,
    limits: Arc<crate::engine::limits::Limits>,
    /// Wakes the in-process workers when jobs were enqueued or retried.
    work_available: Arc<Notify>,
}

impl App {
    /// Opens (and migrates) the database and builds the providers from `config`.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let store = Store::open(&config.database_url).await?;
        let app = App::with_store(config, store)?;
        app.warn_about_endpoints().await;
        Ok(app)
    }

    /// Says at start which declared endpoints were ignored and which stored models will be
    /// refused at their next call (a key paired with a URL that is not its own), so that an
    /// operator hears of it before their jobs fail.
    async fn warn_about_endpoints(&self) {
        for problem in &self.inner.config.ignored_endpoints {
            tracing::warn!("{problem}");
        }
        match self.inner.store.model_list().await {
            Ok(models) => {
                for problem in self.inner.providers.audit(&models) {
                    tracing::warn!("{problem}");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot check the models' endpoints"),
        }
    }

    /// Builds the service on an open store.
    pub fn with_store(config: Config, store: Store) -> anyhow::Result<App> {
        let providers = Providers::new(ProviderSettings {
            openai_api_key: config.openai_api_key.clone(),
            openai_base_url: config.openai_base_url.clone(),
            openrouter_api_key: config.openrouter_api_key.clone(),
            openrouter_base_url: config.openrouter_base_url.clone(),
            app_url: config.app_url.clone(),
            endpoints: config.endpoints.clone(),
            ignored_endpoints: config.ignored_endpoints.clone(),
            redact_also: config.cron_secret.iter().cloned().collect(),
            timeout: config.model_timeout,
        })?;
        let default_schedule = config.cron_schedule.clone();
        let limits = Arc::new(crate::engine::limits::Limits::new(
            store.clone(),
            providers.clone(),
            config.worker_concurrency,
        ));
        Ok(App {
            inner: Arc::new(Inner {
                store,
                providers,
                default_schedule,
                retry_policy: RetryPolicy::default(),
                metrics: Arc::default(),
                limits,
                work_available: Arc::new(Notify::new()),
                config,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The global schedule (`CRON_SCHEDULE`; `off` reads as daily and never ticks).
    pub fn default_schedule(&self) -> &Schedule {
        &self.inner.default_schedule
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry_policy
    }

    pub fn limits(&self) -> &crate::engine::limits::Limits {
        &self.inner.limits
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The signal the worker pool sleeps on.
    pub fn work_available(&self) -> Arc<Notify> {
        self.inner.work_available.clone()
    }

    // ---- scheduling

    /// One scheduling pass: creates the jobs of every due prompt for the trigger's batch.
    pub async fn run_cron(&self, trigger: Trigger) -> AppResult<CronReport> {
        let backfill = matches!(trigger, Trigger::Backfill { .. });
        let prompts = self.inner.store.prompts_schedulable().await?;
        let plan = schedule::plan(&prompts, &self.inner.default_schedule, trigger)
            .map_err(|err| AppError::BadInput(err.to_string()))?;
        let report = self
            .inner
            .store
            .jobs_enqueue(
                &plan.batches,
                EnqueueOptions {
                    now: Clock::Database,
                    max_attempts: self.inner.config.max_attempts,
                    mark_prompts: !backfill,
                },
            )
            .await?;
        if report.jobs_created > 0 {
            self.inner.work_available.notify_waiters();
        }
        Ok(CronReport {
            success: true,
            message: format!(
                "Enqueued {} jobs for {} prompts",
                report.jobs_created, report.prompt_count
            ),
            prompt_count: report.prompt_count,
            jobs_created: report.jobs_created,
            batch_key: plan.batch_key.to_string(),
            schedule_errors: plan.errors,
        })
    }

    /// The soonest slot after `after` of the global schedule and of every active prompt's own
    /// schedule (broken per-prompt schedules are left out: the pass reports them).
    pub async fn next_scheduled_slot(
        &self,
        after: DateTime<Utc>,
    ) -> AppResult<Option<DateTime<Utc>>> {
        let mut expressions: Vec<String> = self
            .inner
            .store
            .prompts_schedulable()
            .await?
            .into_iter()
            .filter_map(|prompt| prompt.schedule)
            .filter(|expr| !expr.trim().is_empty())
            .collect();
        expressions.sort();
        expressions.dedup();
        let tz = self.inner.default_schedule.time_zone();
        let mut next = self.inner.default_schedule.next_tick(after).ok().flatten();
        for expr in expressions {
            if let Ok(schedule) = Schedule::parse(&expr, tz)
                && let Ok(Some(slot)) = schedule.next_tick(after)
            {
                next = Some(next.map_or(slot, |n| n.min(slot)));
            }
        }
        Ok(next)
    }

    /// The pass an outside trigger asks for: the current batch, or `batch_key` to backfill.
    pub async fn trigger_cron(&self, batch_key: Option<BatchKey>) -> AppResult<CronReport> {
        let trigger = match batch_key {
            Some(batch_key) => Trigger::Backfill { batch_key },
            // Due-ness by the database's clock, so that every process picks the same slot.
            None => Trigger::External {
                now: self.inner.store.clock_now().await?,
            },
        };
        self.run_cron(trigger).await
    }

    // ---- running one job (serverless dispatch)

    /// Claims one queued job, runs its model call, stores the outcome.
    pub async fn process_job(&self, id: JobId) -> AppResult<ProcessReport> {
        let claimed = match self
            .inner
            .store
            .job_claim(id, Clock::Database, self.inner.config.job_lease)
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
        // A panic anywhere in the attempt becomes its error, as in the worker pool, instead of
        // a job left `processing` until its lease runs out.
        let held = crate::engine::guard::Held::of(&claimed);
        let finish = match crate::engine::guard::catch_panic(self.attempt_one(&claimed)).await {
            Ok(Ok(Attempted::Finished(finish))) => finish,
            Ok(Ok(Attempted::HandedBack(report))) => return Ok(report),
            Ok(Err(err)) => return Err(err),
            Err(what) => {
                tracing::error!(job_id = id, attempt = claimed.attempt, panic = %what, "processing a job panicked; its attempt is recorded as failed");
                held.finish_after_panic(&what, Utc::now(), self.retry_policy())
            }
        };
        self.finish_one(&claimed, finish).await
    }

    /// The limits' admission and the model call of a claimed job: its finish, or the report of
    /// a job handed back to wait for its model's limit.
    async fn attempt_one(&self, claimed: &ClaimedJob) -> AppResult<Attempted> {
        let _model_permit = match self.limits().admit(claimed).await {
            crate::engine::limits::Admission::Go(permit) => permit,
            crate::engine::limits::Admission::Later(at) => {
                self.inner
                    .store
                    .jobs_release(
                        &[(claimed.job.id, claimed.attempt)],
                        Clock::Database,
                        (at - Utc::now()).to_std().unwrap_or_default(),
                    )
                    .await?;
                return Ok(Attempted::HandedBack(ProcessReport {
                    success: true,
                    job_id: claimed.job.id,
                    status: JobStatus::Queued,
                    entity_id: None,
                    error_message: Some(format!(
                        "model {} is rate limited or paused; the job is due again at {}",
                        claimed.model.name,
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )),
                }));
            }
        };
        let started = std::time::Instant::now();
        let finish = crate::engine::attempt::run_alone(self, claimed).await;
        self.metrics()
            .observe_call(&claimed.model.name, started.elapsed(), &finish);
        Ok(Attempted::Finished(finish))
    }

    async fn finish_one(&self, claimed: &ClaimedJob, finish: Finish) -> AppResult<ProcessReport> {
        let error_message = match &finish.outcome {
            crate::domain::Outcome::Succeeded(_) => None,
            crate::domain::Outcome::Retry { error, .. } | crate::domain::Outcome::Failed(error) => {
                Some(error.message.clone())
            }
        };
        let result = self
            .inner
            .store
            .jobs_finish(std::slice::from_ref(&finish), Clock::Database)
            .await?
            .pop()
            .ok_or_else(|| AppError::Internal("finish returned no result".into()))?;
        self.metrics().observe_finish(&finish, result.applied);
        if result.applied {
            crate::engine::worker::log_finish(&finish, result.response_id);
        }
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

    // ---- observing

    pub async fn status(&self, query: &StatusQuery) -> AppResult<StatusReport> {
        check_page(query.page)?;
        let store = &self.inner.store;
        let now = Utc::now();
        let (summary, jobs, expired, pauses) = tokio::try_join!(
            store.jobs_summary(&query.filter),
            store.jobs_list(&query.filter, query.page),
            store.jobs_count_expired(Clock::Database),
            store.pauses_active(now),
        )?;
        Ok(StatusReport {
            success: true,
            summary,
            jobs,
            expired_leases: expired,
            pauses,
        })
    }

    /// Per-model counts, tokens, cost and latency percentiles of the jobs matching `filter`.
    pub async fn job_stats(&self, filter: &JobFilter) -> AppResult<JobStats> {
        Ok(self.inner.store.jobs_stats(filter).await?)
    }

    /// One line per model of a batch: its jobs, attempts, tokens and latency.
    pub async fn model_report(&self, batch_key: &str) -> AppResult<Vec<ModelReport>> {
        let filter = JobFilter {
            batch_key: Some(batch_key.to_owned()),
            ..JobFilter::default()
        };
        let stats = self.inner.store.jobs_stats(&filter).await?;
        let mut report = Vec::with_capacity(stats.per_model.len());
        for counts in stats.per_model {
            let of_model = self
                .inner
                .store
                .jobs_stats(&JobFilter {
                    model_id: Some(counts.model_id),
                    ..filter.clone()
                })
                .await?;
            report.push(ModelReport {
                model_id: counts.model_id,
                model_name: counts.model_name.unwrap_or_default(),
                summary: counts.summary,
                attempts: counts.attempts,
                tokens: of_model.tokens.total,
                latency_p50_ms: of_model.latency_ms.p50,
                latency_p95_ms: of_model.latency_ms.p95,
            });
        }
        Ok(report)
    }

    /// What `/metrics` reads from the database: cached for a few seconds and shared by
    /// concurrent scrapes (see [`crate::metrics::Metrics::gauges`]).
    pub async fn queue_gauges(&self) -> AppResult<QueueGauges> {
        let store = &self.inner.store;
        self.metrics()
            .gauges(async || {
                let now = Utc::now();
                let figures = store.queue_figures(now).await?;
                let oldest_due_age_seconds = figures
                    .due
                    .oldest_due_at
                    .map(|at| ((now - at).num_milliseconds().max(0)) as f64 / 1000.0)
                    .unwrap_or(0.0);
                Ok(QueueGauges {
                    jobs: figures.jobs,
                    due: figures.due.due,
                    oldest_due_age_seconds,
                    expired_leases: figures.expired_leases,
                })
            })
            .await
    }

    /// Answers when the database answers (`/healthz`).
    pub async fn health(&self) -> AppResult<()> {
        Ok(self.inner.store.ping().await?)
    }

    pub async fn job_detail(&self, id: JobId) -> AppResult<JobDetail> {
        let store = &self.inner.store;
        let job = store
            .job_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("job {id} not found")))?;
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
        Ok(JobDetail {
            job,
            attempts,
            response,
        })
    }

    pub async fn responses(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> AppResult<Vec<StoredResponse>> {
        check_page(page)?;
        Ok(self.inner.store.responses_list(filter, page).await?)
    }

    // ---- acting on jobs

    /// `failed | skipped → queued` with a fresh budget of attempts.
    pub async fn retry(&self, selector: &JobSelector) -> AppResult<u64> {
        if let JobSelector::One(id) = selector {
            self.expect_job_status(*id, &[JobStatus::Failed, JobStatus::Skipped], "retried")
                .await?;
        }
        let retried = self
            .inner
            .store
            .jobs_retry(selector, self.inner.config.max_attempts, Clock::Database)
            .await?;
        if retried > 0 {
            self.inner.work_available.notify_waiters();
        }
        Ok(retried)
    }

    /// `queued → skipped`.
    pub async fn cancel(&self, selector: &JobSelector) -> AppResult<u64> {
        if let JobSelector::One(id) = selector {
            self.expect_job_status(*id, &[JobStatus::Queued], "cancelled")
                .await?;
        }
        Ok(self.inner.store.jobs_cancel(selector, Utc::now()).await?)
    }

    async fn expect_job_status(
        &self,
        id: JobId,
        allowed: &[JobStatus],
        verb: &str,
    ) -> AppResult<()> {
        let job = self
            .inner
            .store
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

    // ---- models

    pub async fn create_model(&self, new: NewModel) -> AppResult<Model> {
        self.check_model(&new.name, new.provider, &new.model, &new.params)?;
        Ok(self.inner.store.model_insert(&new, Utc::now()).await?)
    }

    pub async fn models(&self) -> AppResult<Vec<Model>> {
        Ok(self.inner.store.model_list().await?)
    }

    pub async fn model(&self, id: ModelId) -> AppResult<Model> {
        self.inner
            .store
            .model_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("model {id} not found")))
    }

    pub async fn update_model(&self, id: ModelId, patch: ModelPatch) -> AppResult<Model> {
        let current = self.model(id).await?;
        self.check_model(
            patch.name.as_deref().unwrap_or(&current.name),
            patch.provider.unwrap_or(current.provider),
            patch.model.as_deref().unwrap_or(&current.model),
            patch.params.as_ref().unwrap_or(&current.params),
        )?;
        self.inner
            .store
            .model_update(id, &patch, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("model {id} not found")))
    }

    pub async fn delete_model(&self, id: ModelId) -> AppResult<()> {
        if self.inner.store.model_delete(id, Utc::now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("model {id} not found")))
        }
    }

    // ---- prompts

    pub async fn create_prompt(&self, new: NewPrompt) -> AppResult<Prompt> {
        self.check_prompt(Some(&new.text), Some(new.runs), new.schedule.as_deref())?;
        Ok(self.inner.store.prompt_insert(&new, Utc::now()).await?)
    }

    pub async fn prompts(&self) -> AppResult<Vec<Prompt>> {
        Ok(self.inner.store.prompt_list().await?)
    }

    pub async fn prompt(&self, id: PromptId) -> AppResult<Prompt> {
        self.inner
            .store
            .prompt_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("prompt {id} not found")))
    }

    pub async fn update_prompt(&self, id: PromptId, patch: PromptPatch) -> AppResult<Prompt> {
        self.check_prompt(
            patch.text.as_deref(),
            patch.runs,
            patch.schedule.as_ref().and_then(|s| s.as_deref()),
        )?;
        self.inner
            .store
            .prompt_update(id, &patch, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("prompt {id} not found")))
    }

    pub async fn delete_prompt(&self, id: PromptId) -> AppResult<()> {
        if self.inner.store.prompt_delete(id, Utc::now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("prompt {id} not found")))
        }
    }

    fn check_prompt(
        &self,
        text: Option<&str>,
        runs: Option<i32>,
        schedule: Option<&str>,
    ) -> AppResult<()> {
        if let Some(text) = text {
            if text.trim().is_empty() {
                return Err(AppError::BadInput("text must not be empty".into()));
            }
            if text.len() > 100_000 {
                return Err(AppError::BadInput(
                    "text must be at most 100000 bytes".into(),
                ));
            }
        }
        if let Some(runs) = runs
            && !(1..=1000).contains(&runs)
        {
            return Err(AppError::BadInput("runs must be between 1 and 1000".into()));
        }
        if let Some(expr) = schedule {
            Schedule::parse(expr, self.inner.config.timezone)
                .map_err(|err| AppError::BadInput(format!("schedule: {err}")))?;
        }
        Ok(())
    }
}

fn check_page(page: Page) -> AppResult<()> {
    if !(1..=MAX_PAGE).contains(&page.limit) {
        return Err(AppError::BadInput(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if page.offset < 0 {
        return Err(AppError::BadInput("offset must not be negative".into()));
    }
    Ok(())
}

impl App {
    /// A model's values, and its params against the operator's endpoints (a key goes only to
    /// its own URL).
    pub(crate) fn check_model(
        &self,
        name: &str,
        provider: ProviderKind,
        model: &str,
        params: &serde_json::Value,
    ) -> AppResult<()> {
        if name.trim().is_empty() {
            return Err(AppError::BadInput("name must not be empty".into()));
        }
        if model.trim().is_empty() {
            return Err(AppError::BadInput("model must not be empty".into()));
        }
        let spec = crate::domain::ModelSpec::read(params);
        self.inner
            .providers
            .check_params(provider, &spec)
            .map_err(|err| AppError::BadInput(format!("params: {err}")))?;
        spec.check()
            .map_err(|err| AppError::BadInput(format!("params: {err}")))
    }
}
