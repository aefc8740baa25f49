//! PostgreSQL's side of retention: counts what a prune would remove, and removes it one
//! bounded batch at a time.
//!
//! Each batch is one short transaction over at most `limit` ids picked in id order (keyset:
//! the next batch starts after the last id), so it locks only the rows it changes, for
//! milliseconds, and never a table. The statements re-check that a row is still old and not
//! live under its row lock (PostgreSQL re-evaluates the WHERE of a DELETE on a row changed
//! meanwhile), so a job retried while a prune runs is kept.

use crate::store::Retention;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{PruneCounts, PruneStep, PruneTarget, StoreResult};

/// An attempt is prunable once it is old and its job is not live (or gone).
const ATTEMPT_PRUNABLE: &str = "a.finished_at < $1 AND NOT EXISTS (SELECT 1 FROM prompt_jobs j \
     WHERE j.id = a.job_id AND j.status IN ('queued', 'processing'))";
/// A job is prunable once it ended (never `queued` or `processing`) before the cutoff.
const JOB_PRUNABLE: &str = "j.status IN ('succeeded', 'failed', 'skipped') \
     AND COALESCE(j.finished_at, j.created_at) < $1";

impl Retention for PostgresStore {
    async fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts> {
        let row: (i64, i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT
                (SELECT count(*) FROM job_attempts a WHERE {ATTEMPT_PRUNABLE}),
                (SELECT count(*) FROM responses WHERE created_at < $1 AND raw IS NOT NULL),
                (SELECT count(*) FROM prompt_jobs j WHERE {JOB_PRUNABLE}),
                (SELECT count(*) FROM responses r WHERE r.job_id IN
                    (SELECT j.id FROM prompt_jobs j WHERE {JOB_PRUNABLE}))"
        )))
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        let n = |v: i64| v.max(0) as u64;
        Ok(PruneCounts {
            attempts: n(row.0),
            raw_bodies: n(row.1),
            jobs: n(row.2),
            responses: n(row.3),
        })
    }

    async fn prune_batch(
        &self,
        target: PruneTarget,
        cutoff: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> StoreResult<PruneStep> {
        let candidates = match target {
            PruneTarget::Attempts => format!(
                "SELECT a.id FROM job_attempts a WHERE a.id > $2 AND {ATTEMPT_PRUNABLE} \
                 ORDER BY a.id LIMIT $3"
            ),
            PruneTarget::RawBodies => "SELECT id FROM responses WHERE id > $2 AND created_at < $1 \
                 AND raw IS NOT NULL ORDER BY id LIMIT $3"
                .to_owned(),
            PruneTarget::Jobs => format!(
                "SELECT j.id FROM prompt_jobs j WHERE j.id > $2 AND {JOB_PRUNABLE} \
                 ORDER BY j.id LIMIT $3"
            ),
        };
        // Picked outside the transaction: the transaction then only touches these rows.
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(candidates))
            .bind(cutoff)
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        let Some(&last_id) = ids.last() else {
            return Ok(PruneStep::default());
        };
        let mut step = PruneStep {
            last_id: Some(last_id),
            ..PruneStep::default()
        };
        let mut tx = self.pool.begin().await?;
        match target {
            PruneTarget::Attempts => {
                step.changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM job_attempts a WHERE a.id = ANY($2) AND {ATTEMPT_PRUNABLE}"
                )))
                .bind(cutoff)
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            PruneTarget::RawBodies => {
                step.changed = sqlx::query(
                    "UPDATE responses SET raw = NULL WHERE id = ANY($1) AND raw IS NOT NULL",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            PruneTarget::Jobs => {
                let deleted: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM prompt_jobs j WHERE j.id = ANY($2) AND {JOB_PRUNABLE} \
                     RETURNING j.id"
                )))
                .bind(cutoff)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                step.changed = deleted.len() as u64;
                step.responses = sqlx::query("DELETE FROM responses WHERE job_id = ANY($1)")
                    .bind(&deleted)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM job_attempts WHERE job_id = ANY($1)")
                    .bind(&deleted)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(step)
    }
}
