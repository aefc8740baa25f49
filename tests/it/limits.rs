//! Limits seen from the provider's side: a local OpenAI-compatible server counts what reaches
//! it (calls in flight, request times, 429s answered) while the real worker pool runs a batch,
//! on SQLite and on PostgreSQL.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use promptq::app::App;
use promptq::store::Store;
use serde_json::json;

use crate::support::{self, RunningPool, on_both, summary};

on_both!(
    max_concurrency_caps_calls_in_flight,
    rpm_spaces_requests_at_the_configured_rate,
    a_burst_of_429s_delays_jobs_without_failing_them,
    an_account_error_pauses_the_provider_instead_of_burning_the_batch,
    rpm_at_the_providers_limit_sees_almost_no_429s,
);

/// What the fake provider saw.
#[derive(Default)]
struct Seen {
    in_flight: usize,
    peak_in_flight: usize,
    started: Vec<Instant>,
    /// Scripted answers, used first; then 200s.
    script: VecDeque<(u16, Vec<(&'static str, &'static str)>)>,
    /// A limit the fake enforces like a provider: at most `n` accepted requests per `window`.
    window_limit: Option<(usize, Duration)>,
    accepted: VecDeque<Instant>,
    answered_429: usize,
}

struct Fake {
    seen: Arc<Mutex<Seen>>,
    base_url: String,
}

async fn fake_provider(latency: Duration) -> Fake {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(
                async move |State(seen): State<Arc<Mutex<Seen>>>| -> Response {
                    let scripted = {
                        let mut s = seen.lock().unwrap();
                        s.in_flight += 1;
                        s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
                        let now = Instant::now();
                        s.started.push(now);
                        match s.window_limit {
                            Some((n, window)) => {
                                while s.accepted.front().is_some_and(|t| now - *t >= window) {
                                    s.accepted.pop_front();
                                }
                                if s.accepted.len() >= n {
                                    s.answered_429 += 1;
                                    Some((429, vec![]))
                                } else {
                                    s.accepted.push_back(now);
                                    None
                                }
                            }
                            None => s.script.pop_front(),
                        }
                    };
                    tokio::time::sleep(latency).await;
                    seen.lock().unwrap().in_flight -= 1;
                    match scripted {
                        Some((status, headers)) => {
                            let mut response = (
                                StatusCode::from_u16(status).unwrap(),
                                axum::Json(json!({"error": {"message": "scripted", "code": null}})),
                            )
                                .into_response();
                            for (name, value) in headers {
                                response.headers_mut().insert(name, value.parse().unwrap());
                            }
                            response
                        }
                        None => axum::Json(json!({
                            "id": "chatcmpl-1",
                            "model": "fake-1",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                        }))
                        .into_response(),
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fake {
        seen,
        base_url: format!("http://{address}/v1"),
    }
}

/// One openai-compatible model at the fake with these limits, `jobs` prompts of one run.
async fn seed(store: &Store, fake: &Fake, limits: serde_json::Value, jobs: usize) {
    let model = support::openai_model("local", "fake-1", &fake.base_url, limits);
    support::seed(store, &[model], jobs, 1).await;
}

/// Runs the pool until nothing is queued or processing, or `limit` passes.
async fn run_batch(db: &support::TestDb, extra: &[&str], limit: Duration) -> App {
    let pool = RunningPool::start(&db.store, &db.url, extra).await;
    let deadline = Instant::now() + limit;
    loop {
        let s = summary(&db.store).await;
        if s.queued + s.processing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app = pool.app.clone();
    pool.stop().await;
    app
}

async fn max_concurrency_caps_calls_in_flight(db: &support::TestDb) {
    let fake = fake_provider(Duration::from_millis(100)).await;
    seed(&db.store, &fake, json!({"maxConcurrency": 2}), 12).await;
    run_batch(db, &["--worker-concurrency", "8"], Duration::from_secs(30)).await;
    let summary = summary(&db.store).await;
    assert_eq!(summary.succeeded, 12);
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.started.len(), 12);
    assert!(
        seen.peak_in_flight <= 2,
        "peak {} calls in flight",
        seen.peak_in_flight
    );
    assert_eq!(seen.peak_in_flight, 2, "the limit is not a crawl either");
}

async fn rpm_spaces_requests_at_the_configured_rate(db: &support::TestDb) {
    let fake = fake_provider(Duration::from_millis(5)).await;
    // 240 a minute: one request every 250 ms.
    seed(&db.store, &fake, json!({"rpm": 240}), 8).await;
    run_batch(db, &["--worker-concurrency", "8"], Duration::from_secs(30)).await;
    let summary = summary(&db.store).await;
    assert_eq!(summary.succeeded, 8);
    let seen = fake.seen.lock().unwrap();
    let mut started = seen.started.clone();
    started.sort();
    // By the median gap, not gap by gap: one request delivered late (a loaded machine) makes
    // the next gap look short although every reservation was 257 ms after the one before.
    // Without the limit, 8 slots would send all 8 at once (a median gap near zero).
    let mut gaps: Vec<Duration> = started.windows(2).map(|pair| pair[1] - pair[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(230),
        "requests {median:?} apart (median) at 240 rpm: {gaps:?}"
    );
    let span = started[started.len() - 1] - started[0];
    // Spacing, not a crawl: 8 requests take about 7 intervals (1.8 s), far from a hand-back.
    assert!(span < Duration::from_secs(10), "8 requests took {span:?}");
}

async fn a_burst_of_429s_delays_jobs_without_failing_them(db: &support::TestDb) {
    let fake = fake_provider(Duration::from_millis(5)).await;
    {
        let mut seen = fake.seen.lock().unwrap();
        for _ in 0..6 {
            seen.script
                .push_back((429, vec![("retry-after-ms", "300")]));
        }
    }
    seed(&db.store, &fake, json!({}), 6).await;
    // Two attempts only: if 429s counted, jobs would fail.
    let app = run_batch(
        db,
        &["--worker-concurrency", "6", "--max-attempts", "2"],
        Duration::from_secs(30),
    )
    .await;
    let summary = summary(&db.store).await;
    assert_eq!((summary.succeeded, summary.failed), (6, 0), "{summary:?}");
    let rate_limited = app
        .metrics()
        .rate_limited
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rate_limited, 6, "every scripted 429 was seen");
}

async fn an_account_error_pauses_the_provider_instead_of_burning_the_batch(db: &support::TestDb) {
    let fake = fake_provider(Duration::from_millis(20)).await;
    {
        let mut seen = fake.seen.lock().unwrap();
        for _ in 0..100 {
            seen.script.push_back((401, vec![]));
        }
    }
    seed(&db.store, &fake, json!({}), 30).await;
    run_batch(db, &["--worker-concurrency", "4"], Duration::from_secs(3)).await;
    let calls = fake.seen.lock().unwrap().started.len();
    assert!(
        calls <= 8,
        "{calls} calls went to a provider that refused the key"
    );
    let pauses = db.store.pauses_active(chrono::Utc::now()).await.unwrap();
    assert!(
        pauses.iter().any(|p| p.scope.starts_with("endpoint:")),
        "{pauses:?}"
    );
    let summary = summary(&db.store).await;
    assert_eq!(
        summary.failed, 0,
        "a paused provider's jobs wait, they do not fail"
    );
    assert_eq!(summary.queued, 30);
}

/// The provider allows 5 requests a second (300 a minute). Without a configured limit the
/// pool runs into it and slows down by itself; with `rpm` at the provider's limit it does not.
async fn rpm_at_the_providers_limit_sees_almost_no_429s(db: &support::TestDb) {
    let limit = Some((5, Duration::from_secs(1)));
    let unlimited = fake_provider(Duration::from_millis(10)).await;
    unlimited.seen.lock().unwrap().window_limit = limit;
    let limited = fake_provider(Duration::from_millis(10)).await;
    limited.seen.lock().unwrap().window_limit = limit;
    let models = [
        support::openai_model("unlimited", "fake-1", &unlimited.base_url, json!({})),
        support::openai_model("limited", "fake-1", &limited.base_url, json!({"rpm": 300})),
    ];
    support::seed(&db.store, &models, 15, 1).await;
    run_batch(
        db,
        &["--worker-concurrency", "8", "--max-attempts", "2"],
        Duration::from_secs(60),
    )
    .await;
    let summary = summary(&db.store).await;
    assert_eq!((summary.succeeded, summary.failed), (30, 0), "{summary:?}");
    let without = unlimited.seen.lock().unwrap().answered_429;
    let with = limited.seen.lock().unwrap().answered_429;
    eprintln!(
        "429s answered by a 300 rpm provider: {without} without a limit, {with} with rpm = 300"
    );
    assert!(with <= 1, "{with} 429s with rpm at the provider's limit");
    assert!(
        without > with,
        "the unlimited model never hit the provider's limit"
    );
}
