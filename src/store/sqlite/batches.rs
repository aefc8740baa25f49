//! Provider batches on SQLite: each operation one `BEGIN IMMEDIATE` transaction of the one
//! writer (see [`crate::store::driver_batches`] for what each guarantees).

use super::claim::claim_picked;
use super::*;
use crate::domain::provider_batch::{
    LineResult, ProviderBatch, ProviderBatchPatch, ProviderBatchState,
};
use crate::store::driver_batches::ProviderBatches;

const BATCH_COLUMNS: &str = "id, model_id, batch_key, state, token, request_count, \
    input_file_id, provider_batch_id, provider_status, output_file_id, error_file_id, error, \
    polls, next_poll_at, created_at, updated_at, finished_at";

fn batch_from_row(row: &SqliteRow) -> Result<ProviderBatch, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(ProviderBatch {
        id: row.try_get("id")?,
        model_id: row.try_get("model_id")?,
        batch_key: row.try_get("batch_key")?,
        state: state
            .parse()
            .map_err(|e: crate::domain::ParseError| decode_error(e.0))?,
        token: row.try_get("token")?,
        request_count: row.try_get("request_count")?,
        input_file_id: row.try_get("input_file_id")?,
        provider_batch_id: row.try_get("provider_batch_id")?,
        provider_status: row.try_get("provider_status")?,
        output_file_id: row.try_get("output_file_id")?,
        error_file_id: row.try_get("error_file_id")?,
        error: row.try_get("error")?,
        polls: row.try_get("polls")?,
        next_poll_at: time(row.try_get("next_poll_at")?),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
        finished_at: opt_time(row.try_get("finished_at")?),
    })
}

/// Hands `attempts` of batch `id` back to `queued` due `now` and unlinks them, in `tx`.
async fn return_attempts(
    tx: &mut SqliteTx,
    id: i64,
    attempts: &[(JobId, i32)],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let json = attempts_json(attempts);
    let returned = sqlx::query(
        "UPDATE prompt_jobs SET status = 'queued', attempt_count = attempt_count - 1,
            lease_expires_at = NULL, next_attempt_at = ?2, started_at = NULL
         WHERE status IN ('processing', 'submitted') AND (id, attempt_count) IN
            (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )
    .bind(&json)
    .bind(ms(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM provider_batch_jobs WHERE batch_id = ?2 AND (job_id, attempt) IN
            (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )
    .bind(&json)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(returned)
}

/// The attempts of batch `id` still waiting for their line, in `executor`.
const PENDING: &str = "SELECT l.job_id, l.attempt FROM provider_batch_jobs l
     JOIN prompt_jobs j ON j.id = l.job_id
     WHERE l.batch_id = ?1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted')
        AND j.attempt_count = l.attempt
     ORDER BY l.job_id";

/// Batch `?1`'s pending jobs become `submitted` as the provider's id is recorded: from then on
/// only the batch moves them on, and no lease or rescue reads them.
const SUBMIT_JOBS: &str = "UPDATE prompt_jobs SET status = 'submitted', lease_expires_at = NULL
     FROM provider_batch_jobs l
     WHERE l.batch_id = ?1 AND l.outcome IS NULL AND prompt_jobs.id = l.job_id
        AND prompt_jobs.attempt_count = l.attempt AND prompt_jobs.status = 'processing'";

impl ProviderBatches for SqliteStore {
    async fn provider_batch_open(
        &self,
        model: ModelId,
        limit: i64,
        now: DateTime<Utc>,
        job_lease: Duration,
        hold: Duration,
        token: &str,
    ) -> StoreResult<Option<(ProviderBatch, Vec<ClaimedJob>)>> {
        let mut tx = self.begin().await?;
        let key: Option<String> = sqlx::query_scalar(
            "SELECT batch_key FROM prompt_jobs
             WHERE status = 'queued' AND model_id = ?1 AND next_attempt_at <= ?2
             ORDER BY next_attempt_at, id LIMIT 1",
        )
        .bind(model)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT j.id, p.active AND m.active AS runnable,
                COALESCE(v.text, p.text) AS prompt_text, j.prompt_version_id, j.gen_params,
                m.id AS m_id, m.name AS m_name, m.provider AS m_provider, m.model AS m_model,
                m.params AS m_params, m.active AS m_active, m.created_at AS m_created_at
             FROM prompt_jobs j
             JOIN prompts p ON p.id = j.prompt_id
             JOIN models m ON m.id = j.model_id
             LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id
             WHERE j.status = 'queued' AND j.model_id = ?1 AND j.batch_key = ?2
                AND j.next_attempt_at <= ?3
             ORDER BY j.next_attempt_at, j.id
             LIMIT ?4",
        )
        .bind(model)
        .bind(&key)
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = claim_picked(&mut tx, &rows, now, now + delay_of(job_lease), None).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let sql = format!(
            "INSERT INTO provider_batches (model_id, batch_key, state, token, request_count,
                next_poll_at, created_at, updated_at)
             VALUES (?1, ?2, 'preparing', ?3, ?4, ?5, ?6, ?6)
             RETURNING {BATCH_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(model)
            .bind(&key)
            .bind(token)
            .bind(claimed.len() as i64)
            .bind(ms(now + delay_of(hold)))
            .bind(ms(now))
            .fetch_one(&mut *tx)
            .await?;
        let batch = batch_from_row(&row)?;
        let attempts: Vec<(JobId, i32)> = claimed.iter().map(|c| (c.job.id, c.attempt)).collect();
        // A job handed back earlier is claimed again in the same attempt number: its old link
        // is replaced.
        sqlx::query(
            "INSERT INTO provider_batch_jobs (job_id, attempt, batch_id)
             SELECT value ->> 0, value ->> 1, ?2 FROM json_each(?1) WHERE TRUE
             ON CONFLICT (job_id, attempt) DO UPDATE
                SET batch_id = excluded.batch_id, outcome = NULL",
        )
        .bind(attempts_json(&attempts))
        .bind(batch.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((batch, claimed)))
    }

    async fn provider_batch_take(
        &self,
        models: &[ModelId],
        now: DateTime<Utc>,
        hold: Duration,
    ) -> StoreResult<Option<ProviderBatch>> {
        if models.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "UPDATE provider_batches SET next_poll_at = ?2, updated_at = ?1
             WHERE id = (SELECT id FROM provider_batches
                WHERE state NOT IN ('done', 'abandoned') AND next_poll_at <= ?1
                    AND model_id IN (SELECT value FROM json_each(?3))
                ORDER BY next_poll_at, id LIMIT 1)
             RETURNING {BATCH_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(ms(now + delay_of(hold)))
            .bind(ids_json(models))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(batch_from_row)
            .transpose()
            .map_err(Into::into)
    }

    async fn provider_batch_update(
        &self,
        id: i64,
        expected: ProviderBatchState,
        patch: &ProviderBatchPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE provider_batches SET
                state = COALESCE(?3, state),
                input_file_id = COALESCE(?4, input_file_id),
                provider_batch_id = COALESCE(?5, provider_batch_id),
                provider_status = COALESCE(?6, provider_status),
                output_file_id = COALESCE(?7, output_file_id),
                error_file_id = COALESCE(?8, error_file_id),
                error = COALESCE(?9, error),
                next_poll_at = COALESCE(?10, next_poll_at),
                polls = polls + ?11,
                updated_at = ?12,
                finished_at = CASE WHEN ?3 IN ('done', 'abandoned') THEN ?12 ELSE finished_at END
             WHERE id = ?1 AND state = ?2",
        )
        .bind(id)
        .bind(expected.as_str())
        .bind(patch.state.map(ProviderBatchState::as_str))
        .bind(patch.input_file_id.as_deref())
        .bind(patch.provider_batch_id.as_deref())
        .bind(patch.provider_status.as_deref())
        .bind(patch.output_file_id.as_deref())
        .bind(patch.error_file_id.as_deref())
        .bind(patch.error.as_deref())
        .bind(patch.next_poll_at.map(ms))
        .bind(i32::from(patch.polled))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 && patch.state == Some(ProviderBatchState::Submitted) {
            sqlx::query(SUBMIT_JOBS).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn provider_batch_pending(&self, id: i64) -> StoreResult<Vec<(JobId, i32)>> {
        Ok(sqlx::query_as(PENDING)
            .bind(id)
            .fetch_all(&self.readers)
            .await?)
    }

    async fn provider_batch_record(&self, lines: &[LineResult]) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let json = serde_json::Value::Array(
            lines
                .iter()
                .map(|(job, attempt, outcome)| serde_json::json!([job, attempt, outcome.as_str()]))
                .collect(),
        )
        .to_string();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE provider_batch_jobs SET outcome = l.value ->> 2
             FROM json_each(?1) AS l
             WHERE provider_batch_jobs.job_id = l.value ->> 0
                AND provider_batch_jobs.attempt = l.value ->> 1",
        )
        .bind(json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn provider_batch_return(
        &self,
        id: i64,
        attempts: &[(JobId, i32)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        if attempts.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let returned = return_attempts(&mut tx, id, attempts, now).await?;
        // Cut from the batch before it was sent: it never held them.
        sqlx::query("UPDATE provider_batches SET request_count = request_count - ?2 WHERE id = ?1")
            .bind(id)
            .bind(returned as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(returned)
    }

    async fn provider_batch_close(
        &self,
        id: i64,
        expected: ProviderBatchState,
        state: ProviderBatchState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.begin().await?;
        let closed = sqlx::query(
            "UPDATE provider_batches SET state = ?3, error = COALESCE(?4, error),
                updated_at = ?5, finished_at = ?5
             WHERE id = ?1 AND state = ?2",
        )
        .bind(id)
        .bind(expected.as_str())
        .bind(state.as_str())
        .bind(error)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            return Ok(None);
        }
        let pending: Vec<(JobId, i32)> =
            sqlx::query_as(PENDING).bind(id).fetch_all(&mut *tx).await?;
        let returned = return_attempts(&mut tx, id, &pending, now).await?;
        tx.commit().await?;
        Ok(Some(returned))
    }

    async fn provider_batch_cancel_job(
        &self,
        job: JobId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(ProviderBatch, u64)>> {
        let mut tx = self.begin().await?;
        let link: Option<(i64, i32)> = sqlx::query_as(
            "SELECT l.batch_id, l.attempt FROM provider_batch_jobs l
             JOIN prompt_jobs j ON j.id = l.job_id AND j.attempt_count = l.attempt
             WHERE l.job_id = ?1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted')",
        )
        .bind(job)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((batch_id, attempt)) = link else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = ?3, lease_expires_at = NULL,
                error_message = ?4
             WHERE id = ?1 AND status IN ('processing', 'submitted') AND attempt_count = ?2",
        )
        .bind(job)
        .bind(attempt)
        .bind(ms(now))
        .bind(SKIPPED_CANCELLED)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE provider_batch_jobs SET outcome = 'cancelled' WHERE job_id = ?1 AND attempt = ?2",
        )
        .bind(job)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        let pending: Vec<(JobId, i32)> = sqlx::query_as(PENDING)
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await?;
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(batch_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((batch_from_row(&row)?, pending.len() as u64)))
    }

    async fn provider_batch_get(&self, id: i64) -> StoreResult<Option<ProviderBatch>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref()
            .map(batch_from_row)
            .transpose()
            .map_err(Into::into)
    }

    async fn provider_batches_recent(&self, limit: i64) -> StoreResult<Vec<ProviderBatch>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches ORDER BY id DESC LIMIT ?1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(batch_from_row)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn provider_batch_ids_of_jobs(
        &self,
        jobs: &[JobId],
    ) -> StoreResult<Vec<(JobId, String)>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT j.id, b.provider_batch_id FROM prompt_jobs j
             JOIN provider_batch_jobs l ON l.job_id = j.id AND l.attempt = j.attempt_count
             JOIN provider_batches b ON b.id = l.batch_id
             WHERE j.id IN (SELECT value FROM json_each(?1)) AND j.status = 'submitted'
                AND l.outcome IS NULL AND b.provider_batch_id IS NOT NULL
             ORDER BY j.id",
        )
        .bind(ids_json(jobs))
        .fetch_all(&self.readers)
        .await?)
    }

    async fn provider_batch_of_job(&self, job: JobId) -> StoreResult<Option<ProviderBatch>> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = (
                SELECT l.batch_id FROM provider_batch_jobs l
                JOIN prompt_jobs j ON j.id = l.job_id AND j.attempt_count = l.attempt
                WHERE l.job_id = ?1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted'))
             AND state NOT IN ('done', 'abandoned')"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref()
            .map(batch_from_row)
            .transpose()
            .map_err(Into::into)
    }
}
