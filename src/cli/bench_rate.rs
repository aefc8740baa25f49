//! The rate-bound workload of `promptq bench`: a model with `rpm` set to its provider's limit.
//!
//! The provider is a local OpenAI-compatible server, reached over real HTTP, that accepts at
//! most [`PER_WINDOW`] calls in any sliding [`WINDOW`] (a sixth of [`RPM`] in 10 s: stricter
//! than `RPM` a minute, and three windows pass in 30 s) and answers 429 beyond. [`JOBS`] is three
//! windows' worth; the jobs run in one pool or in several, each on its own store connection,
//! sharing the limit through the database. Reported: the rate the provider accepted (from its
//! first accepted call to its last) against the limit, and the calls it refused.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::app::{JobFilter, NewModel, NewPrompt};
use crate::config::Config;
use crate::domain::ProviderKind;

pub const RPM: u64 = 300;
const WINDOW: Duration = Duration::from_secs(10);
const PER_WINDOW: usize = 50;
pub const JOBS: u64 = 150;

/// What the provider counted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateFigures {
    pub limit_per_min: f64,
    pub achieved_per_min: f64,
    pub accepted: u64,
    pub refused: u64,
}

#[derive(Default)]
struct Provider {
    window: VecDeque<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    accepted: u64,
    refused: u64,
}

/// Runs the workload with `pools` pools of `config.worker_concurrency` slots: the seconds
/// from the first claim to the last job done, and the provider's figures.
pub async fn run(config: Config, pools: usize) -> anyhow::Result<(f64, RateFigures)> {
    let provider = Arc::new(Mutex::new(Provider::default()));
    let base_url = serve(provider.clone()).await?;
    let first = App::start(config.clone()).await?;
    first
        .create_model(NewModel {
            name: "rate-bound".into(),
            provider: ProviderKind::OpenAiCompatible,
            model: "fake-1".into(),
            params: serde_json::json!({"baseUrl": base_url, "rpm": RPM}),
            active: true,
        })
        .await?;
    for p in 0..JOBS {
        first
            .create_prompt(NewPrompt {
                text: format!("Which brands lead category {p}?"),
                model_ids: None,
                runs: 1,
                active: true,
                schedule: None,
            })
            .await?;
    }
    let mut apps = vec![first];
    for _ in 1..pools {
        apps.push(App::start(config.clone()).await?);
    }
    let created = apps[0].trigger_cron(None).await?.jobs_created;
    anyhow::ensure!(created == JOBS, "created {created} jobs");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let handles: Vec<_> = apps
        .iter()
        .map(|app| app.spawn_pool(shutdown.clone()))
        .collect();
    let deadline = started + Duration::from_secs(600);
    loop {
        let s = apps[0].summary(&JobFilter::default()).await?;
        if s.queued + s.processing == 0 {
            anyhow::ensure!(s.succeeded as u64 == JOBS, "{s:?}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "not done in 10 minutes: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    for handle in handles {
        handle.await??;
    }
    for app in &apps {
        app.close().await;
    }
    let p = provider
        .lock()
        .map_err(|_| anyhow::anyhow!("the provider's counts were poisoned"))?;
    let span = p
        .first
        .zip(p.last)
        .map_or(0.0, |(first, last)| (last - first).as_secs_f64());
    let achieved_per_min = if span > 0.0 {
        p.accepted.saturating_sub(1) as f64 / span * 60.0
    } else {
        0.0
    };
    Ok((
        seconds,
        RateFigures {
            limit_per_min: RPM as f64,
            achieved_per_min,
            accepted: p.accepted,
            refused: p.refused,
        },
    ))
}

async fn serve(provider: Arc<Mutex<Provider>>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(answer))
        .with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/v1"))
}

async fn answer(State(provider): State<Arc<Mutex<Provider>>>) -> Response {
    let accepted = {
        let mut p = provider
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        while p.window.front().is_some_and(|t| now - *t >= WINDOW) {
            p.window.pop_front();
        }
        if p.window.len() >= PER_WINDOW {
            p.refused += 1;
            false
        } else {
            p.window.push_back(now);
            p.first.get_or_insert(now);
            p.last = Some(now);
            p.accepted += 1;
            true
        }
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    if !accepted {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({"error": {"message": "rate limit", "code": null}})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({
        "id": "chatcmpl-1",
        "model": "fake-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
    .into_response()
}
