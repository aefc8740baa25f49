-- Failed jobs are found through an index of their own (the dashboard's failures page, a
-- status filter): without it each such read scans a year of jobs. A partial index is written
-- only by the rows it holds, so a job that succeeds pays nothing for it.
CREATE INDEX prompt_jobs_failed ON prompt_jobs (id) WHERE status = 'failed';
