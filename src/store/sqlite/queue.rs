//! A job's way through the queue on SQLite: enqueue, claim, finish, rescue, heartbeat,
//! release, each in one `BEGIN IMMEDIATE` transaction of the one writer.

use super::claim::claim_picked;
use super::*;
use crate::store::Queue;
use crate::store::workers::WorkerId;

impl Queue for SqliteStore {
    async fn jobs_enqueue(
        &self,
        plan: &[PlannedBatch],
        options: EnqueueOptions,
    ) -> StoreResult<EnqueueReport> {
        if plan.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let due = serde_json::Value::Array(
            plan.iter()
                .map(|b| {
                    serde_json::json!([b.prompt_id, b.batch_key.as_str(), ms(b.scheduled_for)])
                })
                .collect(),
        )
        .to_string();
        let now = options.now.local();
        let mut tx = self.begin().await?;
        // The writer is single, so the rows with ids above the current maximum are ours.
        let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM prompt_jobs")
            .fetch_one(&mut *tx)
            .await?;
        // The database expands prompts × active models × runs itself (an all-models prompt
        // takes every model active now, another its own list): one statement whatever
        // the batch size. Each job records the prompt's current version and the model's
        // generation params: what its claim will send, whatever is edited before it runs.
        // `gen` is MATERIALIZED: the params are read once per model, not once per job.
        let inserted = sqlx::query(
            "WITH RECURSIVE
                due(prompt_id, batch_key, scheduled_for) AS (
                    SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)
                ),
                gen(id, params) AS MATERIALIZED (
                    SELECT id, NULLIF(json_patch('{}', json_object(
                        'temperature', params -> '$.temperature',
                        'maxTokens', params -> '$.maxTokens',
                        'seed', params -> '$.seed', 'extra', params -> '$.extra')), '{}')
                    FROM models WHERE active
                ),
                runs(run_index) AS (
                    SELECT 0
                    UNION ALL
                    SELECT run_index + 1 FROM runs
                    WHERE run_index + 1 < (SELECT COALESCE(MAX(runs), 1) FROM prompts)
                )
             INSERT INTO prompt_jobs (prompt_id, model_id, run_index, batch_key, status,
                attempt_count, max_attempts, scheduled_for, next_attempt_at, created_at,
                prompt_version_id, gen_params)
             SELECT d.prompt_id, m.id, r.run_index, d.batch_key, 'queued',
                0, ?2, d.scheduled_for, ?3, ?3, p.version_id, m.params
             FROM due d
             JOIN prompts p ON p.id = d.prompt_id AND p.active
             JOIN gen m ON p.all_models
                OR m.id IN (SELECT pm.model_id FROM prompt_models pm WHERE pm.prompt_id = p.id)
             JOIN runs r ON r.run_index < p.runs
             WHERE TRUE
             ORDER BY d.prompt_id, m.id, r.run_index, d.batch_key
             ON CONFLICT (prompt_id, model_id, run_index, batch_key) DO NOTHING",
        )
        .bind(&due)
        .bind(options.max_attempts)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let prompt_count: i64 = if inserted > 0 {
            sqlx::query_scalar("SELECT COUNT(DISTINCT prompt_id) FROM prompt_jobs WHERE id > ?1")
                .bind(before)
                .fetch_one(&mut *tx)
                .await?
        } else {
            0
        };
        if options.mark_prompts {
            // A prompt with no active model is left due: its batch is not used up, and a
            // model activated (or linked) later in the period still gets its jobs.
            sqlx::query(
                "UPDATE prompts SET last_run_at = ?2, last_batch_key = d.value ->> 1
                 FROM json_each(?1) AS d WHERE prompts.id = d.value ->> 0
                    AND EXISTS (SELECT 1 FROM models m WHERE m.active AND (prompts.all_models
                        OR m.id IN (SELECT pm.model_id FROM prompt_models pm
                            WHERE pm.prompt_id = prompts.id)))",
            )
            .bind(&due)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(EnqueueReport {
            jobs_created: inserted,
            prompt_count: prompt_count as u64,
        })
    }

    async fn jobs_claim_except(
        &self,
        size: ClaimSize,
        now: impl Into<Clock> + Send,
        lease: Duration,
        except: &[ModelId],
        worker: Option<WorkerId>,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now: Clock = now.into();
        let now = now.local();
        let lease_until = now + delay_of(lease);
        // Whether anything is due (and, for a claim ahead, whether enough is) is answered by
        // a reader, without the file's write lock: a sleeping worker wakes on every commit
        // another process makes to the file, and most of those wake-ups find nothing to claim.
        let due: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM prompt_jobs j
             WHERE j.status = 'queued' AND j.next_attempt_at <= ?1
                AND j.model_id NOT IN (SELECT value FROM json_each(?2))
             LIMIT ?3)",
        )
        .bind(ms(now))
        .bind(ids_json(except))
        .bind(size.probe().unwrap_or(1))
        .fetch_one(&self.readers)
        .await?;
        let limit = size.given_due(due);
        if due == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT j.id, p.active AND m.active AS runnable,
                COALESCE(v.text, p.text) AS prompt_text, j.prompt_version_id, j.gen_params,
                m.id AS m_id, m.name AS m_name, m.provider AS m_provider, m.model AS m_model,
                m.params AS m_params, m.active AS m_active, m.created_at AS m_created_at
             FROM prompt_jobs j
             JOIN prompts p ON p.id = j.prompt_id
             JOIN models m ON m.id = j.model_id
             LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id
             WHERE j.status = 'queued' AND j.next_attempt_at <= ?1
                AND j.model_id NOT IN (SELECT value FROM json_each(?3))
             ORDER BY j.next_attempt_at, j.id
             LIMIT ?2",
        )
        .bind(ms(now))
        .bind(limit)
        .bind(ids_json(except))
        .fetch_all(&mut *tx)
        .await?;
        let claimed = claim_picked(&mut tx, &rows, now, lease_until, worker).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> StoreResult<ClaimOne> {
        let now: Clock = now.into();
        let now = now.local();
        let lease_until = now + delay_of(lease);
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT j.id, j.status, p.active AND m.active AS runnable,
                COALESCE(v.text, p.text) AS prompt_text, j.prompt_version_id, j.gen_params,
                m.id AS m_id, m.name AS m_name, m.provider AS m_provider, m.model AS m_model,
                m.params AS m_params, m.active AS m_active, m.created_at AS m_created_at
             FROM prompt_jobs j
             JOIN prompts p ON p.id = j.prompt_id
             JOIN models m ON m.id = j.model_id
             LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id
             WHERE j.id = ?1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ClaimOne::NotFound);
        };
        let status = parse_status(&row.try_get::<String, _>("status")?)?;
        if status != JobStatus::Queued {
            return Ok(ClaimOne::NotClaimable(status));
        }
        let runnable: bool = row.try_get("runnable")?;
        let mut claimed =
            claim_picked(&mut tx, std::slice::from_ref(&row), now, lease_until, None).await?;
        tx.commit().await?;
        match claimed.pop() {
            Some(job) => Ok(ClaimOne::Claimed(Box::new(job))),
            None if !runnable => Ok(ClaimOne::Skipped),
            None => Ok(ClaimOne::NotClaimable(status)),
        }
    }

    async fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<FinishResult>> {
        let now: Clock = now.into();
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let results = finish::finish_batch(&mut tx, finishes, now.local()).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn jobs_rescue_expired(&self, now: impl Into<Clock> + Send) -> StoreResult<Vec<Rescued>> {
        let now: Clock = now.into();
        let now = now.local();
        let mut tx = self.begin().await?;
        let rescued = hand_back(&mut tx, now, ABANDONED, "lease_expires_at < ?1", None).await?;
        tx.commit().await?;
        Ok(rescued)
    }

    async fn jobs_heartbeat(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> StoreResult<Vec<(JobId, i32)>> {
        let now: Clock = now.into();
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let lease_until = now.local() + delay_of(lease);
        let mut tx = self.begin().await?;
        let owned = sqlx::query_as(
            "UPDATE prompt_jobs SET lease_expires_at = ?2
             WHERE status = 'processing' AND (id, attempt_count) IN
                (SELECT value ->> 0, value ->> 1 FROM json_each(?1))
             RETURNING id, attempt_count",
        )
        .bind(attempts_json(attempts))
        .bind(ms(lease_until))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(owned)
    }

    async fn jobs_release(
        &self,
        attempts: &[(JobId, i32)],
        now: impl Into<Clock> + Send,
        delay: Duration,
    ) -> StoreResult<u64> {
        let now: Clock = now.into();
        if attempts.is_empty() {
            return Ok(0);
        }
        let due_at = now.local() + delay_of(delay);
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "UPDATE prompt_jobs SET status = 'queued', attempt_count = attempt_count - 1,
                lease_expires_at = NULL, next_attempt_at = ?2, started_at = NULL
             WHERE status = 'processing' AND (id, attempt_count) IN
                (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
        )
        .bind(attempts_json(attempts))
        .bind(ms(due_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }
}

/// Hands back the `processing` jobs matching `condition` (SQL that may read `?1`, the clock,
/// and `?3`, `extra`): `queued` and due now, or `failed` once their attempts are spent, each
/// abandoned attempt recorded with `message`.
pub(super) async fn hand_back(
    tx: &mut SqliteTx,
    now: chrono::DateTime<chrono::Utc>,
    message: &str,
    condition: &str,
    extra: Option<&str>,
) -> StoreResult<Vec<Rescued>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE prompt_jobs SET
            status = CASE WHEN attempt_count - rate_limited_count >= max_attempts
                THEN 'failed' ELSE 'queued' END,
            error_message = ?2,
            next_attempt_at = ?1,
            lease_expires_at = NULL,
            finished_at = CASE WHEN attempt_count - rate_limited_count >= max_attempts
                THEN ?1 END
         WHERE status = 'processing' AND {condition}
         RETURNING id, attempt_count, started_at, status"
    )))
    .bind(ms(now))
    .bind(message)
    .bind(extra)
    .fetch_all(&mut **tx)
    .await?;
    let mut rescued = Vec::with_capacity(rows.len());
    for row in &rows {
        let job = Rescued {
            job_id: row.try_get("id")?,
            attempt: row.try_get("attempt_count")?,
            status: parse_status(&row.try_get::<String, _>("status")?)?,
        };
        sqlx::query(
            "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                error_class, error_message)
             VALUES (?1, ?2, ?3, ?4, 'abandoned', 'abandoned', ?5)",
        )
        .bind(job.job_id)
        .bind(job.attempt)
        .bind(row.try_get::<Option<i64>, _>("started_at")?)
        .bind(ms(now))
        .bind(message)
        .execute(&mut **tx)
        .await?;
        rescued.push(job);
    }
    rescued.sort_by_key(|job| job.job_id);
    Ok(rescued)
}
