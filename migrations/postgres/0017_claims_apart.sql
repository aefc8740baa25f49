-- A worker's claim no longer rewrites the job's row. That update could never be heap-only
-- (`status` decides the partial indexes), so each claim wrote the row again, an entry in each
-- of its indexes and a row lock: about 500 of the 1,550 WAL bytes a drained job cost. A claim
-- is now a row of this unlogged table (no WAL at all), and the job's row is written once, by
-- its finish, which takes the attempt, start and worker from the claim.
--
-- A job's claim row outlives its attempt for a minute (`ended_at` set by the finish or the
-- rescue, the row deleted by a later sweep): a claimer picks jobs without locking them, so
-- one whose snapshot predates a claim and its finish may pick a job already run, and the
-- claim's key, still holding that attempt's number, turns it away. A new attempt of a job
-- takes over its ended claim's row.
--
-- Unlogged means a server crash empties it: the claimed jobs are `queued` again and are run
-- again, and the finishes of the lost claims are turned away, so a job keeps one answer (the
-- same guarantee as before, where a claim committed without waiting for its flush). Provider
-- batches still claim by writing the row (`processing`, then `submitted`): they are few and
-- long.
CREATE UNLOGGED TABLE job_claims (
    job_id           BIGINT PRIMARY KEY,
    attempt          INTEGER NOT NULL,
    worker_id        BIGINT,
    started_at       TIMESTAMPTZ NOT NULL,
    lease_expires_at TIMESTAMPTZ NOT NULL,
    ended_at         TIMESTAMPTZ
);
-- The claims in force: those the jobs' view shows and claims pass over, and those a dead
-- worker held (read from this index too: a fleet's claims in force are thousands at most).
-- Ended claims can be many: a drain of 20,000 jobs a second ends that many a second.
CREATE INDEX job_claims_active ON job_claims (job_id) WHERE ended_at IS NULL;

-- Jobs as their readers see them: a claimed job is `processing`, with the claim's attempt,
-- start, lease and worker. Every write goes to `prompt_jobs` itself.
CREATE VIEW prompt_jobs_view AS
    SELECT j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key, j.status, j.error_message,
        j.attempt_count, j.max_attempts, j.scheduled_for, j.next_attempt_at, j.lease_expires_at,
        j.started_at, j.finished_at, j.created_at, j.rate_limited_count, j.prompt_version_id,
        j.gen_params, j.worker_id
    FROM prompt_jobs j
    WHERE j.status <> 'queued' OR NOT EXISTS (SELECT 1 FROM job_claims c WHERE c.job_id = j.id AND c.ended_at IS NULL)
    UNION ALL
    SELECT j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key, 'processing', j.error_message,
        c.attempt, j.max_attempts, j.scheduled_for, j.next_attempt_at, c.lease_expires_at,
        c.started_at, NULL, j.created_at, j.rate_limited_count, j.prompt_version_id,
        j.gen_params, c.worker_id
    FROM job_claims c JOIN prompt_jobs j ON j.id = c.job_id AND j.status = 'queued'
    WHERE c.ended_at IS NULL;

-- The job key takes an entry per finish beside the enqueue's, in the middle of its batch's
-- range: pages left half empty split far less often.
ALTER INDEX prompt_jobs_key SET (fillfactor = 50);
