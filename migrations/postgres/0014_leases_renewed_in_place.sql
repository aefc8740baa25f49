-- A running job's lease is renewed every third of a lease (10 s by default) for as long as its
-- model call lasts. With the lease's expiry in an index, each renewal wrote a new row version
-- and an entry in every index of the table (358 WAL bytes a job); with the expiry in no index
-- it is a heap-only update beside the old version (116 bytes). Running jobs are found by this
-- partial index instead, which a renewal does not touch: the sweeper reads all of them (a
-- fleet's slots and claims ahead: thousands at most) and tests the expiry on each, and the
-- hand-back of a dead worker's jobs finds them by worker.
DROP INDEX prompt_jobs_leases;
CREATE INDEX prompt_jobs_processing ON prompt_jobs (worker_id) WHERE status = 'processing';
