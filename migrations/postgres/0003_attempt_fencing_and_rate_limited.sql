-- A claim answered with a rate limit (429) is counted apart from attempts: `attempt_count`
-- stays the claim counter that fences every write of an attempt, and the attempts a job
-- spent are `attempt_count - rate_limited_count`.
ALTER TABLE prompt_jobs ADD COLUMN rate_limited_count INTEGER NOT NULL DEFAULT 0;

-- Rate-limited answers in a row with no success, per model: past a threshold the model is
-- paused as a whole instead of each of its jobs cycling. Shared by every process.
ALTER TABLE pauses ADD COLUMN strikes INTEGER NOT NULL DEFAULT 0;
