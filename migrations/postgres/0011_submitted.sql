-- A job in a provider batch that the provider accepted is `submitted` (it was `processing`
-- with a lease as long as the provider's window): the batch loop alone moves it on, and no
-- lease, rescue or heartbeat reads it. The partial indexes keep their predicates: the lease
-- index covers `processing` jobs only, so submitted jobs stay out of the rescue's scan.
ALTER TABLE prompt_jobs DROP CONSTRAINT prompt_jobs_status_check;
ALTER TABLE prompt_jobs ADD CONSTRAINT prompt_jobs_status_check
    CHECK (status IN ('queued', 'processing', 'submitted', 'succeeded', 'failed', 'skipped'));
