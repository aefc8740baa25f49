//! A job's way through the queue on PostgreSQL: enqueue, claim, finish, rescue, heartbeat,
//! release, each one statement (or one short transaction).

use super::*;
use crate::store::Queue;
use crate::store::workers::WorkerId;

/// The common tail of both claims: `picked` (the job's id, prompt, model and version) is
/// locked already; $1 is the clock ([`Clock::fixed`]), $2 the lease in microseconds. A picked
/// job whose prompt or model went away ends `skipped`. The prompt text is the job's version's
/// (the current text only for jobs older than versions), the generation params those of its
/// enqueue.
///
/// `picked` reads the job table alone and the prompt, model and version are joined to the
/// picked rows only: joined inside `picked`, before its `LIMIT`, they let the planner join
/// every due job first and sort them all (a fresh table has no statistics until autovacuum
/// analyses it, a minute later), 15 ms a claim of 20,000 due jobs instead of 1.
///
/// A claimed job leaves the due list (`dequeue`: which entries, unless the claim took them off
/// it already) and is listed as running with its worker; a job skipped leaves the due list by
/// the job table's trigger (migration 0017). The claim is the only way into `processing`.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit` off for this
/// statement's transaction only, which also holds behind a transaction-mode pooler): a claim
/// lost to a server crash leaves its job `queued`, and the worker's fenced finish of that
/// attempt then changes nothing, so the loss costs a repeated call, never a lost or doubled
/// answer. Every finish still waits for its flush, and a flush covers every earlier commit,
/// so no durable finish can follow a lost claim.
macro_rules! claim_update {
    ($picked:literal, worker = $worker:literal) => {
        claim_update!(
            before = "",
            $picked,
            dequeue = "job_id IN (SELECT id FROM picked)",
            worker = $worker
        )
    };
    (before = $before:literal, $picked:literal, dequeue = $dequeue:literal, worker = $worker:literal) => {
        concat!(
            "WITH ",
            $before,
            " picked AS (",
            $picked,
            "), claimed AS (UPDATE prompt_jobs j SET
                status = CASE WHEN p.active AND m.active THEN 'processing' ELSE 'skipped' END,
                attempt_count = j.attempt_count + CASE WHEN p.active AND m.active THEN 1 ELSE 0 END,
                started_at = CASE WHEN p.active AND m.active THEN COALESCE($1::timestamptz, now())
                    ELSE j.started_at END,
                lease_expires_at = CASE WHEN p.active AND m.active
                    THEN COALESCE($1::timestamptz, now()) + $2 * interval '1 microsecond' END,
                finished_at = CASE WHEN p.active AND m.active THEN NULL
                    ELSE COALESCE($1::timestamptz, now()) END,
                error_message = CASE WHEN p.active AND m.active THEN j.error_message
                    ELSE 'skipped: its prompt or model was deactivated or deleted before it ran' END
            FROM picked
            JOIN prompts p ON p.id = picked.prompt_id
            JOIN models m ON m.id = picked.model_id
            LEFT JOIN prompt_versions v ON v.id = picked.prompt_version_id
            WHERE j.id = picked.id AND j.status = 'queued'
                AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
            RETURNING j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key, j.status,
                j.error_message, j.attempt_count, j.max_attempts, j.rate_limited_count,
                j.scheduled_for, j.next_attempt_at, j.lease_expires_at, j.started_at, j.finished_at,
                j.created_at, p.active AND m.active AS runnable, j.prompt_version_id, j.gen_params,
                v.hash AS prompt_version, COALESCE(v.text, p.text) AS prompt_text, m.id AS m_id,
                m.name AS m_name, m.provider AS m_provider, m.model AS m_model,
                m.params AS m_params, m.active AS m_active, m.created_at AS m_created_at
            ), dequeued AS (
                DELETE FROM job_queue WHERE ",
            $dequeue,
            "
            ), noted AS (
                INSERT INTO job_claims (job_id, worker_id)
                SELECT id, CAST(",
            $worker,
            " AS bigint) FROM claimed WHERE status = 'processing'
                ON CONFLICT (job_id) DO UPDATE SET worker_id = EXCLUDED.worker_id
            )
            SELECT * FROM claimed"
        )
    };
}

/// Hands back the jobs of `$picked` (ids of `processing` jobs, locked; it may read `clock`
/// and further CTEs before it, `$before`): `queued` and due now, or `failed` once their
/// attempts are spent, each abandoned attempt recorded. $1 is the clock, $2 the error.
macro_rules! rescue_update {
    ($picked:literal) => {
        rescue_update!("", $picked)
    };
    ($before:literal, $picked:literal) => {
        concat!(
            "WITH clock AS (
                SELECT COALESCE($1::timestamptz, now()) AS now
            )",
            $before,
            ", picked AS (",
            $picked,
            "), rescued AS (
                UPDATE prompt_jobs j SET
                    status = CASE WHEN j.attempt_count - j.rate_limited_count >= j.max_attempts
                        THEN 'failed' ELSE 'queued' END,
                    error_message = $2,
                    next_attempt_at = c.now,
                    lease_expires_at = NULL,
                    finished_at = CASE WHEN j.attempt_count - j.rate_limited_count >= j.max_attempts
                        THEN c.now END
                FROM picked, clock c WHERE j.id = picked.id
                RETURNING j.id, j.attempt_count, j.started_at, j.status, j.error_message,
                    c.now AS rescued_at
            ), recorded AS (
                INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                    error_class, error_message)
                SELECT id, attempt_count, started_at, rescued_at, 'abandoned', 'abandoned',
                    error_message
                FROM rescued
            )
            SELECT id, attempt_count, status FROM rescued ORDER BY id"
        )
    };
}

/// The answer of a [`rescue_update!`].
pub(super) fn rescued_from_rows(rows: &[PgRow]) -> StoreResult<Vec<Rescued>> {
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

/// An enqueue of at least this many jobs refreshes the job table's statistics at once.
const ANALYZE_AFTER_JOBS: i64 = 1_000;

impl Queue for PostgresStore {
    async fn jobs_enqueue(
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
        // The expansion is estimated expensive enough for PostgreSQL to compile it with JIT,
        // which took 0.4 s, longer than running it (20,000 jobs): the plan is simple, no JIT.
        sqlx::query("SELECT set_config('jit', 'off', true), pg_advisory_xact_lock($1)")
            .bind(ENQUEUE_LOCK)
            .execute(&mut *tx)
            .await?;
        // The database expands prompts × active models × runs itself (an all-models prompt
        // takes every model active now, another its own list): one statement whatever
        // the batch size, inserted in key order so concurrent enqueues cannot deadlock.
        // Each job records the prompt's current version and the model's generation params:
        // what its claim will send, whatever is edited before it runs. A prompt with no
        // active model is not marked: its batch is not used up (see the SQLite backend).
        // `gen` is MATERIALIZED: the params are read once per model, not once per job.
        let row = sqlx::query(
            "WITH due AS (
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
                    AS d(prompt_id, batch_key, scheduled_for)
            ), clock AS (
                SELECT COALESCE($5::timestamptz, now()) AS now
            ), gen AS MATERIALIZED (
                SELECT id, NULLIF(jsonb_strip_nulls(jsonb_build_object(
                        'temperature', params -> 'temperature', 'maxTokens', params -> 'maxTokens',
                        'seed', params -> 'seed', 'extra', params -> 'extra')), '{}'::jsonb)
                    AS params
                FROM models WHERE active
            ), inserted AS (
                INSERT INTO prompt_jobs (prompt_id, model_id, run_index, batch_key, status,
                    attempt_count, max_attempts, scheduled_for, next_attempt_at, created_at,
                    prompt_version_id, gen_params)
                SELECT d.prompt_id, m.id, r.run_index, d.batch_key, 'queued',
                    0, $4, d.scheduled_for, c.now, c.now, p.version_id, m.params
                FROM due d
                CROSS JOIN clock c
                JOIN prompts p ON p.id = d.prompt_id AND p.active
                JOIN gen m ON p.all_models OR EXISTS (SELECT 1 FROM prompt_models pm
                    WHERE pm.prompt_id = p.id AND pm.model_id = m.id)
                CROSS JOIN LATERAL generate_series(0, p.runs - 1) AS r(run_index)
                ORDER BY d.batch_key, d.prompt_id, m.id, r.run_index
                ON CONFLICT ON CONSTRAINT prompt_jobs_key DO NOTHING
                RETURNING prompt_id
            ), marked AS (
                UPDATE prompts p SET last_run_at = c.now, last_batch_key = d.batch_key
                FROM due d, clock c WHERE p.id = d.prompt_id AND $6
                    AND EXISTS (SELECT 1 FROM models m WHERE m.active AND (p.all_models
                        OR EXISTS (SELECT 1 FROM prompt_models pm
                            WHERE pm.prompt_id = p.id AND pm.model_id = m.id)))
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
        if jobs >= ANALYZE_AFTER_JOBS {
            // Autovacuum analyses a table a minute or so after it changed; until then claims
            // are planned for the table as it was (a new one: empty), and such a plan reads
            // and sorts every due job on each claim. A warning (not an error) when this role
            // may not analyse the table; the queue works either way.
            if let Err(err) = sqlx::query("ANALYZE prompt_jobs, job_queue")
                .execute(&self.pool)
                .await
            {
                tracing::warn!(error = %err, "could not analyse prompt_jobs after the enqueue");
            }
        }
        Ok(EnqueueReport {
            jobs_created: jobs as u64,
            prompt_count: prompts as u64,
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
        // The due jobs are counted (up to the probe) only when the claim reaches ahead and
        // others may need them; the count is an init plan, run only when its branch is taken.
        // The LIMIT is `ClaimSize::given_due` (SQLite calls it), in SQL to keep one round trip.
        // A claim that finds nothing looks whether the due list was emptied by a crash, and if
        // so claims again from the list rebuilt.
        let mut rebuilt = false;
        loop {
            let rows = sqlx::query(claim_update!(
                before = "taken AS (
                DELETE FROM job_queue WHERE job_id IN (
                    SELECT q.job_id FROM job_queue q
                    WHERE q.next_attempt_at <= COALESCE($1::timestamptz, now())
                        AND q.model_id <> ALL($4::bigint[])
                    ORDER BY q.next_attempt_at, q.job_id
                    LIMIT CASE WHEN $6::bigint IS NULL THEN $3 ELSE (
                        SELECT $7 + LEAST($3 - $7, GREATEST(0, count(*) - $7 - $8)) FROM (
                            SELECT 1 FROM job_queue d
                            WHERE d.next_attempt_at <= COALESCE($1::timestamptz, now())
                                AND d.model_id <> ALL($4::bigint[])
                            LIMIT $6) AS due) END
                    FOR UPDATE SKIP LOCKED)
                RETURNING job_id
             ),",
                "SELECT j.id, j.prompt_id, j.model_id, j.prompt_version_id
             FROM taken JOIN prompt_jobs j ON j.id = taken.job_id
             WHERE j.status = 'queued'",
                // Taken off the list already, by `taken`.
                dequeue = "FALSE",
                worker = "$5::bigint"
            ))
            .bind(now.fixed())
            .bind(micros(lease))
            .bind(size.most())
            .bind(except)
            .bind(worker)
            .bind(size.probe())
            .bind(size.now.max(0))
            .bind(size.spare)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() && !rebuilt && super::lists::ensure_intact(&self.pool).await? {
                rebuilt = true;
                continue;
            }
            let mut claimed = Vec::with_capacity(rows.len());
            let mut models = ClaimModels::new();
            for row in &rows {
                if row.try_get::<bool, _>("runnable")? {
                    claimed.push(claimed_from_row(row, &mut models)?);
                }
            }
            return Ok(claimed);
        }
    }

    async fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> StoreResult<ClaimOne> {
        let now: Clock = now.into();
        // FOR UPDATE without SKIP LOCKED: a concurrent claim of the same job waits, then sees
        // it is no longer queued.
        let row = sqlx::query(claim_update!(
            "SELECT j.id, j.prompt_id, j.model_id, j.prompt_version_id
             FROM prompt_jobs j
             WHERE j.id = $3 AND j.status = 'queued'
             FOR UPDATE OF j",
            worker = "NULL"
        ))
        .bind(now.fixed())
        .bind(micros(lease))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) if row.try_get::<bool, _>("runnable")? => Ok(ClaimOne::Claimed(Box::new(
                claimed_from_row(&row, &mut ClaimModels::new())?,
            ))),
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

    async fn jobs_finish(
        &self,
        finishes: &[Finish],
        now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<FinishResult>> {
        let now: Clock = now.into();
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        finish::finish_batch(&self.pool, finishes, now).await
    }

    async fn jobs_rescue_expired(&self, now: impl Into<Clock> + Send) -> StoreResult<Vec<Rescued>> {
        let now: Clock = now.into();
        super::lists::ensure_intact(&self.pool).await?;
        // Expiry is judged by the database's clock, never by the rescuing process's: one
        // running ahead would otherwise take the live jobs of every other process.
        let rows = sqlx::query(rescue_update!(
            "SELECT j.id FROM job_claims r JOIN prompt_jobs j ON j.id = r.job_id
            WHERE j.status = 'processing' AND j.lease_expires_at < (SELECT now FROM clock)
            FOR UPDATE OF j SKIP LOCKED"
        ))
        .bind(now.fixed())
        .bind(ABANDONED)
        .fetch_all(&self.pool)
        .await?;
        rescued_from_rows(&rows)
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
        let (ids, numbers): (Vec<i64>, Vec<i32>) = attempts.iter().copied().unzip();
        let owned = sqlx::query_as(
            "UPDATE prompt_jobs j
             SET lease_expires_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
             FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             -- Found by key, never by a scan; `processing` tested as
             -- in `finish`, where the planner cannot mistake it for \"no job\".
             WHERE j.id = ANY($1::bigint[]) AND j.id = t.id
                AND (j.status || '') NOT IN ('queued', 'submitted', 'succeeded', 'failed', 'skipped')
                AND j.attempt_count = t.attempt
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
        let (ids, numbers): (Vec<i64>, Vec<i32>) = attempts.iter().copied().unzip();
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(
            "UPDATE prompt_jobs j SET status = 'queued', attempt_count = j.attempt_count - 1,
                lease_expires_at = NULL, started_at = NULL,
                next_attempt_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
             FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             WHERE j.id = ANY($1::bigint[]) AND j.id = t.id
                AND (j.status || '') NOT IN ('queued', 'submitted', 'succeeded', 'failed', 'skipped')
                AND j.attempt_count = t.attempt",
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
}
