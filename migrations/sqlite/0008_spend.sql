-- A budget reads "what did today's answers cost" every few seconds: this partial index holds
-- only the answers that cost something (free and unpriced ones add nothing to a sum, and
-- the mock's free answers would otherwise cost an index entry each), in creation order, with what the sum needs, so that the
-- read covers a day's answers without visiting the table, however many answers it holds.
CREATE INDEX responses_spend ON responses (created_at, model_id, cost_usd)
    WHERE cost_usd > 0;
