-- A budget reads "what did today's answers cost" every few seconds: this partial b-tree holds
-- only the answers that cost something (free and unpriced ones add nothing to a sum, and
-- the mock's free answers would otherwise cost an index entry each), in creation order, and includes what the sum needs, so
-- that the read is an index-only scan of a day's answers (the BRIN index on created_at gives
-- block ranges, which the sum would have to visit and recheck).
CREATE INDEX responses_spend ON responses (created_at) INCLUDE (model_id, cost_usd)
    WHERE cost_usd > 0;
