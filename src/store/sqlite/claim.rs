//! The common tail of SQLite's two claims: the picked rows become `processing` (or `skipped`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{JOB_COLUMNS, Picked, SqliteTx, ids_json, ms, snapshot_model};
use crate::domain::{ClaimedJob, Job};
use crate::store::sql::{ClaimModels, job_from_row};
use crate::store::workers::WorkerId;
use crate::store::{SKIPPED_INACTIVE, StoreResult};

/// Claims the picked rows (read in this transaction): runnable ones become `processing`,
/// the others `skipped`. Returns the claimed jobs in pick order.
pub(super) async fn claim_picked(
    tx: &mut SqliteTx,
    rows: &[SqliteRow],
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    worker: Option<WorkerId>,
) -> StoreResult<Vec<ClaimedJob>> {
    let mut picked = HashMap::with_capacity(rows.len());
    let mut order = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    let mut models = ClaimModels::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if row.try_get::<bool, _>("runnable")? {
            picked.insert(
                id,
                Picked {
                    prompt_text: row.try_get("prompt_text")?,
                    model: snapshot_model(row, &mut models)?,
                },
            );
            order.push(id);
        } else {
            skipped.push(id);
        }
    }
    if !skipped.is_empty() {
        sqlx::query(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = ?2, error_message = ?3
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json(&skipped))
        .bind(ms(now))
        .bind(SKIPPED_INACTIVE)
        .execute(&mut **tx)
        .await?;
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE prompt_jobs SET status = 'processing', attempt_count = attempt_count + 1,
            started_at = ?2, lease_expires_at = ?3, finished_at = NULL, worker_id = ?4
         WHERE id IN (SELECT value FROM json_each(?1))
         RETURNING {JOB_COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids_json(&order))
        .bind(ms(now))
        .bind(ms(lease_until))
        .bind(worker)
        .fetch_all(&mut **tx)
        .await?;
    let mut jobs: HashMap<i64, Job> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let job = job_from_row(row)?;
        jobs.insert(job.id, job);
    }
    let mut claimed = Vec::with_capacity(order.len());
    for id in order {
        if let (Some(job), Some(pick)) = (jobs.remove(&id), picked.remove(&id)) {
            claimed.push(ClaimedJob {
                attempt: job.claim_number(),
                prompt_text: pick.prompt_text,
                model: pick.model,
                job,
            });
        }
    }
    Ok(claimed)
}
