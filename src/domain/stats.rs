//! Figures over many jobs, as the store computes them in the database: the richer job status
//! (counts per model, tokens, cost, latency percentiles) and the queue gauges that `/metrics`
//! exposes. Plain data.
//!
//! Each figure is one aggregate query over the same [`JobFilter`](super::queries::JobFilter)
//! as the job listing, so that a status page's numbers and its rows agree.
//! Percentiles are nearest-rank (the smallest value with at least `p` of the values at or
//! below it): what PostgreSQL's `percentile_disc` computes, and what SQLite computes with
//! `ORDER BY … LIMIT 1 OFFSET k` (or the same rank from a window function), so both backends
//! give the same answer.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ModelId, Summary};

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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCounts {
    pub model_id: ModelId,
    /// `None` when the model row is gone (it never is: models are soft-deleted).
    pub model_name: Option<String>,
    #[serde(flatten)]
    pub summary: Summary,
    /// Attempts spent by these jobs (retries included).
    pub attempts: i64,
    /// `attempts / succeeded`, to two decimals: 1.0 when every job succeeded at once, more as
    /// retries (or attempts of jobs that then failed) add up; `None` before any success.
    pub attempts_per_success: Option<f64>,
}

/// `attempts / succeeded` to two decimals, `None` without a success.
pub fn attempts_per_success(attempts: i64, succeeded: i64) -> Option<f64> {
    (succeeded > 0).then(|| (attempts as f64 / succeeded as f64 * 100.0).round() / 100.0)
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
    pub status: super::JobStatus,
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
                attempts_per_success: None,
            });
        }
        if let Some(counts) = per_model.last_mut() {
            counts.summary.add(group.status, group.jobs);
            counts.attempts += group.attempts;
        }
    }
    for counts in &mut per_model {
        counts.attempts_per_success =
            attempts_per_success(counts.attempts, counts.summary.succeeded);
    }
    per_model
}

/// The 0-based offset of the nearest-rank `p` percentile among `n` sorted values.
pub(crate) fn nearest_rank_offset(n: i64, p: f64) -> i64 {
    ((p * n as f64).ceil() as i64 - 1).clamp(0, (n - 1).max(0))
}

#[cfg(test)]
mod tests {
    use super::nearest_rank_offset;

    #[test]
    fn attempts_per_success_counts_retries() {
        use super::{ModelStatusGroup, attempts_per_success, fold_model_counts};
        use crate::domain::JobStatus;
        assert_eq!(attempts_per_success(3, 0), None);
        assert_eq!(attempts_per_success(4, 4), Some(1.0));
        assert_eq!(attempts_per_success(5, 3), Some(1.67));
        let group = |status, jobs, attempts| ModelStatusGroup {
            model_id: 1,
            model_name: Some("m".into()),
            status,
            jobs,
            attempts,
        };
        let folded = fold_model_counts(vec![
            group(JobStatus::Succeeded, 4, 6),
            group(JobStatus::Failed, 1, 3),
        ]);
        assert_eq!(folded[0].attempts_per_success, Some(2.25));
    }

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
