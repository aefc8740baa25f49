-- PostgreSQL leaves room on the job table's pages for the claim's and the finish's new row
-- versions (its migration 0013). SQLite rewrites a row in place and has no such setting: this
-- migration keeps both databases' migration numbers in step.
SELECT 1;
