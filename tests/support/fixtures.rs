//! Queue fixtures shared by the suites: seeding models and prompts, running a batch (a pool in
//! this process or `promptq worker` processes), waiting for it, and reading its summary.
//!
//! Calls into promptq's API for these chores live here only, so that a renamed function is
//! fixed in one place.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promptq::app::App;
use promptq::domain::{Job, Model, ModelId, ProviderKind, Summary};
use promptq::engine::worker::{PoolOptions, run_pool};
use promptq::store::{JobFilter, NewModel, NewPrompt, Page, ResponseFilter, Store, StoredResponse};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The `promptq` binary under test.
pub const PROMPTQ: &str = env!("CARGO_BIN_EXE_promptq");

/// A mock model (`provider: mock`) named `name`, calling model `model`, with `params`.
pub fn mock_model(name: impl Into<String>, model: &str, params: Value) -> NewModel {
    NewModel {
        name: name.into(),
        provider: ProviderKind::Mock,
        model: model.into(),
        params,
        active: true,
    }
}

/// An `openai-compatible` model named `name` calling `model` at `base_url`, with more
/// `params` (limits and such) beside `baseUrl`.
pub fn openai_model(name: &str, model: &str, base_url: &str, params: Value) -> NewModel {
    let mut full = json!({"baseUrl": base_url});
    for (key, value) in params.as_object().expect("params are an object") {
        full[key] = value.clone();
    }
    NewModel {
        name: name.into(),
        provider: ProviderKind::OpenAiCompatible,
        model: model.into(),
        params: full,
        active: true,
    }
}

/// Inserts `model`.
pub async fn seed_model(store: &Store, model: &NewModel) -> Model {
    store
        .model_insert(model, chrono::Utc::now())
        .await
        .expect("insert a model")
}

/// `count` prompts "question N" of `runs` runs each, on `models` (`None`: every active model).
pub async fn seed_prompts(store: &Store, count: usize, runs: i32, models: Option<&[ModelId]>) {
    for p in 0..count {
        let prompt = NewPrompt {
            text: format!("question {p}"),
            model_ids: models.map(<[ModelId]>::to_vec),
            runs,
            active: true,
            schedule: None,
        };
        store
            .prompt_insert(&prompt, chrono::Utc::now())
            .await
            .expect("insert a prompt");
    }
}

/// `models`, and `prompts` prompts of `runs` runs on all of them.
pub async fn seed(store: &Store, models: &[NewModel], prompts: usize, runs: i32) {
    for model in models {
        seed_model(store, model).await;
    }
    seed_prompts(store, prompts, runs, None).await;
}

/// Counts of every job by status.
pub async fn summary(store: &Store) -> Summary {
    store
        .jobs_summary(&JobFilter::default())
        .await
        .expect("read the jobs summary")
}

/// Every job, oldest first as the store lists them.
pub async fn all_jobs(store: &Store) -> Vec<Job> {
    store
        .jobs_list(&JobFilter::default(), EVERYTHING)
        .await
        .expect("list the jobs")
}

/// Every stored answer.
pub async fn all_responses(store: &Store) -> Vec<StoredResponse> {
    store
        .responses_list(&ResponseFilter::default(), EVERYTHING)
        .await
        .expect("list the responses")
}

/// A page larger than any test's batch.
const EVERYTHING: Page = Page {
    limit: 100_000,
    offset: 0,
};

/// Waits until nothing is queued, processing or submitted, or `limit` passes (the caller's
/// assertions on the summary then say what was left).
pub async fn wait_until_done(store: &Store, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let s = summary(store).await;
        if s.queued + s.in_flight() == 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `done` every 50 ms; fails the test naming `what` if `limit` passes first.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promptq worker` on `url` with a cleared environment, no cron of its own, errors-only
/// logging and no output, plus `env`; not yet started.
pub fn worker_command(url: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(PROMPTQ);
    command
        .arg("worker")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("CRON_SCHEDULE", "off")
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts [`worker_command`].
pub fn spawn_worker(url: &str, env: &[(&str, &str)]) -> Child {
    worker_command(url, env).spawn().expect("start a worker")
}

/// A pool running in this process on a store, with the batch enqueued by a cron pass.
pub struct RunningPool {
    pub app: App,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningPool {
    /// Polls every 50 ms so that tests do not wait on the default interval.
    pub async fn start(store: &Store, url: &str, extra: &[&str]) -> RunningPool {
        Self::start_with(store, url, extra, |options| {
            options.poll_interval = Duration::from_millis(50);
        })
        .await
    }

    /// With the pool's options exactly as the configuration makes them.
    pub async fn start_as_configured(store: &Store, url: &str, extra: &[&str]) -> RunningPool {
        Self::start_with(store, url, extra, |_| {}).await
    }

    async fn start_with(
        store: &Store,
        url: &str,
        extra: &[&str],
        adjust: impl FnOnce(&mut PoolOptions),
    ) -> RunningPool {
        let app = App::with_store(super::config(url, extra), store.clone()).expect("an app");
        app.trigger_cron(None).await.expect("enqueue the batch");
        let shutdown = CancellationToken::new();
        let mut options = PoolOptions::for_app(&app);
        adjust(&mut options);
        let handle = tokio::spawn(run_pool(app.clone(), options, shutdown.clone()));
        RunningPool {
            app,
            shutdown,
            handle,
        }
    }

    /// Cancels the pool and waits for it to hand its jobs back.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("the pool task")
            .expect("the pool stops cleanly");
    }
}
