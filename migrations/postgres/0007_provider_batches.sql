-- Provider batches (OpenAI's Batch API): the jobs of one batch-mode model and one batch key,
-- sent as one JSONL file and answered within 24 hours. The local row and its job links are
-- written before anything is uploaded, so that a process killed at any step leaves a row that
-- says how far it got: `preparing` (nothing known to be at the provider), `uploaded` (a file,
-- maybe a batch: the provider's list is searched for `token` before submitting again),
-- `submitted` (polled until done), `done` or `abandoned`. A process working on a row moves its
-- `next_poll_at` ahead by the time it may take; a row whose time came is anyone's to carry on.
CREATE TABLE provider_batches (
    id                 BIGSERIAL PRIMARY KEY,
    model_id           BIGINT NOT NULL,
    batch_key          TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'preparing'
                       CHECK (state IN ('preparing', 'uploaded', 'submitted', 'done', 'abandoned')),
    token              TEXT NOT NULL,
    request_count      INTEGER NOT NULL,
    input_file_id      TEXT,
    provider_batch_id  TEXT,
    provider_status    TEXT,
    output_file_id     TEXT,
    error_file_id      TEXT,
    error              TEXT,
    polls              INTEGER NOT NULL DEFAULT 0,
    next_poll_at       TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ
);
CREATE INDEX provider_batches_open ON provider_batches (next_poll_at)
    WHERE state NOT IN ('done', 'abandoned');

-- Which attempt of which job went into which provider batch (`custom_id` is `job-ID-ATTEMPT`),
-- and how the line ended (`succeeded`, `retry`, `failed`, `cancelled`; NULL while pending):
-- an answer whose link says `succeeded` was served through the Batch API.
CREATE TABLE provider_batch_jobs (
    job_id    BIGINT NOT NULL,
    attempt   INTEGER NOT NULL,
    batch_id  BIGINT NOT NULL,
    outcome   TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX provider_batch_jobs_batch ON provider_batch_jobs (batch_id);
