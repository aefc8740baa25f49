-- The processes that run jobs, so that a job shows who holds it, the dashboard counts the
-- calls actually in flight (a claimed job may still wait for a free slot), and on PostgreSQL
-- a dead process's jobs come back at once: each worker holds a session advisory lock named
-- by its id, which the server releases when its connection dies (`holds_lock`); a worker
-- behind a transaction-mode pooler without a direct URL holds none, and its jobs come back
-- when their lease expires, as before.
CREATE TABLE workers (
    id BIGSERIAL PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    holds_lock BOOLEAN NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    -- As of `seen_at`: model calls in flight, and jobs claimed (in flight or waiting for a slot).
    running INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    stopped_at TIMESTAMPTZ
);
-- In no index: a claim that sets it can still be a heap-only update where nothing else stops it.
ALTER TABLE prompt_jobs ADD COLUMN worker_id BIGINT;
