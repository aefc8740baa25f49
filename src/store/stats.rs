//! Read-only figures over many jobs, computed in the database: the richer job status (counts
//! per model, tokens, cost, latency percentiles) and the queue gauges that `/metrics` exposes.
//!
//! These are reads only; they never change a row. Each figure is one aggregate query over the
//! same [`JobFilter`] as the job listing, so that a status page's numbers and its rows agree.
//! Percentiles are nearest-rank (the smallest value with at least `p` of the values at or
//! below it): what PostgreSQL's `percentile_disc` computes, and what SQLite computes with
//! `ORDER BY … LIMIT 1 OFFSET k` (or the same rank from a window function), so both backends
//! give the same answer.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobFilter, Store, StoreResult};
use crate::domain::{ModelId, Summary};

/// Figures of the jobs matching a filter, beyond their counts by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    /// Counts by status per model, by model id.
    pub per_model: Vec<ModelCounts>,
    /// Tokens of the stored responses of the matching jobs.
    pub tokens: TokenTotals,
    /// Sum of the costs providers reported for those responses; `None` when none reported one.
    pub cost_usd: Option<f64>,
    /// Latency of those responses' model calls.
    pub latency_ms: LatencyStats,
}

/// One model's jobs by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCounts {
    pub model_id: ModelId,
    /// `None` when the model row is gone (it never is: models are soft-deleted).
    pub model_name: Option<String>,
    #[serde(flatten)]
    pub summary: Summary,
    /// Attempts spent by these jobs (retries included).
    pub attempts: i64,
}

/// Token sums; a response that reported no figure counts as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenTotals {
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

/// Nearest-rank percentiles of the responses' latency; `None` without responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    /// Responses the figures are computed over.
    pub count: i64,
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

/// The queued jobs that are due now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DueStats {
    pub due: i64,
    /// When the longest-waiting due job became due (`next_attempt_at`).
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// What `/metrics` reads from the database, in one round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueFigures {
    /// Every job by status.
    pub jobs: Summary,
    pub due: DueStats,
    /// `processing` jobs whose lease expired (work for the next rescue).
    pub expired_leases: i64,
}

/// One batch's jobs by status (the dashboard's list of batches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub batch_key: String,
    pub summary: Summary,
}

/// One model's jobs by status and its calls' latency over a set of batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelWindow {
    pub model_id: ModelId,
    /// `None` when the model row is gone (it never is: models are soft-deleted).
    pub model_name: Option<String>,
    pub summary: Summary,
    /// Latency of the model's stored responses in those batches.
    pub latency_ms: LatencyStats,
}

/// One (model, status) group of a per-model count query.
pub(crate) struct ModelStatusGroup {
    pub model_id: ModelId,
    pub model_name: Option<String>,
    pub status: crate::domain::JobStatus,
    pub jobs: i64,
    pub attempts: i64,
}

/// Folds (model, status) groups, ordered by model, into one entry per model; both backends'
/// per-model figures go through here.
pub(crate) fn fold_model_counts(groups: Vec<ModelStatusGroup>) -> Vec<ModelCounts> {
    let mut per_model: Vec<ModelCounts> = Vec::new();
    for group in groups {
        if per_model
            .last()
            .is_none_or(|m| m.model_id != group.model_id)
        {
            per_model.push(ModelCounts {
                model_id: group.model_id,
                model_name: group.model_name,
                summary: Summary::default(),
                attempts: 0,
            });
        }
        if let Some(counts) = per_model.last_mut() {
            counts.summary.add(group.status, group.jobs);
            counts.attempts += group.attempts;
        }
    }
    per_model
}

/// The 0-based offset of the nearest-rank `p` percentile among `n` sorted values.
pub(crate) fn nearest_rank_offset(n: i64, p: f64) -> i64 {
    ((p * n as f64).ceil() as i64 - 1).clamp(0, (n - 1).max(0))
}

impl Store {
    /// Per-model counts, token and cost sums, latency percentiles of the matching jobs.
    pub async fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats> {
        on_backend!(self.jobs_stats(filter))
    }

    /// The `limit` greatest batch keys (the newest batches: keys of one schedule sort in time
    /// order) with their jobs' counts by status, newest first.
    pub async fn batches_recent(&self, limit: i64) -> StoreResult<Vec<BatchSummary>> {
        on_backend!(self.batches_recent(limit))
    }

    /// Per model, counts by status and latency percentiles of the jobs of `batch_keys`, by
    /// model id. Models without jobs in those batches are left out.
    pub async fn models_window(&self, batch_keys: &[String]) -> StoreResult<Vec<ModelWindow>> {
        if batch_keys.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self.models_window(batch_keys))
    }

    /// The queue's gauges at `now` in one statement: counts by status over the narrow
    /// `(batch_key, status)` index (an index-only scan, not the wide rows), due jobs and the
    /// oldest of them from the partial index of queued jobs, expired leases from the partial
    /// index of processing ones. The caller caches it (`/metrics` runs it at most once per
    /// period however often it is scraped).
    pub async fn queue_figures(&self, now: DateTime<Utc>) -> StoreResult<QueueFigures> {
        on_backend!(self.queue_figures(now))
    }

    /// Queued jobs due at `now` and when the oldest of them became due.
    pub async fn jobs_due_stats(&self, now: DateTime<Utc>) -> StoreResult<DueStats> {
        on_backend!(self.jobs_due_stats(now))
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_rank_offset;

    #[test]
    fn nearest_rank_matches_percentile_disc() {
        // 1..=10: p50 is the 5th value, p95 the 10th.
        assert_eq!(nearest_rank_offset(10, 0.5), 4);
        assert_eq!(nearest_rank_offset(10, 0.95), 9);
        assert_eq!(nearest_rank_offset(1, 0.5), 0);
        assert_eq!(nearest_rank_offset(1, 0.95), 0);
        assert_eq!(nearest_rank_offset(3, 0.5), 1);
        assert_eq!(nearest_rank_offset(20, 0.95), 18);
    }
}
