//! A provider that enforces its limits the way real ones do: an OpenAI-compatible server on
//! 127.0.0.1:0 that accepts at most `requests` calls and `tokens` tokens in any sliding window,
//! answers 429 beyond that, and counts what it accepted and refused, with times.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The provider's limits and answers.
#[derive(Clone, Copy)]
pub struct Limits {
    pub window: Duration,
    /// Calls accepted per window.
    pub requests: Option<usize>,
    /// Tokens accepted per window.
    pub tokens: Option<u64>,
    /// Tokens each answer uses.
    pub tokens_per_answer: u64,
    pub latency: Duration,
}

/// What the provider saw.
#[derive(Default)]
pub struct Counts {
    /// Times of accepted calls, with their tokens.
    pub accepted: Vec<(Instant, u64)>,
    pub refused: usize,
    window: VecDeque<(Instant, u64)>,
}

impl Counts {
    /// Calls (or tokens, with `tokens`) accepted per minute from the first accepted call to
    /// the last, counting the last one's share.
    pub fn rate_per_minute(&self, tokens: bool) -> f64 {
        let (Some(first), Some(last)) = (self.accepted.first(), self.accepted.last()) else {
            return 0.0;
        };
        let units: u64 = self
            .accepted
            .iter()
            .take(self.accepted.len() - 1)
            .map(|(_, t)| if tokens { *t } else { 1 })
            .sum();
        let span = (last.0 - first.0).as_secs_f64();
        if span == 0.0 {
            return f64::INFINITY;
        }
        units as f64 / span * 60.0
    }
}

pub struct WindowProvider {
    pub counts: Arc<Mutex<Counts>>,
    pub base_url: String,
}

pub async fn start(limits: Limits) -> WindowProvider {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(async move |State(counts): State<Arc<Mutex<Counts>>>| {
                let accepted = admit(&counts, &limits);
                tokio::time::sleep(limits.latency).await;
                answer(accepted, limits.tokens_per_answer)
            }),
        )
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    WindowProvider {
        counts,
        base_url: format!("http://{address}/v1"),
    }
}

fn admit(counts: &Mutex<Counts>, limits: &Limits) -> bool {
    let mut c = counts.lock().unwrap();
    let now = Instant::now();
    while c
        .window
        .front()
        .is_some_and(|(t, _)| now - *t >= limits.window)
    {
        c.window.pop_front();
    }
    let used: u64 = c.window.iter().map(|(_, t)| t).sum();
    let over_requests = limits.requests.is_some_and(|n| c.window.len() >= n);
    let over_tokens = limits
        .tokens
        .is_some_and(|n| used + limits.tokens_per_answer > n);
    if over_requests || over_tokens {
        c.refused += 1;
        return false;
    }
    c.window.push_back((now, limits.tokens_per_answer));
    c.accepted.push((now, limits.tokens_per_answer));
    true
}

fn answer(accepted: bool, tokens: u64) -> Response {
    if !accepted {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"message": "rate limit", "code": null}})),
        )
            .into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-1",
        "model": "fake-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens - 10, "total_tokens": tokens}
    }))
    .into_response()
}
