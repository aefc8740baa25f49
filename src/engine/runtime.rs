//! What running jobs needs, as one value: the store, the providers, the limits, the retry
//! policy, the metrics, the wake-up signal and the settings.
//!
//! Every part of the engine (the pool, one attempt, the HTTP fan-out) takes a [`Runtime`] and
//! nothing above it: the use cases in [`crate::app`] hold one and hand it down, so the arrows
//! run app → engine → {store, providers} and never back. Cheap to clone.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::{ProviderSettings, Providers};
use crate::store::Store;

use super::blocked::BlockedCache;
use super::budget::SpendCache;
use super::limits::Limits;
use super::retry::RetryPolicy;

/// The engine's dependencies, shared by every process-wide part of it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    providers: Providers,
    limits: Limits,
    retry_policy: RetryPolicy,
    metrics: Metrics,
    /// Wakes the in-process workers when jobs were enqueued, retried or rescued.
    work_available: Arc<Notify>,
    /// The models this process cannot call, as last read.
    blocked: BlockedCache,
    /// The day's spending, as last read, for the budgets.
    spend: SpendCache,
    config: Config,
}

impl Runtime {
    /// Builds the providers from `config` on an open store.
    pub fn new(config: Config, store: Store) -> anyhow::Result<Runtime> {
        let providers = Providers::new(ProviderSettings {
            openai_api_key: config.openai_api_key.clone(),
            openai_base_url: config.openai_base_url.clone(),
            openrouter_api_key: config.openrouter_api_key.clone(),
            openrouter_base_url: config.openrouter_base_url.clone(),
            app_url: config.app_url.clone(),
            endpoints: config.endpoints.clone(),
            ignored_endpoints: config.ignored_endpoints.clone(),
            redact_also: config.cron_secret.iter().cloned().collect(),
            timeout: config.model_timeout,
        })?;
        let limits = Limits::new(store.clone(), providers.clone(), config.worker_concurrency);
        Ok(Runtime {
            inner: Arc::new(Inner {
                store,
                providers,
                limits,
                retry_policy: RetryPolicy::default(),
                metrics: Metrics::default(),
                work_available: Arc::new(Notify::new()),
                blocked: BlockedCache::default(),
                spend: SpendCache::default(),
                config,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry_policy
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(super) fn blocked_cache(&self) -> &BlockedCache {
        &self.inner.blocked
    }

    pub(super) fn spend_cache(&self) -> &SpendCache {
        &self.inner.spend
    }

    /// The signal the worker pool sleeps on.
    pub fn work_available(&self) -> Arc<Notify> {
        self.inner.work_available.clone()
    }

    /// Tells the pools of this process that work may be due.
    pub fn announce_work(&self) {
        self.inner.work_available.notify_waiters();
    }
}

impl AsRef<Runtime> for Runtime {
    fn as_ref(&self) -> &Runtime {
        self
    }
}
