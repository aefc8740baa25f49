-- A prompt created without a model list runs on every model active when its batch is
-- enqueued, so that a model added later joins the next batch; its `prompt_models` rows stay
-- empty. Prompts written before this keep their explicit lists (0): what ran yesterday runs
-- today.
ALTER TABLE prompts ADD COLUMN all_models INTEGER NOT NULL DEFAULT 0;
