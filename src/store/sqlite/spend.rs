//! SQLite's side of [`Spending`]: sums and means over the answers of a period, on the readers.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, ms};
use crate::domain::ModelId;
use crate::store::StoreResult;
use crate::store::driver_spend::{ModelSpend, Spending, TokenAverage};

impl Spending for SqliteStore {
    async fn spend_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<ModelSpend>> {
        // `cost_usd > 0` lets the planner take the partial index `responses_spend`.
        Ok(sqlx::query_as(
            "SELECT model_id, SUM(cost_usd) AS cost_usd FROM responses
             WHERE created_at >= ? AND cost_usd > 0
             GROUP BY model_id ORDER BY model_id",
        )
        .bind(ms(since))
        .fetch_all(&self.readers)
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
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT model_id, prompt_id, COUNT(*) AS answers,
                AVG(COALESCE(prompt_tokens, 0)) AS prompt,
                AVG(COALESCE(cached_tokens, 0)) AS cached,
                AVG(COALESCE(completion_tokens, 0)) AS completion
             FROM responses
             WHERE (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
               AND created_at >= ",
        );
        query.push_bind(ms(since)).push(" AND model_id IN (");
        let mut ids = query.separated(", ");
        for id in models {
            ids.push_bind(*id);
        }
        query.push(") GROUP BY model_id, prompt_id ORDER BY model_id, prompt_id");
        Ok(query.build_query_as().fetch_all(&self.readers).await?)
    }
}
