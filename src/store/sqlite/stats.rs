//! SQLite's side of the read-only figures in [`crate::domain::stats`]: aggregates over the job
//! filter, run on the reader pool. Reads only: nothing here writes.

use crate::store::Figures;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, ms, parse_status, push_job_filter, time};
use crate::domain::Summary;
use crate::domain::stats::{
    BatchSummary, DueStats, JobStats, LatencyStats, ModelStatusGroup, ModelWindow, QueueFigures,
    TokenTotals, fold_model_counts, nearest_rank_offset,
};
use crate::store::{JobFilter, StoreResult};

impl SqliteStore {
    /// The nearest-rank `p` percentile of the matching responses' latency (`count` of them).
    async fn latency_at(&self, filter: &JobFilter, count: i64, p: f64) -> StoreResult<i64> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT latency_ms FROM responses WHERE");
        push_matching_jobs(&mut query, filter);
        query
            .push(" ORDER BY latency_ms LIMIT 1 OFFSET ")
            .push_bind(nearest_rank_offset(count, p));
        Ok(query.build_query_scalar().fetch_one(&self.readers).await?)
    }
}

/// `job_id IN (…the matching jobs…)`, for queries over `responses`.
fn push_matching_jobs(query: &mut QueryBuilder<Sqlite>, filter: &JobFilter) {
    query.push(" job_id IN (SELECT id FROM prompt_jobs WHERE 1");
    push_job_filter(query, filter, "");
    query.push(")");
}

impl Figures for SqliteStore {
    async fn jobs_stats(&self, filter: &JobFilter) -> StoreResult<JobStats> {
        let mut per_model_query = QueryBuilder::<Sqlite>::new(
            "SELECT model_id, status, COUNT(*) AS n, SUM(attempt_count) AS attempts,
                (SELECT name FROM models WHERE models.id = prompt_jobs.model_id) AS model_name
             FROM prompt_jobs WHERE 1",
        );
        push_job_filter(&mut per_model_query, filter, "");
        per_model_query.push(" GROUP BY model_id, status ORDER BY model_id");
        let rows = per_model_query.build().fetch_all(&self.readers).await?;
        let per_model =
            fold_model_counts(rows.iter().map(group_from_row).collect::<Result<_, _>>()?);

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

    async fn batches_recent(&self, limit: i64) -> StoreResult<Vec<BatchSummary>> {
        // A loose index scan: each step jumps to the next smaller key through the
        // (batch_key, status) index, so the cost follows the batches shown, not the jobs
        // stored. The recursion's own LIMIT stops it (it counts the final NULL, if reached).
        let rows = sqlx::query(
            "WITH RECURSIVE keys(batch_key) AS (
                SELECT MAX(batch_key) FROM prompt_jobs
                UNION ALL
                SELECT (SELECT p.batch_key FROM prompt_jobs p WHERE p.batch_key < keys.batch_key
                        ORDER BY p.batch_key DESC LIMIT 1)
                FROM keys WHERE keys.batch_key IS NOT NULL
                LIMIT ?1
             )
             SELECT j.batch_key, j.status, COUNT(*) AS n
             FROM keys JOIN prompt_jobs j ON j.batch_key = keys.batch_key
             GROUP BY j.batch_key, j.status ORDER BY j.batch_key DESC",
        )
        .bind(limit.max(0))
        .fetch_all(&self.readers)
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
        let mut counts = QueryBuilder::<Sqlite>::new(
            "SELECT model_id, status, COUNT(*) AS n, SUM(attempt_count) AS attempts,
                (SELECT name FROM models WHERE models.id = prompt_jobs.model_id) AS model_name
             FROM prompt_jobs WHERE batch_key IN (",
        );
        push_keys(&mut counts, batch_keys);
        counts.push(") GROUP BY model_id, status ORDER BY model_id");
        let groups = counts.build().fetch_all(&self.readers).await?;
        let mut models: Vec<ModelWindow> = fold_model_counts(
            groups
                .iter()
                .map(group_from_row)
                .collect::<Result<_, _>>()?,
        )
        .into_iter()
        .map(|counts| ModelWindow {
            model_id: counts.model_id,
            model_name: counts.model_name,
            summary: counts.summary,
            latency_ms: LatencyStats::default(),
        })
        .collect();

        // Nearest rank per model with window functions: the value at 1-based rank ceil(p·n),
        // in integers: (n + 1) / 2 for p50 and (95n + 99) / 100 for p95.
        let mut latency = QueryBuilder::<Sqlite>::new(
            "SELECT model_id, MAX(n) AS n,
                MAX(CASE WHEN rn = (n + 1) / 2 THEN latency_ms END) AS p50,
                MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN latency_ms END) AS p95
             FROM (SELECT model_id, latency_ms,
                     ROW_NUMBER() OVER (PARTITION BY model_id ORDER BY latency_ms) AS rn,
                     COUNT(*) OVER (PARTITION BY model_id) AS n
                   FROM responses WHERE batch_key IN (",
        );
        push_keys(&mut latency, batch_keys);
        latency.push(")) GROUP BY model_id");
        for row in &latency.build().fetch_all(&self.readers).await? {
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
        // One round trip; each row is labelled by what it counts. The counts by status read
        // the table: no index carries `status`, which every claim and finish changes.
        let rows = sqlx::query(
            "SELECT status AS label, COUNT(*) AS n, NULL AS oldest
                FROM prompt_jobs GROUP BY status
             UNION ALL
             SELECT 'due', COUNT(*), MIN(next_attempt_at) FROM prompt_jobs
                WHERE status = 'queued' AND next_attempt_at <= ?1
             UNION ALL
             SELECT 'expired', COUNT(*), NULL FROM prompt_jobs
                WHERE status = 'processing' AND lease_expires_at < ?1",
        )
        .bind(ms(now))
        .fetch_all(&self.readers)
        .await?;
        let mut figures = QueueFigures::default();
        for row in &rows {
            let label: String = row.try_get("label")?;
            let n: i64 = row.try_get("n")?;
            match label.as_str() {
                "due" => {
                    let oldest: Option<i64> = row.try_get("oldest")?;
                    figures.due = DueStats {
                        due: n,
                        oldest_due_at: oldest.map(time),
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

/// `?, ?, …` bound to `keys`, inside an `IN (…)` the caller opened.
fn push_keys(query: &mut QueryBuilder<Sqlite>, keys: &[String]) {
    let mut list = query.separated(", ");
    for key in keys {
        list.push_bind(key.clone());
    }
}

/// One row of a `GROUP BY model_id, status` query (columns model_id, model_name, status, n,
/// attempts).
fn group_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ModelStatusGroup, sqlx::Error> {
    Ok(ModelStatusGroup {
        model_id: row.try_get("model_id")?,
        model_name: row.try_get("model_name")?,
        status: parse_status(&row.try_get::<String, _>("status")?)?,
        jobs: row.try_get("n")?,
        attempts: row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
    })
}
