-- Every claim and every finish rewrites a job's row, and on PostgreSQL such an update (never
-- HOT: `status` decides the partial indexes) adds an entry to each of the table's indexes.
-- Batch lookups now use the job key, which starts with the batch, so the batch/status index
-- goes: one index entry fewer per claim and per finish.
ALTER TABLE prompt_jobs DROP CONSTRAINT prompt_jobs_key;
ALTER TABLE prompt_jobs ADD CONSTRAINT prompt_jobs_key
    UNIQUE (batch_key, prompt_id, model_id, run_index);
DROP INDEX prompt_jobs_batch_status;

-- A successful attempt is recorded by its answer alone (no `job_attempts` row: three index
-- entries and a heap row fewer per job); the answer keeps the HTTP status the attempt record
-- had. Attempt rows written by earlier versions for successes stay and are read as before.
ALTER TABLE responses ADD COLUMN http_status INTEGER;

-- Answers are pruned and filtered by time in creation order: a BRIN range index costs an
-- insert almost nothing, where the b-tree it replaces took an entry per answer.
DROP INDEX responses_created;
CREATE INDEX responses_created ON responses USING brin (created_at);
