-- A worker's process as this machine knows it (PID namespace, user, start time): another
-- process of the same namespace and user can then tell at once that it ended, instead of after
-- it has been silent for seconds. NULL for rows written before, which are judged as before.
ALTER TABLE workers ADD COLUMN process TEXT;
