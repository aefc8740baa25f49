//! Provider batches on PostgreSQL: each operation one statement or one short transaction
//! (see [`crate::store::driver_batches`] for what each guarantees).

use super::*;
use crate::domain::provider_batch::{
    LineResult, ProviderBatch, ProviderBatchPatch, ProviderBatchState,
};
use crate::store::driver_batches::ProviderBatches;

const BATCH_COLUMNS: &str = "id, model_id, batch_key, state, token, request_count, \
    input_file_id, provider_batch_id, provider_status, output_file_id, error_file_id, error, \
    polls, next_poll_at, created_at, updated_at, finished_at";

fn batch_from_row(row: &PgRow) -> Result<ProviderBatch, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(ProviderBatch {
        id: row.try_get("id")?,
        model_id: row.try_get("model_id")?,
        batch_key: row.try_get("batch_key")?,
        state: state
            .parse()
            .map_err(|e: crate::domain::ParseError| sqlx::Error::Decode(e.0.into()))?,
        token: row.try_get("token")?,
        request_count: row.try_get("request_count")?,
        input_file_id: row.try_get("input_file_id")?,
        provider_batch_id: row.try_get("provider_batch_id")?,
        provider_status: row.try_get("provider_status")?,
        output_file_id: row.try_get("output_file_id")?,
        error_file_id: row.try_get("error_file_id")?,
        error: row.try_get("error")?,
        polls: row.try_get("polls")?,
        next_poll_at: row.try_get("next_poll_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// The attempts of batch `$1` still waiting for their line.
const PENDING: &str = "SELECT l.job_id, l.attempt FROM provider_batch_jobs l
     JOIN prompt_jobs j ON j.id = l.job_id
     WHERE l.batch_id = $1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted')
        AND j.attempt_count = l.attempt
     ORDER BY l.job_id";

/// Batch `$1`'s pending jobs become `submitted` as the provider's id is recorded: from then on
/// only the batch moves them on, and no lease or rescue reads them.
const SUBMIT_JOBS: &str = "UPDATE prompt_jobs j SET status = 'submitted', lease_expires_at = NULL
     FROM provider_batch_jobs l
     WHERE l.batch_id = $1 AND l.outcome IS NULL AND j.id = l.job_id
        AND j.attempt_count = l.attempt AND j.status = 'processing'";

/// Hands `attempts` of batch `id` back to `queued` due `now` and unlinks them, in `tx`.
async fn return_attempts(
    tx: &mut PgTx,
    id: i64,
    attempts: &[(JobId, i32)],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let (ids, numbers): (Vec<i64>, Vec<i32>) = attempts.iter().copied().unzip();
    let returned = sqlx::query(
        "UPDATE prompt_jobs j SET status = 'queued', attempt_count = j.attempt_count - 1,
            lease_expires_at = NULL, started_at = NULL, next_attempt_at = $3
         FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
         WHERE j.id = t.id AND j.status IN ('processing', 'submitted') AND j.attempt_count = t.attempt",
    )
    .bind(&ids)
    .bind(&numbers)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM provider_batch_jobs l USING unnest($1::bigint[], $2::int[]) AS t(id, attempt)
         WHERE l.batch_id = $3 AND l.job_id = t.id AND l.attempt = t.attempt",
    )
    .bind(&ids)
    .bind(&numbers)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if returned > 0 {
        notify_jobs(tx).await?;
    }
    Ok(returned)
}

impl ProviderBatches for PostgresStore {
    async fn provider_batch_open(
        &self,
        model: ModelId,
        limit: i64,
        now: DateTime<Utc>,
        job_lease: Duration,
        hold: Duration,
        token: &str,
    ) -> StoreResult<Option<(ProviderBatch, Vec<ClaimedJob>)>> {
        let mut tx = self.pool.begin().await?;
        let key: Option<String> = sqlx::query_scalar(
            "SELECT j.batch_key FROM job_queue q JOIN prompt_jobs j ON j.id = q.job_id
             WHERE q.model_id = $1 AND q.next_attempt_at <= $2 AND j.status = 'queued'
             ORDER BY q.next_attempt_at, q.job_id LIMIT 1",
        )
        .bind(model)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(None);
        };
        let rows = sqlx::query(claim_update!(
            "SELECT j.id, j.prompt_id, j.model_id, j.prompt_version_id
             FROM job_queue q JOIN prompt_jobs j ON j.id = q.job_id
             WHERE j.status = 'queued' AND q.model_id = $3 AND j.batch_key = $4
                AND q.next_attempt_at <= COALESCE($1::timestamptz, now())
             ORDER BY q.next_attempt_at, q.job_id
             LIMIT $5
             FOR UPDATE OF j SKIP LOCKED",
            worker = "NULL"
        ))
        .bind(Some(now))
        .bind(micros(job_lease))
        .bind(model)
        .bind(&key)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut models = ClaimModels::new();
        for row in &rows {
            if row.try_get::<bool, _>("runnable")? {
                claimed.push(claimed_from_row(row, &mut models)?);
            }
        }
        // The claim statement turns the commit's flush off (a lost claim costs a repeated
        // call); this one is followed by an upload and a submission, which must never be
        // repeated because a commit was lost: it waits for its flush.
        sqlx::query("SELECT set_config('synchronous_commit', 'on', true)")
            .execute(&mut *tx)
            .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let sql = format!(
            "INSERT INTO provider_batches (model_id, batch_key, state, token, request_count,
                next_poll_at, created_at, updated_at)
             VALUES ($1, $2, 'preparing', $3, $4, $5, $6, $6)
             RETURNING {BATCH_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(model)
            .bind(&key)
            .bind(token)
            .bind(claimed.len() as i32)
            .bind(now + chrono::Duration::microseconds(micros(hold)))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let batch = batch_from_row(&row)?;
        let (ids, numbers): (Vec<i64>, Vec<i32>) =
            claimed.iter().map(|c| (c.job.id, c.attempt)).unzip();
        // A job handed back earlier is claimed again in the same attempt number: its old link
        // is replaced.
        sqlx::query(
            "INSERT INTO provider_batch_jobs (job_id, attempt, batch_id)
             SELECT t.id, t.attempt, $3 FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             ON CONFLICT (job_id, attempt) DO UPDATE
                SET batch_id = excluded.batch_id, outcome = NULL",
        )
        .bind(&ids)
        .bind(&numbers)
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
            "UPDATE provider_batches SET next_poll_at = $2, updated_at = $1
             WHERE id = (SELECT id FROM provider_batches
                WHERE state NOT IN ('done', 'abandoned') AND next_poll_at <= $1
                    AND model_id = ANY($3::bigint[])
                ORDER BY next_poll_at, id LIMIT 1
                FOR UPDATE SKIP LOCKED)
             RETURNING {BATCH_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(now + chrono::Duration::microseconds(micros(hold)))
            .bind(models)
            .fetch_optional(&self.pool)
            .await?;
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
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE provider_batches SET
                state = COALESCE($3, state),
                input_file_id = COALESCE($4, input_file_id),
                provider_batch_id = COALESCE($5, provider_batch_id),
                provider_status = COALESCE($6, provider_status),
                output_file_id = COALESCE($7, output_file_id),
                error_file_id = COALESCE($8, error_file_id),
                error = COALESCE($9, error),
                next_poll_at = COALESCE($10, next_poll_at),
                polls = polls + $11,
                updated_at = $12,
                finished_at = CASE WHEN $3 IN ('done', 'abandoned') THEN $12 ELSE finished_at END
             WHERE id = $1 AND state = $2",
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
        .bind(patch.next_poll_at)
        .bind(i32::from(patch.polled))
        .bind(now)
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
            .fetch_all(&self.pool)
            .await?)
    }

    async fn provider_batch_record(&self, lines: &[LineResult]) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = lines.iter().map(|l| l.0).collect();
        let numbers: Vec<i32> = lines.iter().map(|l| l.1).collect();
        let outcomes: Vec<&str> = lines.iter().map(|l| l.2.as_str()).collect();
        sqlx::query(
            "UPDATE provider_batch_jobs l SET outcome = t.outcome
             FROM unnest($1::bigint[], $2::int[], $3::text[]) AS t(id, attempt, outcome)
             WHERE l.job_id = t.id AND l.attempt = t.attempt",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(&outcomes)
        .execute(&self.pool)
        .await?;
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
        let mut tx = self.pool.begin().await?;
        let returned = return_attempts(&mut tx, id, attempts, now).await?;
        // Cut from the batch before it was sent: it never held them.
        sqlx::query("UPDATE provider_batches SET request_count = request_count - $2 WHERE id = $1")
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
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query(
            "UPDATE provider_batches SET state = $3, error = COALESCE($4, error),
                updated_at = $5, finished_at = $5
             WHERE id = $1 AND state = $2",
        )
        .bind(id)
        .bind(expected.as_str())
        .bind(state.as_str())
        .bind(error)
        .bind(now)
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
        let mut tx = self.pool.begin().await?;
        let link: Option<(i64, i32)> = sqlx::query_as(
            "SELECT l.batch_id, l.attempt FROM provider_batch_jobs l
             JOIN prompt_jobs j ON j.id = l.job_id AND j.attempt_count = l.attempt
             WHERE l.job_id = $1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted')
             FOR UPDATE OF j",
        )
        .bind(job)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((batch_id, attempt)) = link else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = $3, lease_expires_at = NULL,
                error_message = $4
             WHERE id = $1 AND status IN ('processing', 'submitted') AND attempt_count = $2",
        )
        .bind(job)
        .bind(attempt)
        .bind(now)
        .bind(SKIPPED_CANCELLED)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE provider_batch_jobs SET outcome = 'cancelled' WHERE job_id = $1 AND attempt = $2",
        )
        .bind(job)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        let pending: Vec<(JobId, i32)> = sqlx::query_as(PENDING)
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await?;
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(batch_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((batch_from_row(&row)?, pending.len() as u64)))
    }

    async fn provider_batch_get(&self, id: i64) -> StoreResult<Option<ProviderBatch>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(batch_from_row)
            .transpose()
            .map_err(Into::into)
    }

    async fn provider_batches_recent(&self, limit: i64) -> StoreResult<Vec<ProviderBatch>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM provider_batches ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
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
             WHERE j.id = ANY($1::bigint[]) AND j.status = 'submitted'
                AND l.outcome IS NULL AND b.provider_batch_id IS NOT NULL
             ORDER BY j.id",
        )
        .bind(jobs)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn provider_batch_of_job(&self, job: JobId) -> StoreResult<Option<ProviderBatch>> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM provider_batches WHERE id = (
                SELECT l.batch_id FROM provider_batch_jobs l
                JOIN prompt_jobs j ON j.id = l.job_id AND j.attempt_count = l.attempt
                WHERE l.job_id = $1 AND l.outcome IS NULL AND j.status IN ('processing', 'submitted'))
             AND state NOT IN ('done', 'abandoned')"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(batch_from_row)
            .transpose()
            .map_err(Into::into)
    }
}
