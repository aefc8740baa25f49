//! The use cases: every face of promptq (HTTP, CLI, built-in cron, worker pool) calls these
//! and holds no logic of its own.
//!
//! [`App`] holds the engine's [`Runtime`] (store, providers, limits, settings) and the global
//! schedule, and turns their errors into [`AppError`], whose variants say what the caller
//! should answer (400, 404, 409, 503, 500). One file per use case: scheduling passes
//! ([`cron`], [`scheduler`]), running and acting on jobs ([`jobs`]), models and prompts
//! ([`library`], [`catalog`] for whole-file imports), reports ([`reports`], [`overview`],
//! [`export`]), trackers and their reports ([`insights`]) and retention ([`prune`]). Faces call these and never the engine or the store. Input is parsed into domain values at the edge before it gets here; the checks
//! that need the database (an unknown id, a job that is not queued) are made here.

mod alert_checks;
mod alerts;
mod catalog;
mod cron;
mod drift;
mod estimate;
mod export;
mod insights;
mod jobs;
mod library;
mod overview;
mod prune;
mod reports;
mod scheduler;
mod scratch;
mod tracker_page;

use std::sync::Arc;

use crate::config::Config;
use crate::engine::runtime::Runtime;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::schedule::Schedule;
pub use crate::store::Backend;

/// The values the faces pass to the use cases and get back.
pub use crate::domain::queries::{
    JobFilter, JobSelector, ModelPatch, NewModel, NewPrompt, Page, PromptPatch, ResponseFilter,
};
pub use crate::domain::records::{AttemptRecord, Pause, StoredResponse};
pub use crate::domain::stats::{JobStats, LatencyStats, ModelWindow};
use crate::store::{Readers, Store, StoreError};

/// What went wrong in a use case, by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: 400 with this message.
    #[error("{0}")]
    BadInput(String),
    /// An id names nothing: 404.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a job that is not queued): 409.
    #[error("{0}")]
    Conflict(String),
    /// The database does not answer: 503. The message carries the cause, for the CLI and the
    /// logs; the HTTP API answers without it.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken database: 500 without details over HTTP, where the details are
    /// logged; the CLI shows them.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => AppError::Unavailable(detail),
            StoreError::Conflict(detail) => AppError::Conflict(detail),
            StoreError::NotFound(detail) => AppError::NotFound(detail),
            StoreError::InvalidUrl(detail) => AppError::BadInput(detail),
            other => AppError::Internal(other.to_string()),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

pub use alerts::{DeliveryReport, spawn_alerts};
pub use catalog::{Catalog, CatalogModel, CatalogPrompt, ImportCounts, ImportReport, ImportScope};
pub use cron::{CronReport, FanOutReport, counted};
pub use estimate::{DryRun, ModelEstimate};
pub use export::{ExportInsights, ExportMention, ResponseExport};
pub use insights::{
    ANALYSIS_BATCH, NamedCell, NamedDrift, TrackerItem, TrackerPatch, TrackerReport, TrackerView,
    TrackersFile, spawn_analysis,
};
pub use jobs::{JobDetail, ProcessReport, StatusQuery, StatusReport};
pub use overview::Overview;
pub use prune::{PRUNE_BATCH, PruneReport, PruneRequest, spawn_retention};
pub use reports::{BatchFigures, ModelReport, StatusAnswer};
pub use scheduler::run_scheduler;
pub use scratch::ScratchDatabase;
pub use tracker_page::{AnswerExcerpt, TREND_BATCHES, TrackerPage, TrendBatch};

/// The largest page any listing returns.
pub const MAX_PAGE: i64 = 1000;

/// The service: cheap to clone, shared by every face.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    /// What the engine runs with; the use cases hand it down.
    runtime: Runtime,
    default_schedule: Schedule,
}

impl App {
    /// Opens (and migrates) the database and builds the providers from `config`, for a
    /// process whose reads come one after another.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        App::start_for(config, Readers::One).await
    }

    /// [`App::start`] for a process that runs `readers` reads side by side (`serve`).
    pub async fn start_for(config: Config, readers: Readers) -> anyhow::Result<App> {
        let store = Store::open_for(
            &config.database_url,
            config.database_direct_url.as_deref(),
            readers,
        )
        .await?;
        let app = App::with_store(config, store)?;
        app.warn_about_endpoints().await;
        Ok(app)
    }

    /// Says at start which declared endpoints were ignored and which stored models will be
    /// refused at their next call (a key paired with a URL that is not its own), so that an
    /// operator hears of it before their jobs fail.
    async fn warn_about_endpoints(&self) {
        for problem in &self.config().ignored_endpoints {
            tracing::warn!("{problem}");
        }
        match self.store().model_list().await {
            Ok(models) => {
                for problem in self.providers().audit(&models) {
                    tracing::warn!("{problem}");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot check the models' endpoints"),
        }
    }

    /// Builds the service on an open store.
    pub fn with_store(config: Config, store: Store) -> anyhow::Result<App> {
        let default_schedule = config.cron_schedule.clone();
        Ok(App {
            inner: Arc::new(Inner {
                runtime: Runtime::new(config, store)?,
                default_schedule,
            }),
        })
    }

    /// What the engine runs with.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn store(&self) -> &Store {
        self.inner.runtime.store()
    }

    pub fn providers(&self) -> &Providers {
        self.inner.runtime.providers()
    }

    pub fn config(&self) -> &Config {
        self.inner.runtime.config()
    }

    /// The global schedule (`CRON_SCHEDULE`; `off` reads as daily and never ticks).
    pub fn default_schedule(&self) -> &Schedule {
        &self.inner.default_schedule
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.runtime.metrics()
    }
}

/// The database's housekeeping, as the faces see it.
impl App {
    /// Creates or upgrades the schema of `database_url`; the name of the database it is.
    /// `direct` is `DATABASE_DIRECT_URL` (see [`Store::connect_for`]).
    pub async fn migrate(database_url: &str, direct: Option<&str>) -> AppResult<Backend> {
        let store = Store::open_for(database_url, direct, Readers::One).await?;
        let backend = store.backend();
        store.close().await;
        Ok(backend)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.store().backend()
    }

    /// Closes the database's connections (after the pool and the server have stopped).
    pub async fn close(&self) {
        self.store().close().await;
    }

    /// The process id of a database backend serving this app, where there is one (PostgreSQL).
    pub async fn database_backend_pid(&self) -> AppResult<Option<u32>> {
        Ok(self.store().backend_pid().await?)
    }

    /// The database's write-ahead log position in bytes, where it tells one (PostgreSQL).
    pub async fn wal_position(&self) -> AppResult<Option<i64>> {
        Ok(self.store().wal_position().await?)
    }
}

impl AsRef<Runtime> for App {
    fn as_ref(&self) -> &Runtime {
        self.runtime()
    }
}

impl From<App> for Runtime {
    fn from(app: App) -> Runtime {
        app.inner.runtime.clone()
    }
}

fn check_page(page: Page) -> AppResult<()> {
    if !(1..=MAX_PAGE).contains(&page.limit) {
        return Err(AppError::BadInput(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if page.offset < 0 {
        return Err(AppError::BadInput("offset must not be negative".into()));
    }
    Ok(())
}
