-- A job in a provider batch that the provider accepted is `submitted` (it was `processing`
-- with a lease as long as the provider's window): the batch loop alone moves it on, and no
-- lease, rescue or heartbeat reads it.
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt (its documented
-- twelve-step procedure), with the columns in their old order and every index as the earlier
-- migrations left it. No foreign key refers to `prompt_jobs`, and the migration runs in one
-- transaction, so no reader sees the table missing.
CREATE TABLE prompt_jobs_new (
    id                  INTEGER PRIMARY KEY,
    prompt_id           INTEGER NOT NULL,
    model_id            INTEGER NOT NULL,
    run_index           INTEGER NOT NULL,
    batch_key           TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'processing', 'submitted', 'succeeded',
                                          'failed', 'skipped')),
    error_message       TEXT,
    attempt_count       INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    scheduled_for       INTEGER NOT NULL,
    next_attempt_at     INTEGER NOT NULL,
    lease_expires_at    INTEGER,
    started_at          INTEGER,
    finished_at         INTEGER,
    created_at          INTEGER NOT NULL,
    rate_limited_count  INTEGER NOT NULL DEFAULT 0,
    prompt_version_id   INTEGER,
    gen_params          TEXT,
    worker_id           INTEGER,
    CONSTRAINT prompt_jobs_key UNIQUE (prompt_id, model_id, run_index, batch_key)
);
INSERT INTO prompt_jobs_new (id, prompt_id, model_id, run_index, batch_key, status,
    error_message, attempt_count, max_attempts, scheduled_for, next_attempt_at,
    lease_expires_at, started_at, finished_at, created_at, rate_limited_count,
    prompt_version_id, gen_params, worker_id)
SELECT id, prompt_id, model_id, run_index, batch_key, status,
    error_message, attempt_count, max_attempts, scheduled_for, next_attempt_at,
    lease_expires_at, started_at, finished_at, created_at, rate_limited_count,
    prompt_version_id, gen_params, worker_id
FROM prompt_jobs;
DROP TABLE prompt_jobs;
ALTER TABLE prompt_jobs_new RENAME TO prompt_jobs;
-- The claim reads this partial index in order and nothing else.
CREATE INDEX prompt_jobs_due ON prompt_jobs (next_attempt_at, id) WHERE status = 'queued';
-- `processing` only: submitted jobs hold no lease and stay out of the rescue's scan.
CREATE INDEX prompt_jobs_leases ON prompt_jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX prompt_jobs_batch ON prompt_jobs (batch_key);
