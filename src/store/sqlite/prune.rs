//! SQLite's side of retention: counts what a prune would remove, and removes it one bounded
//! batch at a time.
//!
//! Candidates are picked on the reader pool, outside any transaction; the write transaction
//! (`BEGIN IMMEDIATE`, the one writer) then only touches those ids, re-checking that each is
//! still old and not live, so the write lock is held for a few milliseconds per batch and the
//! queue keeps claiming and finishing in between.

use crate::store::Retention;
use chrono::{DateTime, Utc};

use super::{SqliteStore, ids_json, ms};
use crate::store::{PruneCounts, PruneStep, PruneTarget, StoreResult};

/// An attempt is prunable once it is old and its job is not live (or gone).
const ATTEMPT_PRUNABLE: &str = "a.finished_at < ?1 AND NOT EXISTS (SELECT 1 FROM prompt_jobs j \
     WHERE j.id = a.job_id AND j.status IN ('queued', 'processing'))";
/// A job is prunable once it ended (never `queued` or `processing`) before the cutoff.
const JOB_PRUNABLE: &str = "j.status IN ('succeeded', 'failed', 'skipped') \
     AND COALESCE(j.finished_at, j.created_at) < ?1";

impl Retention for SqliteStore {
    async fn prune_count(&self, cutoff: DateTime<Utc>) -> StoreResult<PruneCounts> {
        let cutoff = ms(cutoff);
        let count = async |sql: String| -> StoreResult<u64> {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(cutoff)
                .fetch_one(&self.readers)
                .await?;
            Ok(n.max(0) as u64)
        };
        Ok(PruneCounts {
            attempts: count(format!(
                "SELECT COUNT(*) FROM job_attempts a WHERE {ATTEMPT_PRUNABLE}"
            ))
            .await?,
            raw_bodies: count(
                "SELECT COUNT(*) FROM responses WHERE created_at < ?1 AND raw IS NOT NULL".into(),
            )
            .await?,
            jobs: count(format!(
                "SELECT COUNT(*) FROM prompt_jobs j WHERE {JOB_PRUNABLE}"
            ))
            .await?,
            responses: count(format!(
                "SELECT COUNT(*) FROM responses r WHERE r.job_id IN \
                 (SELECT j.id FROM prompt_jobs j WHERE {JOB_PRUNABLE})"
            ))
            .await?,
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
                "SELECT a.id FROM job_attempts a WHERE a.id > ?2 AND {ATTEMPT_PRUNABLE} \
                 ORDER BY a.id LIMIT ?3"
            ),
            PruneTarget::RawBodies => "SELECT id FROM responses WHERE id > ?2 AND created_at < ?1 \
                 AND raw IS NOT NULL ORDER BY id LIMIT ?3"
                .to_owned(),
            PruneTarget::Jobs => format!(
                "SELECT j.id FROM prompt_jobs j WHERE j.id > ?2 AND {JOB_PRUNABLE} \
                 ORDER BY j.id LIMIT ?3"
            ),
        };
        let cutoff = ms(cutoff);
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(candidates))
            .bind(cutoff)
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.readers)
            .await?;
        let Some(&last_id) = ids.last() else {
            return Ok(PruneStep::default());
        };
        let ids = ids_json(&ids);
        let mut tx = self.begin().await?;
        let mut step = PruneStep {
            last_id: Some(last_id),
            ..PruneStep::default()
        };
        match target {
            PruneTarget::Attempts => {
                step.changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM job_attempts AS a WHERE a.id IN (SELECT value FROM json_each(?2)) \
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
                    "UPDATE responses SET raw = NULL WHERE id IN (SELECT value FROM json_each(?1)) \
                     AND raw IS NOT NULL",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            PruneTarget::Jobs => {
                let deleted: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM prompt_jobs AS j WHERE j.id IN (SELECT value FROM json_each(?2)) \
                     AND {JOB_PRUNABLE} RETURNING id"
                )))
                .bind(cutoff)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                let deleted_json = ids_json(&deleted);
                step.changed = deleted.len() as u64;
                step.responses = sqlx::query(
                    "DELETE FROM responses WHERE job_id IN (SELECT value FROM json_each(?1))",
                )
                .bind(&deleted_json)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(?1))",
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
