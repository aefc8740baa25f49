//! PostgreSQL's side of [`Spending`]: sums and means over the answers of a period.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::domain::ModelId;
use crate::store::StoreResult;
use crate::store::driver_spend::{ModelSpend, Spending, TokenAverage};

impl Spending for PostgresStore {
    async fn spend_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<ModelSpend>> {
        // `cost_usd > 0` matches the partial index `responses_spend`, whose included
        // columns answer without visiting the table.
        Ok(sqlx::query_as(
            "SELECT model_id, sum(cost_usd) AS cost_usd FROM responses
             WHERE created_at >= $1 AND cost_usd > 0
             GROUP BY model_id ORDER BY model_id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn token_averages(
        &self,
        models: &[ModelId],
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<TokenAverage>> {
        if models.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT model_id, prompt_id, count(*) AS answers,
                avg(COALESCE(prompt_tokens, 0))::float8 AS prompt,
                avg(COALESCE(cached_tokens, 0))::float8 AS cached,
                avg(COALESCE(completion_tokens, 0))::float8 AS completion
             FROM responses
             WHERE (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
               AND created_at >= $1 AND model_id = ANY($2)
             GROUP BY model_id, prompt_id ORDER BY model_id, prompt_id",
        )
        .bind(since)
        .bind(models)
        .fetch_all(&self.pool)
        .await?)
    }
}
