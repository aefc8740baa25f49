-- The processes that run jobs, so that a job shows who holds it and the dashboard counts the
-- calls actually in flight (a claimed job may still wait for a free slot). On SQLite a dead
-- process's jobs come back when their lease expires (`holds_lock` is always 0; PostgreSQL's
-- workers hold a lock the server releases when they die).
CREATE TABLE workers (
    id           INTEGER PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    holds_lock   INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    seen_at      INTEGER NOT NULL,
    -- As of `seen_at`: model calls in flight, and jobs claimed (in flight or waiting for a slot).
    running      INTEGER NOT NULL DEFAULT 0,
    held         INTEGER NOT NULL DEFAULT 0,
    stopped_at   INTEGER
);
ALTER TABLE prompt_jobs ADD COLUMN worker_id INTEGER;
