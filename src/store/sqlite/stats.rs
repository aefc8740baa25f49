//! SQLite's side of the read-only figures in [`crate::store::stats`]: aggregates over the job
//! filter, run on the reader pool. Reads only: nothing here writes.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, ms, parse_status, push_job_filter, time};
use crate::store::stats::{
    DueStats, JobStats, LatencyStats, ModelCounts, TokenTotals, nearest_rank_offset,
};
use crate::store::{JobFilter, StoreResult};

/// `job_id IN (…the matching jobs…)`, for queries over `responses`.
fn push_matching_jobs(query: &mut QueryBuilder<Sqlite>, filter: &JobFilter) {
    query.push(" job_id IN (SELECT id FROM prompt_jobs WHERE 1");
    push_job_filter(query, filter);
    query.push(")");
}

impl SqliteStore {
    pub async fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats> {
        let mut per_model_query = QueryBuilder::<Sqlite>::new(
            "SELECT model_id, status, COUNT(*) AS n, SUM(attempt_count) AS attempts,
                (SELECT name FROM models WHERE models.id = prompt_jobs.model_id) AS model_name
             FROM prompt_jobs WHERE 1",
        );
        push_job_filter(&mut per_model_query, filter);
        per_model_query.push(" GROUP BY model_id, status ORDER BY model_id");
        let rows = per_model_query.build().fetch_all(&self.readers).await?;
        let mut per_model: Vec<ModelCounts> = Vec::new();
        for row in &rows {
            let model_id: i64 = row.try_get("model_id")?;
            let status: String = row.try_get("status")?;
            if per_model.last().is_none_or(|m| m.model_id != model_id) {
                per_model.push(ModelCounts {
                    model_id,
                    model_name: row.try_get("model_name")?,
                    summary: Default::default(),
                    attempts: 0,
                });
            }
            if let Some(counts) = per_model.last_mut() {
                counts
                    .summary
                    .add(parse_status(&status)?, row.try_get("n")?);
                counts.attempts += row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0);
            }
        }

        let mut sums = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) AS n, COALESCE(SUM(prompt_tokens), 0) AS prompt,
                COALESCE(SUM(completion_tokens), 0) AS completion,
                COALESCE(SUM(total_tokens), 0) AS total, SUM(cost_usd) AS cost
             FROM responses WHERE",
        );
        push_matching_jobs(&mut sums, filter);
        let row = sums.build().fetch_one(&self.readers).await?;
        let count: i64 = row.try_get("n")?;
        let tokens = TokenTotals {
            prompt: row.try_get("prompt")?,
            completion: row.try_get("completion")?,
            total: row.try_get("total")?,
        };
        let cost_usd: Option<f64> = row.try_get("cost")?;

        let mut latency = LatencyStats {
            count,
            p50: None,
            p95: None,
        };
        if count > 0 {
            latency.p50 = Some(self.latency_at(filter, count, 0.5).await?);
            latency.p95 = Some(self.latency_at(filter, count, 0.95).await?);
        }
        Ok(JobStats {
            per_model,
            tokens,
            cost_usd,
            latency_ms: latency,
        })
    }

    /// The nearest-rank `p` percentile of the matching responses' latency (`count` of them).
    async fn latency_at(&self, filter: &JobFilter, count: i64, p: f64) -> StoreResult<i64> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT latency_ms FROM responses WHERE");
        push_matching_jobs(&mut query, filter);
        query
            .push(" ORDER BY latency_ms LIMIT 1 OFFSET ")
            .push_bind(nearest_rank_offset(count, p));
        Ok(query.build_query_scalar().fetch_one(&self.readers).await?)
    }

    pub async fn jobs_due_stats(&self, now: DateTime<Utc>) -> StoreResult<DueStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS oldest FROM prompt_jobs
             WHERE status = 'queued' AND next_attempt_at <= ?1",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(DueStats {
            due: row.try_get("n")?,
            oldest_due_at: oldest.map(time),
        })
    }
}
