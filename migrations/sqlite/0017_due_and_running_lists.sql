-- PostgreSQL keeps its due and running jobs in lists of their own (its migration 0017); SQLite
-- rewrites a whole row on every update anyway. This migration keeps both databases' migration
-- numbers in step.
SELECT 1;
