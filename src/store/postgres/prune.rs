//! PostgreSQL's side of retention: one bounded batch's write transaction, over the ids picked
//! by [`crate::store::prune`]. It locks only the rows it changes, for milliseconds, never a
//! table; PostgreSQL re-evaluates the WHERE of a DELETE on a row changed meanwhile, so the
//! re-checks hold under the row lock.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::insights_sql::DERIVED_TABLES;
use crate::store::prune::{
    ATTEMPT_PRUNABLE, JOB_PRUNABLE, candidates_sql, count_sql, counts_of, step_of,
};
use crate::store::{PruneCounts, PruneStep, PruneTarget, Retention, StoreResult};

impl Retention for PostgresStore {
    async fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts> {
        let row = sqlx::query_as(sqlx::AssertSqlSafe(count_sql()))
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        Ok(counts_of(row))
    }

    async fn prune_batch(
        &self,
        target: PruneTarget,
        cutoff: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> StoreResult<PruneStep> {
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(candidates_sql(target)))
            .bind(cutoff)
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        let Some(mut step) = step_of(&ids) else {
            return Ok(PruneStep::default());
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
                for table in DERIVED_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE response_id IN \
                         (SELECT id FROM responses WHERE job_id = ANY($1))"
                    )))
                    .bind(&deleted)
                    .execute(&mut *tx)
                    .await?;
                }
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
