-- A running job's lease is renewed every third of a lease for as long as its model call lasts;
-- with the lease's expiry in an index, each renewal also moved the job's entry in that index.
-- Running jobs are found by this partial index instead, which a renewal does not touch: the
-- sweeper reads all of them and tests the expiry on each, and the hand-back of a dead
-- worker's jobs finds them by worker.
DROP INDEX prompt_jobs_leases;
CREATE INDEX prompt_jobs_processing ON prompt_jobs (worker_id) WHERE status = 'processing';
