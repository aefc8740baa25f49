//! A job's way through the queue on PostgreSQL: enqueue, claim, finish, rescue, heartbeat,
//! release, each one statement (or one short transaction).
//!
//! A worker's claim is a row of the unlogged `job_claims` (migration 0017) and leaves the
//! job's row `queued` until the finish writes it once; a provider batch's claim writes the
//! job's row (`processing`). Every statement that ends an attempt handles both.

use super::*;
use crate::store::Queue;
use crate::store::workers::WorkerId;

/// A provider batch's claim, written into the job's rows: `picked` (the job's id, prompt,
/// model and version) is locked already; $1 is the clock ([`Clock::fixed`]), $2 the lease in microseconds. A picked
/// job whose prompt or model went away ends `skipped`. The prompt text is the job's version's
/// (the current text only for jobs older than versions), the generation params those of its
/// enqueue.
///
/// `picked` reads the job table alone and the prompt, model and version are joined to the
/// picked rows only: joined inside `picked`, before its `LIMIT`, they let the planner join
/// every due job first and sort them all (a fresh table has no statistics until autovacuum
/// analyses it, a minute later), 15 ms a claim of 20,000 due jobs instead of 1.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit` off for this
/// statement's transaction only, which also holds behind a transaction-mode pooler): a claim
/// lost to a server crash leaves its job `queued`, and the worker's fenced finish of that
/// attempt then changes nothing, so the loss costs a repeated call, never a lost or doubled
/// answer. Every finish still waits for its flush, and a flush covers every earlier commit,
/// so no durable finish can follow a lost claim.
macro_rules! claim_update {
    ($picked:literal, worker = $worker:literal) => {
        concat!(
            "WITH picked AS (",
            $picked,
            ") UPDATE prompt_jobs j SET
                status = CASE WHEN p.active AND m.active THEN 'processing' ELSE 'skipped' END,
                attempt_count = j.attempt_count + CASE WHEN p.active AND m.active THEN 1 ELSE 0 END,
                started_at = CASE WHEN p.active AND m.active THEN COALESCE($1::timestamptz, now())
                    ELSE j.started_at END,
                lease_expires_at = CASE WHEN p.active AND m.active
                    THEN COALESCE($1::timestamptz, now()) + $2 * interval '1 microsecond' END,
                finished_at = CASE WHEN p.active AND m.active THEN NULL
                    ELSE COALESCE($1::timestamptz, now()) END,
                error_message = CASE WHEN p.active AND m.active THEN j.error_message
                    ELSE 'skipped: its prompt or model was deactivated or deleted before it ran' END,
                worker_id = ",
            $worker,
            "
            FROM picked
            JOIN prompts p ON p.id = picked.prompt_id
            JOIN models m ON m.id = picked.model_id
            LEFT JOIN prompt_versions v ON v.id = picked.prompt_version_id
            WHERE j.id = picked.id
                AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
            RETURNING j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key, j.status,
                j.error_message, j.attempt_count, j.max_attempts, j.rate_limited_count,
                j.scheduled_for, j.next_attempt_at, j.lease_expires_at, j.started_at, j.finished_at,
                j.created_at, p.active AND m.active AS runnable, j.prompt_version_id, j.gen_params,
                v.hash AS prompt_version, COALESCE(v.text, p.text) AS prompt_text, m.id AS m_id,
                m.name AS m_name, m.provider AS m_provider, m.model AS m_model,
                m.params AS m_params, m.active AS m_active, m.created_at AS m_created_at"
        )
    };
}

/// A worker's claim: `$picked` (the job's id, prompt, model, version and attempt count; not
/// locked) are due `queued` jobs without a claim; each gets a row in `job_claims` (unlogged:
/// no WAL, see migration 0017), and the job's row is not written. $1 is the clock, $2 the
/// lease in microseconds. A picked job whose prompt or model went away ends `skipped`.
///
/// Two claimers may pick the same jobs (nothing is locked while picking): the claims' key
/// decides, the second insert waits for the first's commit and then takes nothing; a claim
/// row whose attempt ended is taken over by the job's next attempt only. The one
/// row of `tally` counts such losses (`lost`) and the skipped jobs; it comes with every
/// claimed job, or alone (its `id` NULL) when nothing was claimed.
macro_rules! claim_insert {
    ($picked:expr, worker = $worker:literal) => {
        concat!(
            "WITH clock AS (
                SELECT COALESCE($1::timestamptz, now()) AS now,
                    set_config('synchronous_commit', 'off', true) AS unflushed
            ), picked AS (",
            $picked,
            "), checked AS (
                SELECT picked.id, picked.attempt_count, p.active AND m.active AS runnable
                FROM picked
                JOIN prompts p ON p.id = picked.prompt_id
                JOIN models m ON m.id = picked.model_id
            ), claimed AS (
                INSERT INTO job_claims (job_id, attempt, worker_id, started_at, lease_expires_at)
                SELECT k.id, k.attempt_count + 1, ",
            $worker,
            ", c.now, c.now + $2 * interval '1 microsecond'
                FROM checked k CROSS JOIN clock c WHERE k.runnable ORDER BY k.id
                ON CONFLICT (job_id) DO UPDATE SET attempt = EXCLUDED.attempt,
                    worker_id = EXCLUDED.worker_id, started_at = EXCLUDED.started_at,
                    lease_expires_at = EXCLUDED.lease_expires_at, ended_at = NULL
                WHERE job_claims.ended_at IS NOT NULL AND job_claims.attempt < EXCLUDED.attempt
                RETURNING job_id, attempt, worker_id, started_at, lease_expires_at
            ), skipped AS (
                UPDATE prompt_jobs j SET status = 'skipped', finished_at = c.now,
                    error_message = 'skipped: its prompt or model was deactivated or deleted before it ran'
                FROM checked k CROSS JOIN clock c
                WHERE j.id = k.id AND NOT k.runnable AND j.status = 'queued'
                RETURNING j.id
            ), tally AS (
                SELECT (SELECT count(*) FROM checked WHERE runnable)
                        - (SELECT count(*) FROM claimed) AS lost,
                    (SELECT count(*) FROM skipped) AS skipped
            )
            SELECT t.lost, t.skipped, j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key,
                'processing' AS status, j.error_message, cl.attempt AS attempt_count,
                j.max_attempts, j.rate_limited_count, j.scheduled_for, j.next_attempt_at,
                cl.lease_expires_at, cl.started_at, NULL::timestamptz AS finished_at,
                j.created_at, j.prompt_version_id, j.gen_params, v.hash AS prompt_version,
                COALESCE(v.text, p.text) AS prompt_text, m.id AS m_id, m.name AS m_name,
                m.provider AS m_provider, m.model AS m_model, m.params AS m_params,
                m.active AS m_active, m.created_at AS m_created_at
            FROM tally t
            LEFT JOIN (claimed cl
                JOIN prompt_jobs j ON j.id = cl.job_id
                JOIN prompts p ON p.id = j.prompt_id
                JOIN models m ON m.id = j.model_id
                LEFT JOIN prompt_versions v ON v.id = j.prompt_version_id) ON TRUE
            ORDER BY j.id"
        )
    };
}

/// The jobs a claim statement took, and what it lost to other claimers and skipped.
struct ClaimRows {
    claimed: Vec<ClaimedJob>,
    lost: i64,
    skipped: i64,
}

impl ClaimRows {
    fn read(rows: &[PgRow]) -> StoreResult<Self> {
        let mut out = ClaimRows {
            claimed: Vec::with_capacity(rows.len()),
            lost: 0,
            skipped: 0,
        };
        let mut models = ClaimModels::new();
        for row in rows {
            out.lost = row.try_get("lost")?;
            out.skipped = row.try_get("skipped")?;
            if row.try_get::<Option<i64>, _>("id")?.is_some() {
                out.claimed.push(claimed_from_row(row, &mut models)?);
            }
        }
        Ok(out)
    }
}

/// Hands back the jobs whose claims `$dropped` ends (an `UPDATE job_claims c SET ended_at …`
/// whose `WHERE` comes last; it may
/// read `clock` and the CTEs of `$before`) and the rows of `$picked` (ids of `processing` rows,
/// the provider batches' claims and those from before migration 0017, locked): `queued` and
/// due now, or `failed` once their attempts are spent, each abandoned attempt recorded. $1 is
/// the clock, $2 the error.
macro_rules! rescue_update {
    ($dropped:literal, $picked:literal) => {
        rescue_update!("", $dropped, $picked)
    };
    ($before:literal, $dropped:literal, $picked:literal) => {
        concat!(
            "WITH clock AS (
                SELECT COALESCE($1::timestamptz, now()) AS now
            )",
            $before,
            ", dropped AS (",
            $dropped,
            " AND c.ended_at IS NULL RETURNING c.job_id, c.attempt, c.started_at, c.worker_id
            ), picked AS (",
            $picked,
            "), held AS (
                SELECT job_id AS id, attempt, started_at, worker_id FROM dropped
                UNION ALL
                SELECT id, NULL, NULL, NULL FROM picked
            ), rescued AS (
                UPDATE prompt_jobs j SET
                    attempt_count = COALESCE(h.attempt, j.attempt_count),
                    started_at = COALESCE(h.started_at, j.started_at),
                    worker_id = COALESCE(h.worker_id, j.worker_id),
                    status = CASE WHEN COALESCE(h.attempt, j.attempt_count) - j.rate_limited_count
                        >= j.max_attempts THEN 'failed' ELSE 'queued' END,
                    error_message = $2,
                    next_attempt_at = c.now,
                    lease_expires_at = NULL,
                    finished_at = CASE WHEN COALESCE(h.attempt, j.attempt_count)
                        - j.rate_limited_count >= j.max_attempts THEN c.now END
                FROM held h, clock c
                WHERE j.id = h.id AND (h.attempt IS NULL
                    OR (j.status = 'queued' AND j.attempt_count = h.attempt - 1))
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
            if let Err(err) = sqlx::query("ANALYZE prompt_jobs").execute(&self.pool).await {
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
        let mut size = size;
        let mut claimed: Vec<ClaimedJob> = Vec::new();
        // A claim that lost jobs to another claimer's (it waited for that commit) picks again
        // at once, past them: it would otherwise come back short while jobs are due, and its
        // pool would wait for the next notice. Each round takes at least one job or stops.
        // A claim from this process's mark that comes back short walks from the head too.
        let mut after = self.claim_mark.lock().map_or(None, |mark| mark.start());
        for _ in 0..CLAIM_ROUNDS {
            let round = self
                .claim_round(size, now, lease, except, worker, after)
                .await?;
            if let Ok(mut mark) = self.claim_mark.lock() {
                mark.record(after.is_none(), &round.claimed);
            }
            let took = i64::try_from(round.claimed.len()).unwrap_or(i64::MAX);
            claimed.extend(round.claimed);
            size = size.less(took);
            let short = size.most() > 0;
            if !short || (after.is_none() && round.lost == 0 && round.skipped == 0) {
                break;
            }
            after = None;
        }
        Ok(claimed)
    }

    async fn job_claim(
        &self,
        id: JobId,
        now: impl Into<Clock> + Send,
        lease: Duration,
    ) -> StoreResult<ClaimOne> {
        let now: Clock = now.into();
        // A concurrent claim of the same job: its insert waits for the other's commit, then
        // takes nothing, and the job is reported as the other left it.
        let rows = sqlx::query(claim_insert!(
            "SELECT j.id, j.prompt_id, j.model_id, j.prompt_version_id, j.attempt_count
             FROM prompt_jobs j
             WHERE j.id = $3 AND j.status = 'queued'
                AND NOT EXISTS (SELECT 1 FROM job_claims c WHERE c.job_id = j.id AND c.ended_at IS NULL)",
            worker = "NULL::bigint"
        ))
        .bind(now.fixed())
        .bind(micros(lease))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let round = ClaimRows::read(&rows)?;
        if let Some(job) = round.claimed.into_iter().next() {
            return Ok(ClaimOne::Claimed(Box::new(job)));
        }
        if round.skipped > 0 {
            return Ok(ClaimOne::Skipped);
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM prompt_jobs_view WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        match status {
            Some(status) => Ok(ClaimOne::NotClaimable(parse_status(&status)?)),
            None => Ok(ClaimOne::NotFound),
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
        // Expiry is judged by the database's clock, never by the rescuing process's: one
        // running ahead would otherwise take the live jobs of every other process. The
        // expiry is tested on the claim itself, so that a lease renewed meanwhile (the delete
        // waits for it) is seen renewed.
        let rows = sqlx::query(rescue_update!(
            "UPDATE job_claims c SET ended_at = k.now FROM clock k WHERE c.lease_expires_at < k.now",
            "SELECT id FROM prompt_jobs
            WHERE status = 'processing' AND lease_expires_at < (SELECT now FROM clock)
            FOR UPDATE SKIP LOCKED"
        ))
        .bind(now.fixed())
        .bind(ABANDONED)
        .fetch_all(&self.pool)
        .await?;
        // Ended claims are kept a minute (see migration 0017), far longer than a claim's
        // statement runs.
        sqlx::query(
            "DELETE FROM job_claims
             WHERE ended_at < COALESCE($1::timestamptz, now()) - interval '1 minute'",
        )
        .bind(now.fixed())
        .execute(&self.pool)
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
        // A claim's lease is renewed in its unlogged row; a provider batch's (or an older
        // version's) in the job's row.
        let owned = sqlx::query_as(
            "WITH renewed AS (
                -- Each claim looked up from the arrays by key (see `finish`).
                UPDATE job_claims c
                SET lease_expires_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
                FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
                WHERE c.job_id = t.id AND c.attempt = t.attempt AND c.ended_at IS NULL
                RETURNING c.job_id, c.attempt
            ), rows AS (
                UPDATE prompt_jobs j
                SET lease_expires_at = COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond'
                FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
                -- Found by key, never by a scan or the partial index; `processing` tested as
                -- in `finish`, where the planner cannot mistake it for \"no job\".
                WHERE j.id = ANY($1::bigint[]) AND j.id = t.id
                    AND (j.status || '') NOT IN ('queued', 'submitted', 'succeeded', 'failed', 'skipped')
                    AND j.attempt_count = t.attempt
                RETURNING j.id, j.attempt_count
            )
            SELECT job_id, attempt FROM renewed
            UNION ALL
            SELECT id, attempt_count FROM rows",
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
        // A released claim leaves no trace: the job's row never counted its attempt.
        let released: i64 = sqlx::query_scalar(
            "WITH input AS (
                SELECT * FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
            ), due AS (
                SELECT COALESCE($3::timestamptz, now()) + $4 * interval '1 microsecond' AS at
            ), dropped AS (
                DELETE FROM job_claims c USING input t
                WHERE c.job_id = t.id AND c.attempt = t.attempt AND c.ended_at IS NULL
                RETURNING c.job_id, c.attempt
            ), unclaimed AS (
                UPDATE prompt_jobs j SET next_attempt_at = d.at
                FROM dropped x, due d
                WHERE j.id = x.job_id AND j.status = 'queued' AND j.attempt_count = x.attempt - 1
                RETURNING j.id
            ), rows AS (
                UPDATE prompt_jobs j SET status = 'queued', attempt_count = j.attempt_count - 1,
                    lease_expires_at = NULL, started_at = NULL, next_attempt_at = d.at
                FROM input t, due d
                WHERE j.id = ANY($1::bigint[]) AND j.id = t.id
                    AND (j.status || '') NOT IN ('queued', 'submitted', 'succeeded', 'failed', 'skipped')
                    AND j.attempt_count = t.attempt
                RETURNING j.id
            )
            SELECT (SELECT count(*) FROM unclaimed) + (SELECT count(*) FROM rows)",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(now.fixed())
        .bind(micros(delay))
        .fetch_one(&mut *tx)
        .await?;
        if released > 0 {
            notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(released).unwrap_or(0))
    }
}

/// How many claim statements one claim may run when others take the jobs it picked.
const CLAIM_ROUNDS: usize = 4;

/// The due, unclaimed jobs a claim statement picks, oldest first: `$after` narrows them to
/// those after a position ($9, $10) of the due index, or is empty.
macro_rules! due_pick {
    ($after:literal) => {
        concat!(
            "SELECT j.id, j.prompt_id, j.model_id, j.prompt_version_id, j.attempt_count,
                j.next_attempt_at
             FROM prompt_jobs j
             WHERE j.status = 'queued' AND j.next_attempt_at <= COALESCE($1::timestamptz, now())
                AND j.model_id <> ALL($4::bigint[]) ",
            $after,
            "
                AND j.id NOT IN (SELECT c.job_id FROM job_claims c WHERE c.ended_at IS NULL)
             ORDER BY j.next_attempt_at, j.id
             LIMIT CASE WHEN $6::bigint IS NULL THEN $3 ELSE (
                SELECT $7 + LEAST($3 - $7, GREATEST(0, count(*) - $7 - $8)) FROM (
                    SELECT 1 FROM prompt_jobs j
                    WHERE j.status = 'queued'
                        AND j.next_attempt_at <= COALESCE($1::timestamptz, now())
                        AND j.model_id <> ALL($4::bigint[]) ",
            $after,
            "
                        AND j.id NOT IN (SELECT c.job_id FROM job_claims c WHERE c.ended_at IS NULL)
                    LIMIT $6) AS due) END"
        )
    };
}

/// Where this process's claims may start in the due index: claimed jobs stay `queued` (and in
/// the due index) until they finish, so a walk from its head passes over every job claimed and
/// still running (a thousand with a thousand slots). A claim starts after the newest job this
/// process claimed instead, and walks from the head when that comes back short, or when the
/// last such walk is [`FULL_WALK_EVERY`] old: jobs that come due again (a retry, a rescue, a
/// release) are due later than any job claimed before, and only a claim lost in a crash, or a
/// job of a model this process left out for a while, lies behind the mark.
#[derive(Debug, Default)]
pub(super) struct ClaimMark {
    after: Option<(DateTime<Utc>, i64)>,
    walked_at: Option<std::time::Instant>,
}

/// How often a claim walks the due index from its head whatever its mark.
const FULL_WALK_EVERY: Duration = Duration::from_secs(1);

impl ClaimMark {
    /// The position to start from, if the last walk from the head is recent.
    fn start(&self) -> Option<(DateTime<Utc>, i64)> {
        let recent = self
            .walked_at
            .is_some_and(|at| at.elapsed() < FULL_WALK_EVERY);
        self.after.filter(|_| recent)
    }

    /// Records a claim statement: from the head (`from_head`) or not, and what it took.
    fn record(&mut self, from_head: bool, took: &[ClaimedJob]) {
        if from_head {
            self.walked_at = Some(std::time::Instant::now());
        }
        let newest = took.iter().map(|c| (c.job.next_attempt_at, c.job.id)).max();
        if let Some(newest) = newest {
            self.after = Some(self.after.map_or(newest, |old| old.max(newest)));
        }
    }
}

impl PostgresStore {
    /// One claim statement of [`Queue::jobs_claim_except`], from the head of the due index or
    /// after `after`.
    async fn claim_round(
        &self,
        size: ClaimSize,
        now: Clock,
        lease: Duration,
        except: &[ModelId],
        worker: Option<WorkerId>,
        after: Option<(DateTime<Utc>, i64)>,
    ) -> StoreResult<ClaimRows> {
        // The due jobs are counted (up to the probe) only when the claim reaches ahead and
        // others may need them; the count is an init plan, run only when its branch is taken.
        // The LIMIT is `ClaimSize::given_due` (SQLite calls it), in SQL to keep one round trip.
        // The position is a row comparison, which the due index answers as a range.
        let query = match after {
            None => sqlx::query(claim_insert!(due_pick!(""), worker = "$5::bigint")),
            Some(_) => sqlx::query(claim_insert!(
                due_pick!("AND (j.next_attempt_at, j.id) > ($9::timestamptz, $10::bigint)"),
                worker = "$5::bigint"
            )),
        };
        let mut query = query
            .bind(now.fixed())
            .bind(micros(lease))
            .bind(size.most())
            .bind(except)
            .bind(worker)
            .bind(size.probe())
            .bind(size.now.max(0))
            .bind(size.spare);
        if let Some((at, id)) = after {
            query = query.bind(at).bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        ClaimRows::read(&rows)
    }
}
