-- A budget reads "what did today's answers cost" every few seconds: this partial index holds
-- only the answers with a known cost, in creation order, with what the sum needs, so that the
-- read covers a day's answers without visiting the table, however many answers it holds.
CREATE INDEX responses_spend ON responses (created_at, model_id, cost_usd)
    WHERE cost_usd IS NOT NULL;
