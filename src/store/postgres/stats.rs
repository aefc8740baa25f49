//! PostgreSQL's side of the read-only figures in [`crate::store::stats`]: aggregates over the
//! job filter, percentiles with `percentile_disc`. Reads only: nothing here writes.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PostgresStore, parse_status, push_job_filter};
use crate::store::stats::{DueStats, JobStats, LatencyStats, ModelCounts, TokenTotals};
use crate::store::{JobFilter, StoreResult};

impl PostgresStore {
    pub async fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats> {
        let mut per_model_query = QueryBuilder::<Postgres>::new(
            "SELECT j.model_id, j.status, count(*) AS n, sum(j.attempt_count)::bigint AS attempts,
                (SELECT m.name FROM models m WHERE m.id = j.model_id) AS model_name
             FROM prompt_jobs j WHERE TRUE",
        );
        push_job_filter(&mut per_model_query, filter);
        per_model_query.push(" GROUP BY j.model_id, j.status ORDER BY j.model_id");
        let rows = per_model_query.build().fetch_all(&self.pool).await?;
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

        // SUM(bigint) is numeric in PostgreSQL: cast back to bigint for the driver.
        let mut sums = QueryBuilder::<Postgres>::new(
            "SELECT count(*) AS n,
                COALESCE(sum(r.prompt_tokens), 0)::BIGINT AS prompt,
                COALESCE(sum(r.completion_tokens), 0)::BIGINT AS completion,
                COALESCE(sum(r.total_tokens), 0)::BIGINT AS total,
                sum(r.cost_usd) AS cost,
                percentile_disc(0.5) WITHIN GROUP (ORDER BY r.latency_ms) AS p50,
                percentile_disc(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS p95
             FROM responses r WHERE r.job_id IN (SELECT j.id FROM prompt_jobs j WHERE TRUE",
        );
        push_job_filter(&mut sums, filter);
        sums.push(")");
        let row = sums.build().fetch_one(&self.pool).await?;
        Ok(JobStats {
            per_model,
            tokens: TokenTotals {
                prompt: row.try_get("prompt")?,
                completion: row.try_get("completion")?,
                total: row.try_get("total")?,
            },
            cost_usd: row.try_get("cost")?,
            latency_ms: LatencyStats {
                count: row.try_get("n")?,
                p50: row.try_get("p50")?,
                p95: row.try_get("p95")?,
            },
        })
    }

    pub async fn jobs_due_stats(&self, now: DateTime<Utc>) -> StoreResult<DueStats> {
        let row = sqlx::query(
            "SELECT count(*) AS n, min(next_attempt_at) AS oldest FROM prompt_jobs
             WHERE status = 'queued' AND next_attempt_at <= $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(DueStats {
            due: row.try_get("n")?,
            oldest_due_at: row.try_get("oldest")?,
        })
    }
}
