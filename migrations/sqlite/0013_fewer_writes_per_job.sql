-- PostgreSQL leaves room on the job table's pages for the claim's and the finish's new row
-- versions, and keeps a range index on the answers' batch key (its migration 0013). SQLite
-- rewrites a row in place and has neither setting nor range indexes: this migration keeps both
-- databases' migration numbers in step.
SELECT 1;
