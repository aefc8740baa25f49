//! The queue's operations on SQLite: enqueue, claim, finish, rescue, heartbeat, release,
//! cancel, retry, the job queries, pauses and rate reservations.

use super::*;
use crate::store::RateGrant;

impl SqliteStore {
    // ---- the queue

    pub async fn jobs_enqueue(
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
        // The database expands prompts × active models × runs itself: one statement whatever
        // the batch size. Each job records the prompt's current version and the model's
        // generation params: what its claim will send, whatever is edited before it runs.
        let inserted = sqlx::query(
            "WITH RECURSIVE
                due(prompt_id, batch_key, scheduled_for) AS (
                    SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)
                ),
                gen(id, params) AS (
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
             SELECT d.prompt_id, pm.model_id, r.run_index, d.batch_key, 'queued',
                0, ?2, d.scheduled_for, ?3, ?3, p.version_id, m.params
             FROM due d
             JOIN prompts p ON p.id = d.prompt_id AND p.active
             JOIN prompt_models pm ON pm.prompt_id = p.id
             JOIN gen m ON m.id = pm.model_id
             JOIN runs r ON r.run_index < p.runs
             WHERE TRUE
             ORDER BY d.prompt_id, pm.model_id, r.run_index, d.batch_key
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
            sqlx::query(
                "UPDATE prompts SET last_run_at = ?2, last_batch_key = d.value ->> 1
                 FROM json_each(?1) AS d WHERE prompts.id = d.value ->> 0",
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

    pub async fn jobs_claim(
        &self,
        limit: i64,
        now: Clock,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now.local();
        let lease_until = now + delay_of(lease);
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
             ORDER BY j.next_attempt_at, j.id
             LIMIT ?2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = claim_picked(&mut tx, &rows, now, lease_until).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    pub async fn job_claim(&self, id: JobId, now: Clock, lease: Duration) -> StoreResult<ClaimOne> {
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
            claim_picked(&mut tx, std::slice::from_ref(&row), now, lease_until).await?;
        tx.commit().await?;
        match claimed.pop() {
            Some(job) => Ok(ClaimOne::Claimed(Box::new(job))),
            None if !runnable => Ok(ClaimOne::Skipped),
            None => Ok(ClaimOne::NotClaimable(status)),
        }
    }

    pub async fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: Clock,
    ) -> StoreResult<Vec<FinishResult>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let results = finish::finish_batch(&mut tx, finishes, now.local()).await?;
        tx.commit().await?;
        Ok(results)
    }

    pub async fn jobs_rescue_expired(&self, now: Clock) -> StoreResult<Vec<Rescued>> {
        let now = now.local();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "UPDATE prompt_jobs SET
                status = CASE WHEN attempt_count - rate_limited_count >= max_attempts
                    THEN 'failed' ELSE 'queued' END,
                error_message = ?2,
                next_attempt_at = ?1,
                lease_expires_at = NULL,
                finished_at = CASE WHEN attempt_count - rate_limited_count >= max_attempts
                    THEN ?1 END
             WHERE status = 'processing' AND lease_expires_at < ?1
             RETURNING id, attempt_count, started_at, status",
        )
        .bind(ms(now))
        .bind(ABANDONED)
        .fetch_all(&mut *tx)
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
            .bind(ABANDONED)
            .execute(&mut *tx)
            .await?;
            rescued.push(job);
        }
        tx.commit().await?;
        rescued.sort_by_key(|job| job.job_id);
        Ok(rescued)
    }

    pub async fn jobs_heartbeat(
        &self,
        attempts: &[(JobId, i32)],
        now: Clock,
        lease: Duration,
    ) -> StoreResult<Vec<(JobId, i32)>> {
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

    pub async fn jobs_release(
        &self,
        attempts: &[(JobId, i32)],
        now: Clock,
        delay: Duration,
    ) -> StoreResult<u64> {
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

    pub async fn jobs_cancel(
        &self,
        selector: &JobSelector,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = ",
        );
        query
            .push_bind(ms(now))
            .push(", error_message = ")
            .push_bind(SKIPPED_CANCELLED)
            .push(" WHERE status = 'queued'");
        push_selector(&mut query, selector);
        let mut tx = self.begin().await?;
        let cancelled = query.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(cancelled)
    }

    pub async fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: Clock,
    ) -> StoreResult<u64> {
        let now = now.local();
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE prompt_jobs SET status = 'queued', finished_at = NULL, max_attempts = attempt_count - rate_limited_count + ",
        );
        query
            .push_bind(extra_attempts)
            .push(", next_attempt_at = ")
            .push_bind(ms(now))
            .push(" WHERE status IN ('failed', 'skipped')");
        push_selector(&mut query, selector);
        let mut tx = self.begin().await?;
        let retried = query.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(retried)
    }

    pub async fn pause(
        &self,
        scope: PauseScope,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope) DO UPDATE SET
                until = max(pauses.until, excluded.until), reason = excluded.reason",
        )
        .bind(scope.key())
        .bind(ms(until))
        .bind(reason)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let moved = match scope {
            PauseScope::Model(id) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = ?2
                     WHERE model_id = ?1 AND status = 'queued' AND next_attempt_at < ?2",
            )
            .bind(id)
            .bind(ms(until))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Provider(kind) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = ?2
                     WHERE status = 'queued' AND next_attempt_at < ?2
                       AND model_id IN (SELECT id FROM models WHERE provider = ?1)",
            )
            .bind(kind.as_str())
            .bind(ms(until))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Endpoint(_) => 0,
        };
        tx.commit().await?;
        Ok(moved)
    }

    pub async fn pauses_active(&self, now: DateTime<Utc>) -> StoreResult<Vec<Pause>> {
        let rows = sqlx::query(
            "SELECT scope, until, reason, strikes FROM pauses WHERE until > ?1 ORDER BY scope",
        )
        .bind(ms(now))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Pause {
                    scope: row.try_get("scope")?,
                    until: time(row.try_get("until")?),
                    reason: row.try_get("reason")?,
                    strikes: row.try_get("strikes")?,
                })
            })
            .collect()
    }

    pub async fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32> {
        let mut tx = self.begin().await?;
        // A new row is no pause yet (`until` = now): only the count starts.
        let strikes = sqlx::query_scalar(
            "INSERT INTO pauses (scope, until, reason, created_at, strikes)
             VALUES (?1, ?2, '', ?2, 1)
             ON CONFLICT (scope) DO UPDATE SET strikes = pauses.strikes + 1
             RETURNING strikes",
        )
        .bind(scope.key())
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(strikes)
    }

    pub async fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pauses SET strikes = 0 WHERE scope = ?1 AND strikes > 0")
            .bind(scope.key())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn jobs_queued_exist(&self, models: &[ModelId], except: JobId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM prompt_jobs
                WHERE status = 'queued' AND id <> ?2
                  AND model_id IN (SELECT value FROM json_each(?1)))",
        )
        .bind(ids_json(models))
        .bind(except)
        .fetch_one(&self.readers)
        .await?)
    }

    pub async fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: Duration,
    ) -> StoreResult<DateTime<Utc>> {
        let cost_ms = i64::try_from(cost.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        let tat: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, tat) VALUES (?1, ?2 + ?3)
             ON CONFLICT (scope) DO UPDATE SET tat = max(rate_limits.tat, ?2) + ?3
             RETURNING tat",
        )
        .bind(scope)
        .bind(ms(now))
        .bind(cost_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(time(tat - cost_ms))
    }

    pub async fn rate_reserve_within(
        &self,
        costs: &[(String, Duration)],
        now: DateTime<Utc>,
        max_wait: Duration,
    ) -> StoreResult<RateGrant> {
        let mut tx = self.begin().await?;
        let mut start = ms(now);
        for (scope, _) in costs {
            let tat: Option<i64> =
                sqlx::query_scalar("SELECT tat FROM rate_limits WHERE scope = ?1")
                    .bind(scope)
                    .fetch_optional(&mut *tx)
                    .await?;
            start = start.max(tat.unwrap_or(i64::MIN));
        }
        if u64::try_from(start - ms(now)).unwrap_or(0) > max_wait.as_millis() as u64 {
            tx.rollback().await?;
            return Ok(RateGrant::Busy(time(start)));
        }
        for (scope, cost) in costs {
            // Rounded up: milliseconds are the column's unit, and a limit must not be exceeded.
            let cost_ms = i64::try_from(cost.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO rate_limits (scope, tat) VALUES (?1, ?2)
                 ON CONFLICT (scope) DO UPDATE SET tat = excluded.tat",
            )
            .bind(scope)
            .bind(start.saturating_add(cost_ms))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RateGrant::Reserved(time(start)))
    }

    pub async fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE rate_limits SET tat = CASE WHEN ?3 >= 0 THEN max(tat, ?2) + ?3
                ELSE max(tat + ?3, ?2) END
             WHERE scope = ?1",
        )
        .bind(scope)
        .bind(ms(now))
        .bind(delta.num_milliseconds())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn jobs_due_ids(&self, now: Clock, limit: i64) -> StoreResult<Vec<JobId>> {
        let now = now.local();
        Ok(sqlx::query_scalar(
            "SELECT id FROM prompt_jobs WHERE status = 'queued' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, id LIMIT ?2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?)
    }

    pub async fn job_get(&self, id: JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM prompt_jobs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(|row| job_from_row(&row)).transpose()?)
    }

    pub async fn jobs_list(&self, filter: &JobFilter, page: Page) -> StoreResult<Vec<Job>> {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {JOB_COLUMNS} FROM prompt_jobs WHERE 1"));
        push_job_filter(&mut query, filter);
        query
            .push(" ORDER BY id LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = query.build().fetch_all(&self.readers).await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn jobs_summary(&self, filter: &JobFilter) -> StoreResult<Summary> {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT status, COUNT(*) AS n FROM prompt_jobs WHERE 1");
        push_job_filter(&mut query, filter);
        query.push(" GROUP BY status");
        let rows = query.build().fetch_all(&self.readers).await?;
        let mut summary = Summary::default();
        for row in &rows {
            let status: String = row.try_get("status")?;
            summary.add(parse_status(&status)?, row.try_get("n")?);
        }
        Ok(summary)
    }

    pub async fn jobs_count_expired(&self, now: Clock) -> StoreResult<i64> {
        let now = now.local();
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM prompt_jobs WHERE status = 'processing' AND lease_expires_at < ?1",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?)
    }

    pub async fn job_attempts(&self, id: JobId) -> StoreResult<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT job_id, attempt, started_at, finished_at, outcome, http_status, error_class,
                error_message
             FROM job_attempts WHERE job_id = ?1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    job_id: row.try_get("job_id")?,
                    attempt: row.try_get("attempt")?,
                    started_at: opt_time(row.try_get("started_at")?),
                    finished_at: time(row.try_get("finished_at")?),
                    outcome: row.try_get("outcome")?,
                    http_status: row.try_get("http_status")?,
                    error_class: row.try_get("error_class")?,
                    error_message: row.try_get("error_message")?,
                })
            })
            .collect()
    }

    pub async fn responses_list(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> StoreResult<Vec<StoredResponse>> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, job_id, prompt_id, model_id, batch_key, run_index, text, served_model,
                finish_reason, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
                reasoning_tokens, cost_usd, latency_ms, provider_request_id, citations, raw,
                created_at,
                (SELECT v.hash FROM prompt_versions v WHERE v.id = responses.prompt_version_id)
                    AS prompt_version,
                (SELECT v.text FROM prompt_versions v WHERE v.id = responses.prompt_version_id)
                    AS prompt_text
             FROM responses WHERE 1",
        );
        if let Some(id) = filter.prompt_id {
            query.push(" AND prompt_id = ").push_bind(id);
        }
        if let Some(id) = filter.model_id {
            query.push(" AND model_id = ").push_bind(id);
        }
        if let Some(key) = &filter.batch_key {
            query.push(" AND batch_key = ").push_bind(key.clone());
        }
        if let Some(id) = filter.job_id {
            query.push(" AND job_id = ").push_bind(id);
        }
        if let Some(from) = filter.created_from {
            query.push(" AND created_at >= ").push_bind(ms(from));
        }
        if let Some(before) = filter.created_before {
            query.push(" AND created_at < ").push_bind(ms(before));
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = query.build().fetch_all(&self.readers).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredResponse {
                    id: row.try_get("id")?,
                    job_id: row.try_get("job_id")?,
                    prompt_id: row.try_get("prompt_id")?,
                    model_id: row.try_get("model_id")?,
                    batch_key: row.try_get("batch_key")?,
                    run_index: row.try_get("run_index")?,
                    text: row.try_get("text")?,
                    served_model: row.try_get("served_model")?,
                    finish_reason: row.try_get("finish_reason")?,
                    prompt_tokens: row.try_get("prompt_tokens")?,
                    completion_tokens: row.try_get("completion_tokens")?,
                    total_tokens: row.try_get("total_tokens")?,
                    cached_tokens: row.try_get("cached_tokens")?,
                    reasoning_tokens: row.try_get("reasoning_tokens")?,
                    cost_usd: row.try_get("cost_usd")?,
                    latency_ms: row.try_get("latency_ms")?,
                    provider_request_id: row.try_get("provider_request_id")?,
                    citations: row.try_get("citations")?,
                    raw: row.try_get("raw")?,
                    created_at: time(row.try_get("created_at")?),
                    prompt_version: row.try_get("prompt_version")?,
                    prompt_text: row.try_get("prompt_text")?,
                })
            })
            .collect()
    }
}

/// Claims the picked rows (read in this transaction): runnable ones become `processing`,
/// the others `skipped`. Returns the claimed jobs in pick order.
async fn claim_picked(
    tx: &mut SqliteTx,
    rows: &[SqliteRow],
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Vec<ClaimedJob>> {
    let mut picked = HashMap::with_capacity(rows.len());
    let mut order = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if row.try_get::<bool, _>("runnable")? {
            picked.insert(
                id,
                Picked {
                    prompt_text: row.try_get("prompt_text")?,
                    model: snapshot_model(row)?,
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
            started_at = ?2, lease_expires_at = ?3, finished_at = NULL
         WHERE id IN (SELECT value FROM json_each(?1))
         RETURNING {JOB_COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids_json(&order))
        .bind(ms(now))
        .bind(ms(lease_until))
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

/// Narrows a retry or cancel to its jobs.
fn push_selector(query: &mut QueryBuilder<Sqlite>, selector: &JobSelector) {
    match selector {
        JobSelector::One(id) => {
            query.push(" AND id = ").push_bind(*id);
        }
        JobSelector::Batch { batch_key, status } => {
            query.push(" AND batch_key = ").push_bind(batch_key.clone());
            if let Some(status) = status {
                query.push(" AND status = ").push_bind(status.as_str());
            }
        }
    }
}
