//! Reports on what ran: per-model figures of a batch, statistics, the gauges `/metrics`
//! reads, and health.

use chrono::Utc;
use serde::Serialize;

use crate::domain::{ModelId, Summary};
use crate::metrics::QueueGauges;
use crate::store::{JobFilter, JobStats, TokenTotals};

use super::{App, AppError, AppResult, MAX_PAGE, StatusQuery, StatusReport};

/// One model's share of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelReport {
    pub model_id: ModelId,
    pub model_name: String,
    pub summary: Summary,
    pub attempts: i64,
    /// Attempts spent per success (1.0 when nothing was retried); `None` before a success.
    pub attempts_per_success: Option<f64>,
    pub tokens: i64,
    /// The known cost of the model's answers in the batch; `None` when none is known.
    pub cost_usd: Option<f64>,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

/// The answer of `GET /api/jobs/status`, which `promptq status --json` prints as it is: the
/// counts and page of [`App::status`] and the figures of [`App::job_stats`] over one filter.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusAnswer {
    #[serde(flatten)]
    pub report: StatusReport,
    #[serde(flatten)]
    pub stats: JobStats,
    /// Alerts not delivered yet and failed ones; absent without `ALERT_WEBHOOK_URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::store::AlertCounts>,
}

/// One recent batch: its jobs by status, and the tokens and cost of its answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFigures {
    pub batch_key: String,
    pub summary: Summary,
    pub tokens: TokenTotals,
    /// `None` when no answer of the batch reported a cost.
    pub cost_usd: Option<f64>,
}

impl App {
    /// See [`StatusAnswer`].
    pub async fn status_answer(&self, query: &StatusQuery) -> AppResult<StatusAnswer> {
        let (report, stats, alerts) = tokio::try_join!(
            self.status(query),
            self.job_stats(&query.filter),
            self.alert_counts()
        )?;
        Ok(StatusAnswer {
            report,
            stats,
            alerts,
        })
    }

    /// The newest `limit` batches, newest first, with their counts, tokens and cost.
    pub async fn batch_figures(&self, limit: i64) -> AppResult<Vec<BatchFigures>> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::BadInput(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let batches = self.store().batches_recent(limit).await?;
        let mut figures = Vec::with_capacity(batches.len());
        for batch in batches {
            let stats = self
                .store()
                .jobs_stats(&JobFilter {
                    batch_key: Some(batch.batch_key.clone()),
                    ..JobFilter::default()
                })
                .await?;
            figures.push(BatchFigures {
                batch_key: batch.batch_key,
                summary: batch.summary,
                tokens: stats.tokens,
                cost_usd: stats.cost_usd,
            });
        }
        Ok(figures)
    }

    /// Per-model counts, tokens, cost and latency percentiles of the jobs matching `filter`.
    pub async fn job_stats(&self, filter: &JobFilter) -> AppResult<JobStats> {
        Ok(self.store().jobs_stats(filter).await?)
    }

    /// One line per model of a batch: its jobs, attempts, tokens, cost and latency.
    pub async fn model_report(&self, batch_key: &str) -> AppResult<Vec<ModelReport>> {
        let filter = JobFilter {
            batch_key: Some(batch_key.to_owned()),
            ..JobFilter::default()
        };
        let stats = self.store().jobs_stats(&filter).await?;
        let mut report = Vec::with_capacity(stats.per_model.len());
        for counts in stats.per_model {
            let of_model = self
                .store()
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
                attempts_per_success: counts.attempts_per_success,
                tokens: of_model.tokens.total,
                cost_usd: of_model.cost_usd,
                latency_p50_ms: of_model.latency_ms.p50,
                latency_p95_ms: of_model.latency_ms.p95,
            });
        }
        Ok(report)
    }

    /// What `/metrics` reads from the database: cached for a few seconds and shared by
    /// concurrent scrapes (see [`crate::metrics::Metrics::gauges`]).
    pub async fn queue_gauges(&self) -> AppResult<QueueGauges> {
        let store = self.store();
        self.metrics()
            .gauges(async || {
                let now = Utc::now();
                let (figures, pauses) =
                    tokio::try_join!(store.queue_figures(now), store.pauses_active(now))?;
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
                    // One series per scope, however many pauses the store holds for it.
                    paused: pauses
                        .into_iter()
                        .map(|pause| pause.scope)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                })
            })
            .await
    }

    /// Answers when the database answers (`/healthz`).
    pub async fn health(&self) -> AppResult<()> {
        Ok(self.store().ping().await?)
    }
}
