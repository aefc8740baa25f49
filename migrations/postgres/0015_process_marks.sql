-- SQLite records each worker's process mark (its migration 0015); PostgreSQL tells a dead
-- worker by its session lock. This migration keeps both databases' migration numbers in step.
SELECT 1;
