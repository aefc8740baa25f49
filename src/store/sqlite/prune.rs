//! SQLite's side of retention: one bounded batch's write transaction (`BEGIN IMMEDIATE`, the
//! one writer), held for a few milliseconds so the queue keeps claiming and finishing in
//! between. Candidates are picked on the reader pool ([`crate::store::prune`]).

use chrono::{DateTime, Utc};

use super::{SqliteStore, ids_json};
use crate::store::insights_sql::DERIVED_TABLES;
use crate::store::prune::{
    ATTEMPT_PRUNABLE, JOB_PRUNABLE, candidates_sql, count_sql, counts_of, step_of,
};
use crate::store::sql::Time;
use crate::store::{PruneCounts, PruneStep, PruneTarget, Retention, StoreResult};

impl Retention for SqliteStore {
    async fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts> {
        let row = sqlx::query_as(sqlx::AssertSqlSafe(count_sql()))
            .bind(Time(cutoff))
            .fetch_one(&self.readers)
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
        let cutoff = Time(cutoff);
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(candidates_sql(target)))
            .bind(cutoff)
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.readers)
            .await?;
        let Some(mut step) = step_of(&ids) else {
            return Ok(PruneStep::default());
        };
        let ids = ids_json(&ids);
        let mut tx = self.begin().await?;
        match target {
            PruneTarget::Attempts => {
                step.changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM job_attempts AS a WHERE a.id IN (SELECT value FROM json_each($2)) \
                     AND {ATTEMPT_PRUNABLE}"
                )))
                .bind(cutoff)
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            PruneTarget::RawBodies => {
                step.changed = sqlx::query(
                    "UPDATE responses SET raw = NULL WHERE id IN (SELECT value FROM json_each($1)) \
                     AND raw IS NOT NULL",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            PruneTarget::Jobs => {
                let deleted: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM prompt_jobs AS j WHERE j.id IN (SELECT value FROM json_each($2)) \
                     AND {JOB_PRUNABLE} RETURNING id"
                )))
                .bind(cutoff)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                let deleted_json = ids_json(&deleted);
                step.changed = deleted.len() as u64;
                for table in DERIVED_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE response_id IN (SELECT id FROM responses \
                         WHERE job_id IN (SELECT value FROM json_each($1)))"
                    )))
                    .bind(&deleted_json)
                    .execute(&mut *tx)
                    .await?;
                }
                step.responses = sqlx::query(
                    "DELETE FROM responses WHERE job_id IN (SELECT value FROM json_each($1))",
                )
                .bind(&deleted_json)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each($1))",
                )
                .bind(&deleted_json)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(step)
    }
}
