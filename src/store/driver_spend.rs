//! The store's contract for money: what the answers of a period cost, and the token counts of
//! recent answers that an estimate of the next batch starts from. Reads only.
//!
//! Apart from [`super::driver`] so that it can grow without touching the queue's contract;
//! both backends implement it in a file of their own (`sqlite/spend.rs`, `postgres/spend.rs`),
//! and `tests/store_conformance.rs` holds them to the same answers.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{ModelId, PromptId};

/// What one model's answers cost over a period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpend {
    pub model_id: ModelId,
    /// The sum of the answers' known costs; answers whose cost is unknown add nothing.
    pub cost_usd: f64,
}

/// The mean token counts of one model's recent answers to one prompt.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct TokenAverage {
    pub model_id: ModelId,
    pub prompt_id: PromptId,
    /// Answers averaged (those that reported prompt or completion tokens).
    pub answers: i64,
    pub prompt: f64,
    pub cached: f64,
    pub completion: f64,
}

/// Reads of what answers cost.
pub trait Spending: Send + Sync {
    /// Per model, the summed known cost of the answers stored at or after `since` (models
    /// without such an answer are left out). Reads the index of costed answers by creation
    /// time (migration 0008): a day's answers, not the whole table.
    fn spend_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<ModelSpend>>> + Send;

    /// Per (model, prompt) among `models`, the mean token counts of the answers stored at or
    /// after `since` that reported any. Pairs without such an answer are left out.
    fn token_averages(
        &self,
        models: &[ModelId],
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<TokenAverage>>> + Send;
}
