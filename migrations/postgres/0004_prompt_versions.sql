-- One batch answers one version of each prompt.
--
-- A prompt's text is versioned when it is written: `prompt_versions` holds each distinct text
-- once per prompt (keyed by its SHA-256), `prompts.version_id` names the current one. A job
-- records the version current when it was enqueued, and the model's generation params
-- (`temperature`, `maxTokens`, `seed`, `extra`) as they were then; the claim sends those, so
-- an edit made while a batch runs applies from the next batch on. A response records the
-- version it answers. Jobs enqueued before this migration have no version and run the
-- prompt's current text, as they always did; prompts get their first version at start-up.
CREATE TABLE prompt_versions (
    id          BIGSERIAL PRIMARY KEY,
    prompt_id   BIGINT NOT NULL REFERENCES prompts (id),
    hash        TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT prompt_versions_key UNIQUE (prompt_id, hash)
);

ALTER TABLE prompts ADD COLUMN version_id BIGINT REFERENCES prompt_versions (id);
ALTER TABLE prompt_jobs ADD COLUMN prompt_version_id BIGINT;
-- NULL: the model had no generation params at enqueue.
ALTER TABLE prompt_jobs ADD COLUMN gen_params JSONB;
ALTER TABLE responses ADD COLUMN prompt_version_id BIGINT;
