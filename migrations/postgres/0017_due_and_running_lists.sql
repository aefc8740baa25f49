-- Which jobs are due and which are running is kept in two lists of their own, outside the job
-- table, so that no index of the job table depends on a job's state: a claim and a finish then
-- rewrite the job's row beside the old version (a heap-only update) and add no index entry
-- (W2 drain: 417 WAL bytes a job were such entries, 62 the claim's row lock).
--
-- The lists are UNLOGGED: they cost no WAL at all. PostgreSQL empties an unlogged table when
-- it recovers from a crash (and a promoted replica starts with it empty). The job rows, which
-- are logged, stay the truth: a list is rebuilt from them when `job_lists_intact` is found
-- empty (see `store::postgres::lists`), and every statement that reads a list checks the job
-- row it points to, so a list entry that outlived its job's state is skipped, never obeyed.
CREATE UNLOGGED TABLE job_queue (
    job_id           BIGINT PRIMARY KEY,
    model_id         BIGINT NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_queue_due ON job_queue (next_attempt_at, job_id);

CREATE UNLOGGED TABLE job_claims (
    job_id     BIGINT PRIMARY KEY,
    worker_id  BIGINT
);

-- One row while the lists above are whole; gone after a crash.
CREATE UNLOGGED TABLE job_lists_intact (intact BOOLEAN PRIMARY KEY CHECK (intact));

-- The lists follow the job rows: a claim takes its jobs off the due list and lists them as
-- running itself (it is the only way into `processing`, and knows the worker); every other
-- change is followed by these triggers, whatever statement makes it (a finish, a rescue, a
-- retry, a cancel, one added later). Each reads the statement's changed rows once, at its
-- end: a few set operations per statement rather than work per row. A job is listed as due
-- while `queued` (with its model and time) and as running while `processing` (with its
-- worker, recorded there alone: written to the job's row by every claim, it kept the claim's
-- new row version from sharing its tail with the old one, 30 WAL bytes a claim).
CREATE FUNCTION prompt_jobs_list_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_queue (job_id, model_id, next_attempt_at)
        SELECT id, model_id, next_attempt_at FROM changed_jobs WHERE status = 'queued';
    RETURN NULL;
END
$$;
CREATE FUNCTION prompt_jobs_list_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    requeued BOOLEAN;
    left_queue BOOLEAN;
    not_running BOOLEAN;
BEGIN
    -- One pass tells what the statement did: a claim or a lease renewal (every row still
    -- `processing`) has nothing to follow here.
    SELECT bool_or(status = 'queued'), bool_or(status IN ('skipped', 'submitted')),
           bool_or(status <> 'processing')
        INTO requeued, left_queue, not_running
        FROM changed_jobs;
    IF NOT COALESCE(not_running, FALSE) THEN
        RETURN NULL;
    END IF;
    -- Out of `queued` other than by a claim: a cancel or skip, a provider batch's submission.
    -- (No statement moves a job from `queued` straight to an ended state.)
    IF left_queue THEN
        DELETE FROM job_queue q USING changed_jobs n
            WHERE q.job_id = n.id AND n.status IN ('skipped', 'submitted');
    END IF;
    DELETE FROM job_claims c USING changed_jobs n
        WHERE c.job_id = n.id AND n.status <> 'processing';
    IF requeued THEN
        INSERT INTO job_queue (job_id, model_id, next_attempt_at)
            SELECT id, model_id, next_attempt_at FROM changed_jobs WHERE status = 'queued'
            ON CONFLICT (job_id) DO UPDATE SET next_attempt_at = EXCLUDED.next_attempt_at
                WHERE job_queue.next_attempt_at <> EXCLUDED.next_attempt_at;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER prompt_jobs_inserted_lists AFTER INSERT ON prompt_jobs
    REFERENCING NEW TABLE AS changed_jobs FOR EACH STATEMENT
    EXECUTE FUNCTION prompt_jobs_list_inserted();
CREATE TRIGGER prompt_jobs_updated_lists AFTER UPDATE ON prompt_jobs
    REFERENCING NEW TABLE AS changed_jobs FOR EACH STATEMENT
    EXECUTE FUNCTION prompt_jobs_list_updated();

INSERT INTO job_queue (job_id, model_id, next_attempt_at)
    SELECT id, model_id, next_attempt_at FROM prompt_jobs WHERE status = 'queued';
INSERT INTO job_claims (job_id, worker_id)
    SELECT id, worker_id FROM prompt_jobs WHERE status = 'processing';
INSERT INTO job_lists_intact VALUES (TRUE);

-- A claim's and a finish's new row versions are written in place while the page has room; a
-- batch's jobs lie together and are claimed and finished together, so a page must hold its
-- rows' next versions until the old ones can be pruned. At half-full pages (migration 0013)
-- about one update in ten found none and went to another page, with an entry in each index and
-- a row lock (W2 drain 1,061-1,074 -> 1,007-1,013 WAL bytes a job at 40 %). The job table takes
-- a quarter more pages for new rows (a year of jobs: 413 -> ~520 MB; its answers take more).
ALTER TABLE prompt_jobs SET (fillfactor = 40);
DROP INDEX prompt_jobs_due;
DROP INDEX prompt_jobs_processing;
-- Failed jobs are found by their error, which a claim and a success leave as it is (NULL for
-- almost every job): only a failure, a retry or a skip writes an entry.
DROP INDEX prompt_jobs_failed;
UPDATE prompt_jobs SET error_message = 'failed' WHERE status = 'failed' AND error_message IS NULL;
CREATE INDEX prompt_jobs_errors ON prompt_jobs (id) WHERE error_message IS NOT NULL;
