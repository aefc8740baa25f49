//! Which active models this process cannot call, so that their jobs are not claimed at all:
//! those whose key or endpoint it lacks, and those a daily budget stops ([`super::budget`]).
//!
//! A model whose key (or declared endpoint) this process lacks would fail every attempt the
//! same way; claiming its jobs would spend their attempts and pause the endpoint for nothing.
//! Such jobs stay `queued` and are left to a process that has the setting (or this one, once
//! restarted with it). The settings are read once at start, but models can be added while the
//! process runs (by the API, or by another process on the same database), so the list is read
//! again when it is older than [`FRESH_FOR`]: cheap next to a claim, and soon enough that a
//! model added a moment ago is not claimed by a process that cannot run it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::{BlockedModel, Model, ModelId};
use crate::providers::Providers;
use crate::store::StoreResult;

use super::runtime::Runtime;

/// How long a read of the models answers for.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The active models `providers` cannot call among `models`, with why (`queued` is 0: the
/// counts are the caller's to add).
pub fn blocked_models(providers: &Providers, models: &[Model]) -> Vec<BlockedModel> {
    models
        .iter()
        .filter(|model| model.active)
        .filter_map(|model| {
            Some(BlockedModel {
                model_id: model.id,
                model_name: model.name.clone(),
                reason: providers.cannot_run(model)?,
                queued: 0,
            })
        })
        .collect()
}

/// The active models in batch mode (`params.batch`) that this process can call: their jobs go
/// through the provider's Batch API ([`super::batch`]), never one by one.
pub fn batch_models(providers: &Providers, models: &[Model]) -> Vec<Model> {
    models
        .iter()
        .filter(|model| model.active && model.spec.call().is_ok_and(|call| call.batch))
        .filter(|model| Providers::has_batch_api(model.provider))
        .filter(|model| providers.cannot_run(model).is_none())
        .cloned()
        .collect()
}

/// One read of the models: those this process cannot call, and those in batch mode.
type Read = (Instant, Arc<Vec<BlockedModel>>, Arc<Vec<Model>>);

/// The last read of the blocked models, shared by the claims of one process.
#[derive(Default)]
pub struct BlockedCache {
    last: Mutex<Option<Read>>,
}

impl Runtime {
    /// The active models this process cannot call, read at most [`FRESH_FOR`] ago.
    pub async fn blocked_models(&self) -> StoreResult<Arc<Vec<BlockedModel>>> {
        Ok(self.read_models().await?.1)
    }

    /// The active batch-mode models this process can call, read at most [`FRESH_FOR`] ago.
    pub async fn batch_models(&self) -> StoreResult<Arc<Vec<Model>>> {
        Ok(self.read_models().await?.2)
    }

    async fn read_models(&self) -> StoreResult<Read> {
        // A budget this process just used up is acted on at once, not a read later.
        let budget_reached = self.spend_cache().take_reached();
        if let Some(read) = lock(self.blocked_cache()).as_ref()
            && read.0.elapsed() < FRESH_FOR
            && !budget_reached
        {
            return Ok(read.clone());
        }
        let models = self.store().model_list().await?;
        let mut blocked = blocked_models(self.providers(), &models);
        for model in self.over_budget(&models).await? {
            if !blocked.iter().any(|b| b.model_id == model.model_id) {
                blocked.push(model);
            }
        }
        // A batch-mode model over its budget sends no batch either.
        let mut batch = batch_models(self.providers(), &models);
        batch.retain(|model| !blocked.iter().any(|b| b.model_id == model.id));
        let read = (Instant::now(), Arc::new(blocked), Arc::new(batch));
        *lock(self.blocked_cache()) = Some(read.clone());
        Ok(read)
    }

    /// The models whose jobs a claim must leave alone: those of [`Runtime::blocked_models`],
    /// and the batch-mode ones, whose jobs the batch loop gathers.
    pub async fn blocked_ids(&self) -> StoreResult<Vec<ModelId>> {
        let (_, blocked, batch) = self.read_models().await?;
        Ok(blocked
            .iter()
            .map(|b| b.model_id)
            .chain(batch.iter().map(|m| m.id))
            .collect())
    }
}

fn lock(cache: &BlockedCache) -> std::sync::MutexGuard<'_, Option<Read>> {
    // A poisoned lock only means a reader panicked; the cached value is still whole.
    cache
        .last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Says, as a pool starts, which models it will not run and why, so that a missing key is
/// heard of at once rather than after the first failed attempts.
pub async fn warn_at_start(runtime: &Runtime) {
    match runtime.blocked_models().await {
        Ok(blocked) => {
            for model in blocked.iter() {
                if model.by_budget() {
                    tracing::warn!(
                        model_id = model.model_id,
                        "model '{}' waits: {}",
                        model.model_name,
                        model.reason
                    );
                    continue;
                }
                tracing::warn!(
                    model_id = model.model_id,
                    "model '{}' cannot run in this process: {}; its jobs stay queued until a \
                     worker with the setting runs",
                    model.model_name,
                    model.reason
                );
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot check which models can run"),
    }
}
