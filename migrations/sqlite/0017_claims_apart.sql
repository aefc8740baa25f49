-- PostgreSQL keeps claims apart from the job rows (its migration 0017); SQLite writes a claim
-- into the job's row as before. This keeps both databases' migration numbers in step.
SELECT 1;
