-- A job's row is rewritten twice (claim, finish). With full pages each new version went to
-- another page, which costs a lock record on the old tuple and the whole new tuple in the WAL;
-- with room left on the page the new version stays beside the old one and PostgreSQL logs only
-- the bytes that changed (W2 c=50: 193 -> 150 B per update record, lock records 2.5 -> 1.2 a
-- job, WAL 1,799 -> 1,638 B a job). New pages are filled to half; existing pages keep their
-- rows until they are rewritten (VACUUM FULL or CLUSTER applies it to old rows too).
ALTER TABLE prompt_jobs SET (fillfactor = 50);

-- Answers are written in batch order (a batch's answers lie together), and read by batch for
-- reports and costs: a BRIN range index finds them as well as the b-tree did, at almost no cost
-- per answer (the b-tree took an entry, ~74 WAL bytes, for every answer). The latest batches
-- with answers are read from the job key instead. New ranges are summarised as they fill.
DROP INDEX responses_batch;
CREATE INDEX responses_batch ON responses USING brin (batch_key) WITH (autosummarize = on);
