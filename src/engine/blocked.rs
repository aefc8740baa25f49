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

/// The last read of the blocked models, shared by the claims of one process.
#[derive(Default)]
pub struct BlockedCache {
    last: Mutex<Option<(Instant, Arc<Vec<BlockedModel>>)>>,
}

impl Runtime {
    /// The active models this process cannot call, read at most [`FRESH_FOR`] ago.
    pub async fn blocked_models(&self) -> StoreResult<Arc<Vec<BlockedModel>>> {
        let budget_reached = self.spend_cache().take_reached();
        if let Some((at, blocked)) = lock(self.blocked_cache()).as_ref()
            && at.elapsed() < FRESH_FOR
            && !budget_reached
        {
            return Ok(blocked.clone());
        }
        let models = self.store().model_list().await?;
        let mut blocked = blocked_models(self.providers(), &models);
        for model in self.over_budget(&models).await? {
            if !blocked.iter().any(|b| b.model_id == model.model_id) {
                blocked.push(model);
            }
        }
        let blocked = Arc::new(blocked);
        *lock(self.blocked_cache()) = Some((Instant::now(), blocked.clone()));
        Ok(blocked)
    }

    /// The ids of [`Runtime::blocked_models`], as a claim takes them.
    pub async fn blocked_ids(&self) -> StoreResult<Vec<ModelId>> {
        Ok(self
            .blocked_models()
            .await?
            .iter()
            .map(|b| b.model_id)
            .collect())
    }
}

fn lock(
    cache: &BlockedCache,
) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Vec<BlockedModel>>)>> {
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
