//! The dashboard's picture of the queue beyond one job listing: the newest batches with their
//! counts, each model's success and latency over the newest of them, the pauses in force, and
//! what today's answers cost.
//!
//! Reads only, like [`App::status`]; every figure is computed in the database.

use serde::Serialize;

use super::{App, AppError, AppResult, MAX_PAGE};
use crate::store::{BatchSummary, ModelWindow, Pause};

/// The newest batches, the models' figures over a window of them, the pauses in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Newest first.
    pub batches: Vec<BatchSummary>,
    /// The batch keys the model figures cover: the newest `window` of `batches`.
    pub window: Vec<String>,
    /// By model id.
    pub models: Vec<ModelWindow>,
    pub pauses: Vec<Pause>,
    /// Active models this process cannot call, with their queued jobs.
    pub blocked: Vec<crate::domain::BlockedModel>,
    /// What today's answers cost, beside the daily budget.
    pub spent_today: crate::engine::budget::SpendToday,
}

impl App {
    /// The newest `batches` batches, and each model's figures over the newest `window` of them.
    pub async fn overview(&self, batches: i64, window: usize) -> AppResult<Overview> {
        if !(1..=MAX_PAGE).contains(&batches) {
            return Err(AppError::BadInput(format!(
                "batches must be between 1 and {MAX_PAGE}"
            )));
        }
        let store = self.store();
        let (batches, pauses) = tokio::try_join!(
            store.batches_recent(batches),
            store.pauses_active(store.now())
        )?;
        let window: Vec<String> = batches
            .iter()
            .take(window)
            .map(|batch| batch.batch_key.clone())
            .collect();
        let models = store.models_window(&window).await?;
        let blocked = self.blocked(&crate::store::JobFilter::default()).await?;
        let spent_today = self.runtime().spent_today().await?;
        Ok(Overview {
            blocked,
            spent_today,
            batches,
            window,
            models,
            pauses,
        })
    }
}
