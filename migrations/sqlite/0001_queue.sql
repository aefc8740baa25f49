-- The queue schema on SQLite: timestamps are INTEGER milliseconds since the Unix epoch (UTC),
-- booleans 0/1, params JSON text.

CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
-- A deleted model keeps its history but frees its name.
CREATE UNIQUE INDEX models_name_live ON models (name) WHERE deleted_at IS NULL;

CREATE TABLE prompts (
    id              INTEGER PRIMARY KEY,
    text            TEXT NOT NULL,
    runs            INTEGER NOT NULL DEFAULT 1 CHECK (runs BETWEEN 1 AND 1000),
    active          INTEGER NOT NULL DEFAULT 1,
    schedule        TEXT,
    last_run_at     INTEGER,
    last_batch_key  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);

CREATE TABLE prompt_models (
    prompt_id  INTEGER NOT NULL REFERENCES prompts (id),
    model_id   INTEGER NOT NULL REFERENCES models (id),
    PRIMARY KEY (prompt_id, model_id)
);

-- No foreign keys on the queue's own tables: prompts and models are only ever soft-deleted,
-- attempts and responses are written only beside the fenced update of their job, and a
-- per-row foreign-key check costs more than the insert it guards at 20,000 jobs a pass.
CREATE TABLE prompt_jobs (
    id                INTEGER PRIMARY KEY,
    prompt_id         INTEGER NOT NULL,
    model_id          INTEGER NOT NULL,
    run_index         INTEGER NOT NULL,
    batch_key         TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'processing', 'succeeded', 'failed', 'skipped')),
    error_message     TEXT,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    scheduled_for     INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    lease_expires_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    created_at        INTEGER NOT NULL,
    CONSTRAINT prompt_jobs_key UNIQUE (prompt_id, model_id, run_index, batch_key)
);
-- The claim reads this partial index in order and nothing else.
CREATE INDEX prompt_jobs_due ON prompt_jobs (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX prompt_jobs_leases ON prompt_jobs (lease_expires_at) WHERE status = 'processing';
-- Summaries by batch (the common view) are index-only scans; a summary by prompt walks the
-- unique key's prefix. Every index here is paid on each claim and finish, so there are few.
CREATE INDEX prompt_jobs_batch_status ON prompt_jobs (batch_key, status);

CREATE TABLE job_attempts (
    id             INTEGER PRIMARY KEY,
    job_id         INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'failed', 'abandoned')),
    http_status    INTEGER,
    error_class    TEXT,
    error_message  TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, attempt);

CREATE TABLE responses (
    id                   INTEGER PRIMARY KEY,
    job_id               INTEGER NOT NULL UNIQUE,
    prompt_id            INTEGER NOT NULL,
    model_id             INTEGER NOT NULL,
    batch_key            TEXT NOT NULL,
    run_index            INTEGER NOT NULL,
    text                 TEXT NOT NULL,
    served_model         TEXT,
    finish_reason        TEXT,
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    total_tokens         INTEGER,
    cached_tokens        INTEGER,
    reasoning_tokens     INTEGER,
    cost_usd             REAL,
    latency_ms           INTEGER NOT NULL,
    provider_request_id  TEXT,
    citations            TEXT,
    raw                  TEXT,
    created_at           INTEGER NOT NULL
);
CREATE INDEX responses_batch ON responses (batch_key, id);
CREATE INDEX responses_prompt ON responses (prompt_id, id);
CREATE INDEX responses_created ON responses (created_at);
