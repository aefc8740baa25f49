-- SQLite rewrites an index entry only when one of its columns changes, and every claim and
-- every finish changes `status`: batch lookups use an index of the batch key alone, which
-- never changes, instead of the batch/status index.
CREATE INDEX prompt_jobs_batch ON prompt_jobs (batch_key);
DROP INDEX prompt_jobs_batch_status;

-- A successful attempt is recorded by its answer alone (no `job_attempts` row); the answer
-- keeps the HTTP status the attempt record had. Attempt rows written by earlier versions for
-- successes stay and are read as before.
ALTER TABLE responses ADD COLUMN http_status INTEGER;
