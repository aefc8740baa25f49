//! The queue's operations on PostgreSQL: enqueue, claim, finish, rescue, heartbeat, release,
//! cancel, retry, the job queries, pauses and rate reservations.

use super::*;
use crate::store::RateGrant;

impl PostgresStore {
    // ---- the queue

    pub async fn jobs_enqueue(
        &self,
        plan: &[PlannedBatch],
        options: EnqueueOptions,
    ) -> StoreResult<EnqueueReport> {
        if plan.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let prompt_ids: Vec<i64> = plan.iter().map(|b| b.prompt_id).collect();
        let batch_keys: Vec<&str> = plan.iter().map(|b| b.batch_key.as_str()).collect();
        let slots: Vec<DateTime<Utc>> = plan.iter().map(|b| b.scheduled_for).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ENQUEUE_LOCK)
            .execute(&mut *tx)
            .await?;
        // The database expands prompts × active models × runs itself: one statement whatever
        // the batch size, inserted in key order so concurrent enqueues cannot deadlock.
        // Each job records the prompt's current version and the model's generation params:
        // what its claim will send, whatever is edited before it runs.
        let row = sqlx::query(
            "WITH due AS (
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
                    AS d(prompt_id, batch_key, scheduled_for)
            ), clock AS (
                SELECT COALESCE($5::timestamptz, now()) AS now
            ), gen AS (
                SELECT id, NULLIF(jsonb_strip_nulls(jsonb_build_object(
                        'temperature', params -> 'temperature', 'maxTokens', params -> 'maxTokens',
                        'seed', params -> 'seed', 'extra', params -> 'extra')), '{}'::jsonb)
                    AS params
                FROM models WHERE active
            ), inserted AS (
                INSERT INTO prompt_jobs (prompt_id, model_id, run_index, batch_key, status,
                    attempt_count, max_attempts, scheduled_for, next_attempt_at, created_at,
                    prompt_version_id, gen_params)
                SELECT d.prompt_id, pm.model_id, r.run_index, d.batch_key, 'queued',
                    0, $4, d.scheduled_for, c.now, c.now, p.version_id, m.params
                FROM due d
                CROSS JOIN clock c
                JOIN prompts p ON p.id = d.prompt_id AND p.active
                JOIN prompt_models pm ON pm.prompt_id = p.id
                JOIN gen m ON m.id = pm.model_id
                CROSS JOIN LATERAL generate_series(0, p.runs - 1) AS r(run_index)
                ORDER BY d.prompt_id, pm.model_id, r.run_index, d.batch_key
                ON CONFLICT ON CONSTRAINT prompt_jobs_key DO NOTHING
                RETURNING prompt_id
            ), marked AS (
                UPDATE prompts p SET last_run_at = c.now, last_batch_key = d.batch_key
                FROM due d, clock c WHERE p.id = d.prompt_id AND $6
            )
            SELECT count(*) AS jobs, count(DISTINCT prompt_id) AS prompts FROM inserted",
        )
        .bind(&prompt_ids)
        .bind(&batch_keys)
        .bind(&slots)
        .bind(options.max_attempts)
        .bind(options.now.fixed())
        .bind(options.mark_prompts)
        .fetch_one(&mut *tx)
        .await?;
        let jobs: i64 = row.try_get("jobs")?;
        let prompts: i64 = row.try_get("prompts")?;
        if jobs > 0 {
            notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(EnqueueReport {
            jobs_created: jobs as u64,
            prompt_count: prompts as u64,
        })
    }

    pub async fn jobs_claim(
        &self,
        limit: i64,
        now: Clock,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let rows = sqlx::query(claim_update!(
            "SELECT j.id, (p.active AND m.active) AS runnable, v.hash AS version_hash,
                v.text AS version_text
             FROM prompt_jobs j
             JOIN prompts p ON p.id = j.prompt_id
             JOIN models m ON m.id = j.model_id
             LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id
             WHERE j.status = 'queued' AND j.next_attempt_at <= COALESCE($1::timestamptz, now())
             ORDER BY j.next_attempt_at, j.id
             LIMIT $3
             FOR UPDATE OF j SKIP LOCKED"
        ))
        .bind(now.fixed())
        .bind(micros(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<bool, _>("runnable")? {
                claimed.push(claimed_from_row(row)?);
            }
        }
        Ok(claimed)
    }

    pub async fn job_claim(&self, id: JobId, now: Clock, lease: Duration) -> StoreResult<ClaimOne> {
        // FOR UPDATE without SKIP LOCKED: a concurrent claim of the same job waits, then sees
        // it is no longer queued.
        let row = sqlx::query(claim_update!(
            "SELECT j.id, (p.active AND m.active) AS runnable, v.hash AS version_hash,
                v.text AS version_text
             FROM prompt_jobs j
             JOIN prompts p ON p.id = j.prompt_id
             JOIN models m ON m.id = j.model_id
             LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id
             WHERE j.id = $3 AND j.status = 'queued'
             FOR UPDATE OF j"
        ))
        .bind(now.fixed())
        .bind(micros(lease))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) if row.try_get::<bool, _>("runnable")? => {
                Ok(ClaimOne::Claimed(Box::new(claimed_from_row(&row)?)))
            }
            Some(_) => Ok(ClaimOne::Skipped),
            None => {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM prompt_jobs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                match status {
                    Some(status) => Ok(ClaimOne::NotClaimable(parse_status(&status)?)),
                    None => Ok(ClaimOne::NotFound),
                }
            }
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
        let columns = FinishColumns::from(finishes);
        let responses = ResponseColumns::from(finishes);
        // One statement: the fenced status change, the attempt record and the response insert
        // commit together, or not at all.
        let rows = sqlx::query(
            "WITH input AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[],
                    $5::timestamptz[], $6::text[], $7::int[], $8::text[], $23::bool[])
                    WITH ORDINALITY
                    AS t(job_id, attempt, outcome, finished_at, next_attempt_at, error_class,
                         http_status, error_message, refund, ord)
            ), clock AS (
                SELECT COALESCE($25::timestamptz, now()) AS now
            ), updated AS (
                -- A retry keeps the delay its worker chose, counted from the database's now.
                UPDATE prompt_jobs j SET
                    status = CASE i.outcome WHEN 'retry' THEN 'queued' ELSE i.outcome END,
                    error_message = i.error_message,
                    finished_at = CASE WHEN i.outcome = 'retry' THEN NULL ELSE c.now END,
                    next_attempt_at = COALESCE(c.now + LEAST(i.next_attempt_at - i.finished_at,
                        interval '366 days'), j.next_attempt_at),
                    rate_limited_count = j.rate_limited_count + CASE WHEN i.refund THEN 1 ELSE 0 END,
                    lease_expires_at = NULL
                FROM input i, clock c
                WHERE j.id = i.job_id AND j.status = 'processing' AND j.attempt_count = i.attempt
                RETURNING j.id, j.attempt_count, j.status, j.started_at, j.prompt_id, j.model_id,
                    j.batch_key, j.run_index, j.prompt_version_id, c.now AS finished_at
            ), attempts AS (
                INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                    http_status, error_class, error_message)
                SELECT u.id, i.attempt, u.started_at, u.finished_at, i.outcome, i.http_status,
                    i.error_class, i.error_message
                FROM updated u JOIN input i ON i.job_id = u.id AND i.attempt = u.attempt_count
            ), response_input AS (
                SELECT * FROM unnest($9::bigint[], $24::int[], $10::text[], $11::text[], $12::text[],
                    $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
                    $18::float8[], $19::bigint[], $20::text[], $21::text[], $22::text[])
                    AS r(job_id, attempt, text, served_model, finish_reason, prompt_tokens,
                         completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
                         cost_usd, latency_ms, provider_request_id, citations, raw)
            ), inserted AS (
                INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text,
                    served_model, finish_reason, prompt_tokens, completion_tokens, total_tokens,
                    cached_tokens, reasoning_tokens, cost_usd, latency_ms, provider_request_id,
                    citations, raw, created_at, prompt_version_id)
                SELECT r.job_id, u.prompt_id, u.model_id, u.batch_key, u.run_index, r.text,
                    r.served_model, r.finish_reason, r.prompt_tokens, r.completion_tokens,
                    r.total_tokens, r.cached_tokens, r.reasoning_tokens, r.cost_usd,
                    r.latency_ms, r.provider_request_id, r.citations, r.raw, u.finished_at,
                    u.prompt_version_id
                FROM response_input r
                JOIN updated u ON u.id = r.job_id AND u.attempt_count = r.attempt
                JOIN input i ON i.job_id = r.job_id AND i.attempt = r.attempt
                ON CONFLICT (job_id) DO NOTHING
                RETURNING id, job_id
            )
            SELECT i.job_id, u.id IS NOT NULL AS applied, COALESCE(u.status, j.status) AS status,
                ins.id AS response_id
            FROM input i
            LEFT JOIN updated u ON u.id = i.job_id AND u.attempt_count = i.attempt
            LEFT JOIN inserted ins ON ins.job_id = u.id
            LEFT JOIN prompt_jobs j ON j.id = i.job_id
            ORDER BY i.ord",
        )
        .bind(&columns.job_ids)
        .bind(&columns.attempts)
        .bind(&columns.outcomes)
        .bind(&columns.finished_at)
        .bind(&columns.next_attempt_at)
        .bind(&columns.error_classes)
        .bind(&columns.http_statuses)
        .bind(&columns.error_messages)
        .bind(&responses.job_ids)
        .bind(&responses.texts)
        .bind(&responses.served_models)
        .bind(&responses.finish_reasons)
        .bind(&responses.prompt_tokens)
        .bind(&responses.completion_tokens)
        .bind(&responses.total_tokens)
        .bind(&responses.cached_tokens)
        .bind(&responses.reasoning_tokens)
        .bind(&responses.costs)
        .bind(&responses.latencies)
        .bind(&responses.request_ids)
        .bind(&responses.citations)
        .bind(&responses.raws)
        .bind(&columns.refunds)
        .bind(&responses.attempts)
        .bind(now.fixed())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: Option<String> = row.try_get("status")?;
                Ok(FinishResult {
                    job_id: row.try_get("job_id")?,
                    applied: row.try_get("applied")?,
                    status: status.as_deref().map(parse_status).transpose()?,
                    response_id: row.try_get("response_id")?,
                })
            })
            .collect()
    }

    pub async fn jobs_rescue_expired(&self, now: Clock) -> StoreResult<Vec<Rescued>> {
        // Expiry is judged by the database's clock, never by the rescuing process's: one
        // running ahead would otherwise take the live jobs of every other process.
        let rows = sqlx::query(
            "WITH clock AS (
                SELECT COALESCE($1::timestamptz, now()) AS now
            ), expired AS (
                SELECT id FROM prompt_jobs
                WHERE status = 'processing' AND lease_expires_at < (SELECT now FROM clock)
                FOR UPDATE SKIP LOCKED
            ), rescued AS (
                UPDATE prompt_jobs j SET
                    status = CASE WHEN j.attempt_count - j.rate_limited_count >= j.max_attempts
                        THEN 'failed' ELSE 'queued' END,
                    error_message = $2,
                    next_attempt_at = c.now,
                    lease_expires_at = NULL,
                    finished_at = CASE WHEN j.attempt_count - j.rate_limited_count >= j.max_attempts
                        THEN c.now END
                FROM expired, clock c WHERE j.id = expired.id
                RETURNING j.id, j.attempt_count, j.started_at, j.status, j.error_message,
                    c.now AS rescued_at
            ), recorded AS (
                INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                    error_class, error_message)
                SELECT id, attempt_count, started_at, rescued_at, 'abandoned', 'abandoned',
                    error_message
                FROM rescued
            )
            SELECT id, attempt_count, status FROM rescued ORDER BY id",
        )
        .bind(now.fixed())
        .bind(ABANDONED)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(Rescued {
                    job_id: row.try_get("id")?,
                    attempt: row.try_get("attempt_count")?,
                    status: parse_status(&status)?,
                })
            })
            .collect()
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
        let (ids, numbers): (Vec<i64>, Vec<i32>) = attempts.iter().copied().unzip();
        let owned = sqlx::query_as(
            "UPDATE prompt_jobs j
             SET lease_expires_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
             FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             WHERE j.id = t.id AND j.status = 'processing' AND j.attempt_count = t.attempt
             RETURNING j.id, j.attempt_count",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(now.fixed())
        .bind(micros(lease))
        .fetch_all(&self.pool)
        .await?;
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
        let (ids, numbers): (Vec<i64>, Vec<i32>) = attempts.iter().copied().unzip();
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(
            "UPDATE prompt_jobs j SET status = 'queued', attempt_count = j.attempt_count - 1,
                lease_expires_at = NULL, started_at = NULL,
                next_attempt_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
             FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             WHERE j.id = t.id AND j.status = 'processing' AND j.attempt_count = t.attempt",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(now.fixed())
        .bind(micros(delay))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if released > 0 {
            notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    pub async fn jobs_cancel(
        &self,
        selector: &JobSelector,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Postgres>::new(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = ",
        );
        query
            .push_bind(now)
            .push(", error_message = ")
            .push_bind(SKIPPED_CANCELLED)
            .push(" WHERE status = 'queued'");
        push_selector(&mut query, selector);
        Ok(query.build().execute(&self.pool).await?.rows_affected())
    }

    pub async fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: Clock,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut query = QueryBuilder::<Postgres>::new(
            "UPDATE prompt_jobs SET status = 'queued', finished_at = NULL, max_attempts = attempt_count - rate_limited_count + ",
        );
        query
            .push_bind(extra_attempts)
            .push(", next_attempt_at = COALESCE(")
            .push_bind(now.fixed())
            .push("::timestamptz, now()) WHERE status IN ('failed', 'skipped')");
        push_selector(&mut query, selector);
        let retried = query.build().execute(&mut *tx).await?.rows_affected();
        if retried > 0 {
            notify_jobs(&mut tx).await?;
        }
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, until, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope) DO UPDATE SET
                until = GREATEST(pauses.until, EXCLUDED.until), reason = EXCLUDED.reason",
        )
        .bind(scope.key())
        .bind(until)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let moved = match scope {
            PauseScope::Model(id) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = $2
                     WHERE model_id = $1 AND status = 'queued' AND next_attempt_at < $2",
            )
            .bind(id)
            .bind(until)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Provider(kind) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = $2
                     WHERE status = 'queued' AND next_attempt_at < $2
                       AND model_id IN (SELECT id FROM models WHERE provider = $1)",
            )
            .bind(kind.as_str())
            .bind(until)
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
            "SELECT scope, until, reason, strikes FROM pauses WHERE until > $1 ORDER BY scope",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Pause {
                    scope: row.try_get("scope")?,
                    until: row.try_get("until")?,
                    reason: row.try_get("reason")?,
                    strikes: row.try_get("strikes")?,
                })
            })
            .collect()
    }

    pub async fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32> {
        // A new row is no pause yet (`until` = now): only the count starts.
        Ok(sqlx::query_scalar(
            "INSERT INTO pauses (scope, until, reason, created_at, strikes)
             VALUES ($1, $2, '', $2, 1)
             ON CONFLICT (scope) DO UPDATE SET strikes = pauses.strikes + 1
             RETURNING strikes",
        )
        .bind(scope.key())
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()> {
        sqlx::query("UPDATE pauses SET strikes = 0 WHERE scope = $1 AND strikes > 0")
            .bind(scope.key())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn jobs_queued_exist(&self, models: &[ModelId], except: JobId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM prompt_jobs
                WHERE status = 'queued' AND id <> $2 AND model_id = ANY($1))",
        )
        .bind(models)
        .bind(except)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: Duration,
    ) -> StoreResult<DateTime<Utc>> {
        let micros = i64::try_from(cost.as_micros()).unwrap_or(i64::MAX);
        let tat: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, tat) VALUES ($1, $2 + $3 * interval '1 microsecond')
             ON CONFLICT (scope) DO UPDATE SET
                tat = GREATEST(rate_limits.tat, $2) + $3 * interval '1 microsecond'
             RETURNING tat",
        )
        .bind(scope)
        .bind(now)
        .bind(micros)
        .fetch_one(&self.pool)
        .await?;
        Ok(tat - chrono::Duration::microseconds(micros))
    }

    pub async fn rate_reserve_within(
        &self,
        costs: &[(String, Duration)],
        now: DateTime<Utc>,
        max_wait: Duration,
    ) -> StoreResult<RateGrant> {
        let scopes: Vec<&str> = costs.iter().map(|(scope, _)| scope.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rate_limits (scope, tat) SELECT s, $2 FROM unnest($1::text[]) AS s
             ORDER BY s ON CONFLICT (scope) DO NOTHING",
        )
        .bind(&scopes)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let tats: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT tat FROM rate_limits WHERE scope = ANY($1) ORDER BY scope FOR UPDATE",
        )
        .bind(&scopes)
        .fetch_all(&mut *tx)
        .await?;
        let start = tats.into_iter().fold(now, DateTime::max);
        if (start - now).to_std().unwrap_or_default() > max_wait {
            tx.rollback().await?;
            return Ok(RateGrant::Busy(start));
        }
        let next: Vec<DateTime<Utc>> = costs
            .iter()
            .map(|(_, cost)| {
                chrono::Duration::from_std(*cost)
                    .ok()
                    .and_then(|cost| start.checked_add_signed(cost))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            })
            .collect();
        sqlx::query(
            "UPDATE rate_limits r SET tat = t.tat
             FROM unnest($1::text[], $2::timestamptz[]) AS t(scope, tat) WHERE r.scope = t.scope",
        )
        .bind(&scopes)
        .bind(&next)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RateGrant::Reserved(start))
    }

    pub async fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> StoreResult<()> {
        let micros = delta.num_microseconds().unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE rate_limits SET tat = CASE WHEN $3 >= 0
                THEN GREATEST(tat, $2) + $3 * interval '1 microsecond'
                ELSE GREATEST(tat + $3 * interval '1 microsecond', $2) END
             WHERE scope = $1",
        )
        .bind(scope)
        .bind(now)
        .bind(micros)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn jobs_due_ids(&self, now: Clock, limit: i64) -> StoreResult<Vec<JobId>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM prompt_jobs
             WHERE status = 'queued' AND next_attempt_at <= COALESCE($1::timestamptz, now())
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now.fixed())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn job_get(&self, id: JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM prompt_jobs j WHERE j.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| job_from_row(&row)).transpose()?)
    }

    pub async fn jobs_list(&self, filter: &JobFilter, page: Page) -> StoreResult<Vec<Job>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {JOB_COLUMNS} FROM prompt_jobs j WHERE TRUE"
        ));
        push_job_filter(&mut query, filter);
        query
            .push(" ORDER BY j.id LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn jobs_summary(&self, filter: &JobFilter) -> StoreResult<Summary> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT j.status, count(*) AS n FROM prompt_jobs j WHERE TRUE",
        );
        push_job_filter(&mut query, filter);
        query.push(" GROUP BY j.status");
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut summary = Summary::default();
        for row in &rows {
            let status: String = row.try_get("status")?;
            summary.add(parse_status(&status)?, row.try_get("n")?);
        }
        Ok(summary)
    }

    pub async fn jobs_count_expired(&self, now: Clock) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM prompt_jobs
             WHERE status = 'processing' AND lease_expires_at < COALESCE($1::timestamptz, now())",
        )
        .bind(now.fixed())
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn job_attempts(&self, id: JobId) -> StoreResult<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT job_id, attempt, started_at, finished_at, outcome, http_status, error_class,
                error_message
             FROM job_attempts WHERE job_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    job_id: row.try_get("job_id")?,
                    attempt: row.try_get("attempt")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
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
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT id, job_id, prompt_id, model_id, batch_key, run_index, text, served_model,
                finish_reason, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
                reasoning_tokens, cost_usd, latency_ms, provider_request_id, citations, raw,
                created_at,
                (SELECT v.hash FROM prompt_versions v WHERE v.id = prompt_version_id)
                    AS prompt_version,
                (SELECT v.text FROM prompt_versions v WHERE v.id = prompt_version_id)
                    AS prompt_text
             FROM responses WHERE TRUE",
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
            query.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(before) = filter.created_before {
            query.push(" AND created_at < ").push_bind(before);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = query.build().fetch_all(&self.pool).await?;
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
                    created_at: row.try_get("created_at")?,
                    prompt_version: row.try_get("prompt_version")?,
                    prompt_text: row.try_get("prompt_text")?,
                })
            })
            .collect()
    }
}

/// Narrows a retry or cancel to its jobs.
fn push_selector(query: &mut QueryBuilder<Postgres>, selector: &JobSelector) {
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

/// The finishes of a batch as one array per column, for `unnest`.
struct FinishColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    outcomes: Vec<&'static str>,
    finished_at: Vec<DateTime<Utc>>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    error_classes: Vec<Option<&'static str>>,
    http_statuses: Vec<Option<i32>>,
    error_messages: Vec<Option<&'a str>>,
    refunds: Vec<bool>,
}

impl<'a> From<&'a [Finish]> for FinishColumns<'a> {
    fn from(finishes: &'a [Finish]) -> Self {
        let mut columns = FinishColumns {
            job_ids: Vec::with_capacity(finishes.len()),
            attempts: Vec::with_capacity(finishes.len()),
            outcomes: Vec::with_capacity(finishes.len()),
            finished_at: Vec::with_capacity(finishes.len()),
            next_attempt_at: Vec::with_capacity(finishes.len()),
            error_classes: Vec::with_capacity(finishes.len()),
            http_statuses: Vec::with_capacity(finishes.len()),
            error_messages: Vec::with_capacity(finishes.len()),
            refunds: Vec::with_capacity(finishes.len()),
        };
        for finish in finishes {
            columns.job_ids.push(finish.job_id);
            columns.attempts.push(finish.attempt);
            columns.finished_at.push(finish.finished_at);
            let parts = OutcomeColumns::of(&finish.outcome);
            columns.outcomes.push(parts.name);
            columns.next_attempt_at.push(parts.next_attempt_at);
            columns
                .error_classes
                .push(parts.error.map(|e| e.class.as_str()));
            columns.http_statuses.push(parts.http_status.map(i32::from));
            columns
                .error_messages
                .push(parts.error.map(|e| e.message.as_str()));
            columns.refunds.push(parts.refund_attempt);
        }
        columns
    }
}

/// The responses of the successful finishes of a batch, one array per column.
#[derive(Default)]
struct ResponseColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    texts: Vec<&'a str>,
    served_models: Vec<Option<&'a str>>,
    finish_reasons: Vec<Option<&'a str>>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    total_tokens: Vec<Option<i64>>,
    cached_tokens: Vec<Option<i64>>,
    reasoning_tokens: Vec<Option<i64>>,
    costs: Vec<Option<f64>>,
    latencies: Vec<i64>,
    request_ids: Vec<Option<&'a str>>,
    citations: Vec<Option<&'a str>>,
    raws: Vec<Option<&'a str>>,
}

impl<'a> From<&'a [Finish]> for ResponseColumns<'a> {
    fn from(finishes: &'a [Finish]) -> Self {
        let mut columns = ResponseColumns::default();
        for finish in finishes {
            let Outcome::Succeeded(response) = &finish.outcome else {
                continue;
            };
            columns.job_ids.push(finish.job_id);
            columns.attempts.push(finish.attempt);
            columns.texts.push(&response.text);
            columns.served_models.push(response.served_model.as_deref());
            columns
                .finish_reasons
                .push(response.finish_reason.as_deref());
            columns.prompt_tokens.push(response.prompt_tokens);
            columns.completion_tokens.push(response.completion_tokens);
            columns.total_tokens.push(response.total_tokens);
            columns.cached_tokens.push(response.cached_tokens);
            columns.reasoning_tokens.push(response.reasoning_tokens);
            columns.costs.push(response.cost_usd);
            columns.latencies.push(response.latency_ms);
            columns
                .request_ids
                .push(response.provider_request_id.as_deref());
            columns.citations.push(response.citations.as_deref());
            columns.raws.push(response.raw.as_deref());
        }
        columns
    }
}
