//! PostgreSQL's side of the read-only figures in [`crate::domain::stats`]: aggregates over the
//! job filter, percentiles with `percentile_disc`. Reads only: nothing here writes.

use crate::store::Figures;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PostgresStore, parse_status, push_job_filter};
use crate::domain::Summary;
use crate::domain::stats::{
    BatchSummary, DueStats, JobStats, LatencyStats, ModelStatusGroup, ModelWindow, QueueFigures,
    TokenTotals, fold_model_counts,
};
use crate::store::{JobFilter, StoreResult};

impl Figures for PostgresStore {
    async fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats> {
        let mut per_model_query = QueryBuilder::<Postgres>::new(
            "SELECT j.model_id, j.status, count(*) AS n, sum(j.attempt_count)::bigint AS attempts,
                (SELECT m.name FROM models m WHERE m.id = j.model_id) AS model_name
             FROM prompt_jobs j WHERE TRUE",
        );
        push_job_filter(&mut per_model_query, filter, "j.");
        per_model_query.push(" GROUP BY j.model_id, j.status ORDER BY j.model_id");
        let rows = per_model_query.build().fetch_all(&self.pool).await?;
        let per_model =
            fold_model_counts(rows.iter().map(group_from_row).collect::<Result<_, _>>()?);

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
        push_job_filter(&mut sums, filter, "j.");
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

    async fn batches_recent(&self, limit: i64) -> StoreResult<Vec<BatchSummary>> {
        // A loose index scan (PostgreSQL has no skip scan before 18): each step jumps to the
        // next smaller key through the job key (which starts with the batch key); the outer
        // LIMIT stops the recursion, which PostgreSQL evaluates lazily. Each batch is then
        // counted through the same index (LATERAL): joined as a whole, the planner expected
        // the keys to match a share of the whole table and scanned all of it (a year of jobs:
        // 0.2-0.4 s for 20 batches).
        let rows = sqlx::query(
            "WITH RECURSIVE keys(batch_key) AS (
                SELECT max(batch_key) FROM prompt_jobs
                UNION ALL
                SELECT (SELECT p.batch_key FROM prompt_jobs p WHERE p.batch_key < keys.batch_key
                        ORDER BY p.batch_key DESC LIMIT 1)
                FROM keys WHERE keys.batch_key IS NOT NULL
             ),
             recent AS (SELECT batch_key FROM keys WHERE batch_key IS NOT NULL LIMIT $1)
             SELECT recent.batch_key, counts.status, counts.n
             FROM recent CROSS JOIN LATERAL (
                SELECT j.status, count(*) AS n FROM prompt_jobs j
                WHERE j.batch_key = recent.batch_key GROUP BY j.status
             ) counts
             ORDER BY recent.batch_key DESC",
        )
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut batches: Vec<BatchSummary> = Vec::new();
        for row in &rows {
            let batch_key: String = row.try_get("batch_key")?;
            if batches.last().is_none_or(|b| b.batch_key != batch_key) {
                batches.push(BatchSummary {
                    batch_key,
                    summary: Summary::default(),
                });
            }
            let status: String = row.try_get("status")?;
            if let Some(batch) = batches.last_mut() {
                batch.summary.add(parse_status(&status)?, row.try_get("n")?);
            }
        }
        Ok(batches)
    }

    async fn models_window(&self, batch_keys: &[String]) -> StoreResult<Vec<ModelWindow>> {
        let rows = sqlx::query(
            "SELECT j.model_id, j.status, count(*) AS n, sum(j.attempt_count)::bigint AS attempts,
                (SELECT m.name FROM models m WHERE m.id = j.model_id) AS model_name
             FROM prompt_jobs j WHERE j.batch_key = ANY($1)
             GROUP BY j.model_id, j.status ORDER BY j.model_id",
        )
        .bind(batch_keys)
        .fetch_all(&self.pool)
        .await?;
        let mut models: Vec<ModelWindow> =
            fold_model_counts(rows.iter().map(group_from_row).collect::<Result<_, _>>()?)
                .into_iter()
                .map(|counts| ModelWindow {
                    model_id: counts.model_id,
                    model_name: counts.model_name,
                    summary: counts.summary,
                    latency_ms: LatencyStats::default(),
                })
                .collect();
        let latency = sqlx::query(
            "SELECT r.model_id, count(*) AS n,
                percentile_disc(0.5) WITHIN GROUP (ORDER BY r.latency_ms) AS p50,
                percentile_disc(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS p95
             FROM responses r WHERE r.batch_key = ANY($1) GROUP BY r.model_id",
        )
        .bind(batch_keys)
        .fetch_all(&self.pool)
        .await?;
        for row in &latency {
            let model_id: i64 = row.try_get("model_id")?;
            if let Some(model) = models.iter_mut().find(|m| m.model_id == model_id) {
                model.latency_ms = LatencyStats {
                    count: row.try_get("n")?,
                    p50: row.try_get("p50")?,
                    p95: row.try_get("p95")?,
                };
            }
        }
        Ok(models)
    }

    async fn queue_figures(&self, now: DateTime<Utc>) -> StoreResult<QueueFigures> {
        // One round trip; each row is labelled by what it counts. The due jobs are those of
        // the due list (what a claim reads), the expired leases those of the running list.
        let rows = sqlx::query(
            "SELECT status AS label, count(*) AS n, NULL::timestamptz AS oldest
                FROM prompt_jobs GROUP BY status
             UNION ALL
             SELECT 'due', count(*), min(next_attempt_at) FROM job_queue
                WHERE next_attempt_at <= $1
             UNION ALL
             SELECT 'expired', count(*), NULL FROM job_claims r
                JOIN prompt_jobs j ON j.id = r.job_id
                WHERE j.status = 'processing' AND j.lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut figures = QueueFigures::default();
        for row in &rows {
            let label: String = row.try_get("label")?;
            let n: i64 = row.try_get("n")?;
            match label.as_str() {
                "due" => {
                    figures.due = DueStats {
                        due: n,
                        oldest_due_at: row.try_get("oldest")?,
                    }
                }
                "expired" => figures.expired_leases = n,
                status => figures.jobs.add(parse_status(status)?, n),
            }
        }
        Ok(figures)
    }

    async fn jobs_due_stats(&self, now: DateTime<Utc>) -> StoreResult<DueStats> {
        let row = sqlx::query(
            "SELECT count(*) AS n, min(next_attempt_at) AS oldest FROM job_queue
             WHERE next_attempt_at <= $1",
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

/// One row of a `GROUP BY model_id, status` query (columns model_id, model_name, status, n,
/// attempts).
fn group_from_row(row: &sqlx::postgres::PgRow) -> Result<ModelStatusGroup, sqlx::Error> {
    Ok(ModelStatusGroup {
        model_id: row.try_get("model_id")?,
        model_name: row.try_get("model_name")?,
        status: parse_status(&row.try_get::<String, _>("status")?)?,
        jobs: row.try_get("n")?,
        attempts: row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
    })
}
