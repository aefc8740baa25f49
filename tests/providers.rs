//! The providers against a real HTTP server: a small axum app on 127.0.0.1:0 that speaks
//! the OpenAI chat completions API and answers whatever each test scripts (status, headers,
//! body, delay), recording every request it receives. Nothing of promptq is mocked: the
//! requests go through the real client, over real sockets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use promptq::domain::{ErrorClass, Model, ProviderKind};
use promptq::providers::{
    Completion, ErrorKind, ProviderError, ProviderSettings, Providers, Secret,
};

const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
const OPENROUTER_KEY: &str = "sk-or-v1-test-fedcba9876543210";
const LOCAL_KEY: &str = "local-secret-key-42";
const APP_URL: &str = "https://promptq.example";

/// What the fake answers next.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "text/html".to_owned())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
    peer: SocketAddr,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct FakeState {
    reply: Option<Reply>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Fake {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Fake { addr, state }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn reply(&self, reply: Reply) {
        self.state.lock().unwrap().reply = Some(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("the fake received a request")
    }
}

async fn answer(
    State(state): State<Arc<Mutex<FakeState>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let reply = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            path: uri.path().to_owned(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            peer,
        });
        state
            .reply
            .clone()
            .unwrap_or_else(|| Reply::json(200, completion_body("ok", "stop")))
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        headers,
        reply.body,
    )
}

fn completion_body(text: &str, finish_reason: &str) -> Value {
    json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    })
}

fn settings(fake: &Fake, timeout: Duration) -> ProviderSettings {
    ProviderSettings {
        openai_api_key: Some(Secret::new(OPENAI_KEY)),
        openai_base_url: fake.base_url(),
        openrouter_api_key: Some(Secret::new(OPENROUTER_KEY)),
        openrouter_base_url: format!("{}/", fake.base_url()),
        app_url: Some(APP_URL.to_owned()),
        compatible_keys: [("LOCAL_API_KEY".to_owned(), Secret::new(LOCAL_KEY))]
            .into_iter()
            .collect(),
        timeout,
    }
}

fn providers(fake: &Fake) -> Providers {
    Providers::new(settings(fake, Duration::from_secs(5))).expect("valid settings")
}

fn model(provider: ProviderKind, name: &str, params: Value) -> Model {
    Model {
        id: 1,
        name: format!("test-{name}"),
        provider,
        model: name.to_owned(),
        params,
        active: true,
        created_at: chrono::Utc::now(),
    }
}

fn openai_model() -> Model {
    model(ProviderKind::OpenAi, "gpt-4o-mini", json!({}))
}

fn openrouter_model() -> Model {
    model(ProviderKind::OpenRouter, "openai/gpt-4o-mini", json!({}))
}

async fn call(providers: &Providers, model: &Model) -> Result<Completion, ProviderError> {
    providers.complete(model, "Say hello", 0, 1).await
}

/// Scripts one reply, makes one call, and expects it to fail.
async fn fails_with(fake: &Fake, model: &Model, reply: Reply) -> ProviderError {
    fake.reply(reply);
    call(&providers(fake), model)
        .await
        .expect_err("the call should fail")
}

fn assert_retryable(err: &ProviderError) {
    assert_eq!(err.kind, ErrorKind::Retryable, "{err:?}");
    assert!(err.is_retryable());
}

fn assert_permanent(err: &ProviderError) {
    assert_eq!(err.kind, ErrorKind::Permanent, "{err:?}");
    assert_eq!(err.to_attempt_error().class, ErrorClass::Permanent);
}

fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "'{text}' should contain '{part}'");
}

fn error_body(message: &str, kind: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

// --- normal answers -------------------------------------------------------------------

#[tokio::test]
async fn openai_sends_a_chat_completion_and_reads_the_whole_answer() {
    let fake = Fake::start().await;
    let body = json!({
        "id": "chatcmpl-abc",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello there!",
                "annotations": [{"type": "url_citation",
                    "url_citation": {"url": "https://example.com", "title": "Example"}}]}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 64}}
    });
    fake.reply(
        Reply::json(200, body)
            .header("x-request-id", "req_42")
            .header("x-ratelimit-remaining-requests", "499")
            .header("x-ratelimit-reset-tokens", "20ms"),
    );
    let m = model(
        ProviderKind::OpenAi,
        "gpt-4o-mini",
        json!({"temperature": 0.3, "maxTokens": 200, "seed": 42,
               "extra": {"top_p": 0.9, "response_format": {"type": "text"}, "stream": true}}),
    );
    let completion = providers(&fake)
        .complete(&m, "Say hello", 0, 1)
        .await
        .expect("a completion");

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-title"), None);
    assert_eq!(seen.header("http-referer"), None);
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(
        seen.body["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(seen.body["temperature"], 0.3);
    assert_eq!(seen.body["max_completion_tokens"], 200);
    assert_eq!(seen.body["seed"], 42);
    assert_eq!(seen.body["top_p"], 0.9);
    assert_eq!(seen.body["response_format"], json!({"type": "text"}));
    assert!(seen.body.get("stream").is_none(), "stream is never sent");

    assert_eq!(completion.text, "Hello there!");
    assert_eq!(
        completion.served_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.usage.prompt_tokens, Some(1200));
    assert_eq!(completion.usage.completion_tokens, Some(80));
    assert_eq!(completion.usage.total_tokens, Some(1280));
    assert_eq!(completion.usage.cached_tokens, Some(1024));
    assert_eq!(completion.usage.reasoning_tokens, Some(64));
    assert_eq!(completion.cost_usd, None);
    assert_eq!(completion.request_id.as_deref(), Some("req_42"));
    assert_eq!(completion.http_status, Some(200));
    assert_eq!(
        completion
            .citations
            .as_ref()
            .and_then(|c| c[0]["url_citation"]["url"].as_str()),
        Some("https://example.com")
    );
    assert!(
        completion
            .raw
            .as_deref()
            .is_some_and(|r| r.contains("Hello there!"))
    );
    let hint = completion.rate_limit.expect("rate-limit hint");
    assert_eq!(hint.remaining_requests, Some(499));
    assert_eq!(hint.reset_tokens, Some(Duration::from_millis(20)));

    let row = completion.into_response();
    assert_eq!(row.cached_tokens, Some(1024));
    assert_eq!(row.provider_request_id.as_deref(), Some("req_42"));
}

#[tokio::test]
async fn openrouter_sends_attribution_headers_and_reports_its_cost() {
    let fake = Fake::start().await;
    fake.reply(Reply::json(
        200,
        json!({
            "id": "gen-123",
            "model": "openai/gpt-4o-mini",
            "provider": "OpenAI",
            "choices": [{"finish_reason": "stop", "native_finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hi!"}}],
            "citations": ["https://a.example", "https://b.example"],
            "usage": {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
                "cost": 0.00095, "prompt_tokens_details": {"cached_tokens": 100},
                "completion_tokens_details": {"reasoning_tokens": 0}}
        }),
    ));
    let m = model(
        ProviderKind::OpenRouter,
        "openai/gpt-4o-mini",
        json!({"maxTokens": 50, "extra": {"provider": {"order": ["OpenAI"]}}}),
    );
    let completion = providers(&fake)
        .complete(&m, "Hi", 3, 1)
        .await
        .expect("a completion");

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENROUTER_KEY}").as_str())
    );
    assert_eq!(seen.header("http-referer"), Some(APP_URL));
    assert_eq!(seen.header("x-title"), Some("promptq"));
    assert_eq!(seen.body["max_tokens"], 50);
    assert_eq!(seen.body["provider"], json!({"order": ["OpenAI"]}));

    assert_eq!(completion.text, "Hi!");
    assert_eq!(completion.cost_usd, Some(0.00095));
    assert_eq!(completion.usage.cached_tokens, Some(100));
    assert_eq!(completion.usage.reasoning_tokens, Some(0));
    assert_eq!(completion.request_id.as_deref(), Some("gen-123"));
    assert_eq!(
        completion.citations,
        Some(json!(["https://a.example", "https://b.example"]))
    );
}

#[tokio::test]
async fn openai_compatible_uses_the_models_base_url_and_named_key() {
    let fake = Fake::start().await;
    let providers = providers(&fake);
    let with_key = model(
        ProviderKind::OpenAiCompatible,
        "llama3.2",
        json!({"baseUrl": format!("{}/", fake.base_url()), "apiKeyEnv": "LOCAL_API_KEY",
               "maxTokens": 10}),
    );
    let completion = call(&providers, &with_key).await.expect("a completion");
    assert_eq!(completion.text, "ok");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {LOCAL_KEY}").as_str())
    );
    assert_eq!(seen.body["model"], "llama3.2");
    assert_eq!(seen.body["max_tokens"], 10);
    assert_eq!(seen.header("x-title"), None);

    let keyless = model(
        ProviderKind::OpenAiCompatible,
        "llama3.2",
        json!({"baseUrl": fake.base_url()}),
    );
    call(&providers, &keyless).await.expect("a completion");
    assert_eq!(fake.last().header("authorization"), None);
}

#[tokio::test]
async fn the_client_is_built_once_and_reuses_its_connections() {
    let fake = Fake::start().await;
    let providers = providers(&fake);
    let clone = providers.clone();
    call(&providers, &openai_model()).await.expect("first call");
    call(&clone, &openai_model()).await.expect("second call");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].peer, seen[1].peer,
        "the second call reused the pooled connection"
    );
}

#[tokio::test]
async fn finish_reason_length_and_content_filter_are_successes() {
    let fake = Fake::start().await;
    let providers = providers(&fake);
    fake.reply(Reply::json(200, completion_body("Once upon a", "length")));
    let cut = call(&providers, &openai_model())
        .await
        .expect("length is an answer");
    assert_eq!(cut.text, "Once upon a");
    assert_eq!(cut.finish_reason.as_deref(), Some("length"));

    let mut filtered = completion_body("", "content_filter");
    filtered["choices"][0]["message"]["content"] = Value::Null;
    fake.reply(Reply::json(200, filtered));
    let filtered = call(&providers, &openai_model())
        .await
        .expect("content_filter is an answer");
    assert_eq!(filtered.text, "");
    assert_eq!(filtered.finish_reason.as_deref(), Some("content_filter"));
    assert_eq!(
        filtered.into_response().finish_reason.as_deref(),
        Some("content_filter")
    );
}

// --- rate limits and retry-after -------------------------------------------------------

#[tokio::test]
async fn a_429_is_rate_limited_and_honours_retry_after_ms_first() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(
            429,
            error_body(
                "Rate limit reached for requests",
                "requests",
                json!("rate_limit_exceeded"),
            ),
        )
        .header("retry-after-ms", "1500")
        .header("retry-after", "9"),
    )
    .await;
    assert_retryable(&err);
    assert!(err.rate_limited && !err.account_level);
    assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(err.http_status, Some(429));
    assert_eq!(err.to_attempt_error().class, ErrorClass::RateLimited);
    assert_eq!(err.to_attempt_error().http_status, Some(429));
    assert_contains(&err.message, "(retry after 1.5s)");
}

#[tokio::test]
async fn a_429_with_retry_after_seconds() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(429, json!({"error": {"message": "Slow down"}})).header("retry-after", "2"),
    )
    .await;
    assert_retryable(&err);
    assert!(err.rate_limited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(
        err.message,
        "openai 429 rate limited: Slow down (retry after 2s)"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_as_an_http_date() {
    let fake = Fake::start().await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(429, json!({"error": {"message": "Slow down"}})).header("retry-after", date),
    )
    .await;
    assert_retryable(&err);
    let wait = err.retry_after.expect("a wait from the date");
    assert!(
        (Duration::from_secs(27)..=Duration::from_secs(31)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_the_exhausted_budget() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached for tokens"}}),
        )
        .header("x-ratelimit-limit-requests", "500")
        .header("x-ratelimit-remaining-requests", "12")
        .header("x-ratelimit-reset-requests", "1s")
        .header("x-ratelimit-limit-tokens", "30000")
        .header("x-ratelimit-remaining-tokens", "0")
        .header("x-ratelimit-reset-tokens", "6m0s"),
    )
    .await;
    assert_retryable(&err);
    assert!(err.rate_limited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(360)));
    let hint = err.rate_limit.expect("rate-limit hint");
    assert_eq!(hint.remaining_tokens, Some(0));
    assert_eq!(hint.reset_requests, Some(Duration::from_secs(1)));
    assert_contains(&err.message, "(retry after 6m0s)");
}

#[tokio::test]
async fn openrouter_rate_limit_headers_inside_the_error_body_are_read() {
    let fake = Fake::start().await;
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 20_000;
    let err = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            429,
            json!({"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-min",
                "metadata": {"headers": {"X-RateLimit-Limit": "20",
                    "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.to_string()}}}}),
        ),
    )
    .await;
    assert_retryable(&err);
    assert!(err.rate_limited);
    let wait = err.retry_after.expect("a wait from the reset time");
    assert!(
        (Duration::from_secs(17)..=Duration::from_secs(21)).contains(&wait),
        "{wait:?}"
    );
}

// --- permanent and account-level errors ------------------------------------------------

#[tokio::test]
async fn insufficient_quota_is_permanent_and_account_level_not_a_rate_limit() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(
            429,
            error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                json!("insufficient_quota"),
            ),
        ),
    )
    .await;
    assert_permanent(&err);
    assert!(err.account_level);
    assert!(!err.rate_limited);
    assert_contains(
        &err.message,
        "openai 429 out of quota: You exceeded your current quota",
    );
}

#[tokio::test]
async fn a_401_is_permanent_and_account_level() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(
            401,
            error_body(
                "Invalid authentication",
                "invalid_request_error",
                json!("invalid_api_key"),
            ),
        ),
    )
    .await;
    assert_permanent(&err);
    assert!(err.account_level);
    assert_eq!(err.http_status, Some(401));
    assert_contains(&err.message, "openai 401 unauthorized");
}

#[tokio::test]
async fn request_errors_are_permanent_but_not_account_level() {
    let fake = Fake::start().await;
    for status in [400, 403, 404, 422] {
        let err = fails_with(
            &fake,
            &openai_model(),
            Reply::json(
                status,
                error_body(
                    "The model `gpt-x` does not exist",
                    "invalid_request_error",
                    json!("model_not_found"),
                ),
            ),
        )
        .await;
        assert_permanent(&err);
        assert!(!err.account_level && !err.rate_limited, "{status}: {err:?}");
        assert_eq!(err.http_status, Some(status));
        assert_contains(&err.message, &format!("openai {status} "));
        assert_contains(&err.message, "does not exist [model_not_found]");
    }
}

#[tokio::test]
async fn openrouter_402_without_retry_after_is_out_of_credit() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            402,
            json!({"error": {"code": 402, "message": "Insufficient credits"}}),
        ),
    )
    .await;
    assert_permanent(&err);
    assert!(err.account_level);
    assert_contains(
        &err.message,
        "openrouter 402 out of credit: Insufficient credits",
    );
}

#[tokio::test]
async fn openrouter_402_with_retry_after_is_retried() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            402,
            json!({"error": {"code": 402, "message": "Insufficient credits"}}),
        )
        .header("retry-after", "60"),
    )
    .await;
    assert_retryable(&err);
    assert!(!err.account_level);
    assert_eq!(err.retry_after, Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_missing_key_fails_permanently_without_a_request() {
    let fake = Fake::start().await;
    let providers = Providers::new(ProviderSettings {
        openai_api_key: None,
        ..settings(&fake, Duration::from_secs(5))
    })
    .unwrap();
    assert!(!providers.is_configured(ProviderKind::OpenAi));
    let err = call(&providers, &openai_model()).await.unwrap_err();
    assert_permanent(&err);
    assert!(err.account_level);
    assert_eq!(err.message, "openai: OPENAI_API_KEY is not set");

    let unknown_key = model(
        ProviderKind::OpenAiCompatible,
        "llama3.2",
        json!({"baseUrl": fake.base_url(), "apiKeyEnv": "MISSING_API_KEY"}),
    );
    let err = call(&providers, &unknown_key).await.unwrap_err();
    assert_permanent(&err);
    assert_contains(&err.message, "MISSING_API_KEY is not set");
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn invalid_params_fail_permanently_with_the_field_named() {
    let fake = Fake::start().await;
    let m = model(
        ProviderKind::OpenAi,
        "gpt-4o-mini",
        json!({"maxTokens": "lots"}),
    );
    let err = call(&providers(&fake), &m).await.unwrap_err();
    assert_permanent(&err);
    assert_contains(&err.message, "params.maxTokens");
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::text(301, "").header("location", "https://elsewhere.example/v1/chat/completions"),
    )
    .await;
    assert_permanent(&err);
    assert_contains(&err.message, "redirected to https://elsewhere.example");
    assert_eq!(fake.seen().len(), 1);
}

// --- transient errors ------------------------------------------------------------------

#[tokio::test]
async fn timeouts_conflicts_and_server_errors_are_retryable() {
    let fake = Fake::start().await;
    for status in [408, 409, 500, 502, 503, 504] {
        let err = fails_with(
            &fake,
            &openai_model(),
            Reply::json(
                status,
                json!({"error": {"message": "The server had an error"}}),
            ),
        )
        .await;
        assert_retryable(&err);
        assert!(!err.rate_limited && !err.account_level, "{status}");
        assert_eq!(err.retry_after, None);
        assert_eq!(err.to_attempt_error().class, ErrorClass::Retryable);
        assert_contains(&err.message, &format!("openai {status} "));
    }
}

#[tokio::test]
async fn openrouter_502_and_503_are_retryable_with_their_retry_after() {
    let fake = Fake::start().await;
    let down = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            502,
            json!({"error": {"code": 502, "message": "Model is down",
            "metadata": {"provider_name": "Together", "raw": "upstream overloaded"}}}),
        ),
    )
    .await;
    assert_retryable(&down);
    assert_contains(
        &down.message,
        "Model is down: upstream overloaded (upstream: Together)",
    );

    let none = fails_with(
        &fake,
        &openrouter_model(),
        Reply::text(503, "").header("retry-after", "5"),
    )
    .await;
    assert_retryable(&none);
    assert_eq!(none.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(
        none.message,
        "openrouter 503 unavailable: Service Unavailable (retry after 5s)"
    );
}

#[tokio::test]
async fn x_should_retry_overrides_the_status_rule() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(500, json!({"error": {"message": "bad"}})).header("x-should-retry", "false"),
    )
    .await;
    assert_permanent(&err);
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(400, json!({"error": {"message": "try again"}}))
            .header("x-should-retry", "true"),
    )
    .await;
    assert_retryable(&err);
}

#[tokio::test]
async fn a_slow_answer_is_cut_at_the_timeout() {
    let fake = Fake::start().await;
    fake.reply(Reply::json(200, completion_body("late", "stop")).delay(Duration::from_secs(3)));
    let providers = Providers::new(settings(&fake, Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let err = call(&providers, &openai_model()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_retryable(&err);
    assert_eq!(err.http_status, None);
    assert_eq!(err.message, "openai timed out after 300ms");
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = ProviderSettings {
        openai_api_key: Some(Secret::new(OPENAI_KEY)),
        openai_base_url: format!("http://127.0.0.1:{port}/v1"),
        timeout: Duration::from_secs(5),
        ..ProviderSettings::default()
    };
    let providers = Providers::new(settings).unwrap();
    let err = call(&providers, &openai_model()).await.unwrap_err();
    assert_retryable(&err);
    assert_eq!(err.http_status, None);
    assert_contains(&err.message, "openai connection failed");
    assert!(
        !err.message.contains("http://"),
        "no URL in {}",
        err.message
    );
}

// --- 200 answers that are not completions ----------------------------------------------

#[tokio::test]
async fn a_200_that_is_not_json_is_a_clear_error() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::text(200, "<html><body>Gateway says hi</body></html>"),
    )
    .await;
    assert_retryable(&err);
    assert_eq!(err.http_status, Some(200));
    assert_contains(&err.message, "openai 200 answer is not JSON");
    assert_contains(&err.message, "Gateway says hi");
}

#[tokio::test]
async fn a_200_without_choices_is_a_clear_error() {
    let fake = Fake::start().await;
    for body in [
        json!({"id": "gen-1", "choices": []}),
        json!({"id": "gen-1"}),
    ] {
        let err = fails_with(&fake, &openrouter_model(), Reply::json(200, body)).await;
        assert_retryable(&err);
        assert_contains(&err.message, "openrouter 200 answer has no choices");
    }
}

#[tokio::test]
async fn a_200_carrying_an_error_object_is_an_error() {
    let fake = Fake::start().await;
    let err = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            200,
            json!({"id": "gen-1", "error": {"code": 502, "message": "Provider returned error",
                "metadata": {"provider_name": "Fireworks"}}}),
        ),
    )
    .await;
    assert_retryable(&err);
    assert_eq!(err.http_status, Some(200));
    assert_contains(
        &err.message,
        "openrouter 200 answer carries an error (code 502): Provider returned error",
    );

    let in_choice = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            200,
            json!({"choices": [{"finish_reason": "error", "message": {"content": ""},
                "error": {"message": "stream cut by upstream"}}]}),
        ),
    )
    .await;
    assert_retryable(&in_choice);
    assert_contains(&in_choice.message, "stream cut by upstream");

    let bad_request = fails_with(
        &fake,
        &openrouter_model(),
        Reply::json(
            200,
            json!({"error": {"code": 400, "message": "context too long"}}),
        ),
    )
    .await;
    assert_permanent(&bad_request);
}

// --- secrets ---------------------------------------------------------------------------

#[tokio::test]
async fn an_echoed_key_is_redacted_everywhere() {
    let fake = Fake::start().await;
    let echo = format!(
        "Incorrect API key provided: {OPENAI_KEY}. Also tried {OPENROUTER_KEY} and {LOCAL_KEY}."
    );
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(
            401,
            error_body(&echo, "invalid_request_error", json!("invalid_api_key")),
        ),
    )
    .await;
    let shown = [err.message.clone(), format!("{err:?}"), err.to_string()];
    for text in &shown {
        for key in [OPENAI_KEY, OPENROUTER_KEY, LOCAL_KEY] {
            assert!(!text.contains(key), "a key leaked into: {text}");
        }
        assert_contains(text, "[redacted]");
    }

    // A compatible server echoing its key in a non-JSON error page.
    let m = model(
        ProviderKind::OpenAiCompatible,
        "llama3.2",
        json!({"baseUrl": fake.base_url(), "apiKeyEnv": "LOCAL_API_KEY"}),
    );
    let err = fails_with(
        &fake,
        &m,
        Reply::text(500, &format!("bad token {LOCAL_KEY}")),
    )
    .await;
    assert!(!format!("{err:?}").contains(LOCAL_KEY));

    // A successful body that quotes the key is stored without it.
    fake.reply(Reply::json(
        200,
        completion_body(&format!("your key is {LOCAL_KEY}"), "stop"),
    ));
    let completion = call(&providers(&fake), &m).await.unwrap();
    assert!(!completion.raw.unwrap_or_default().contains(LOCAL_KEY));
}

#[tokio::test]
async fn long_error_bodies_are_truncated() {
    let fake = Fake::start().await;
    let long = "x".repeat(5000);
    let err = fails_with(
        &fake,
        &openai_model(),
        Reply::json(500, json!({"error": {"message": long}})),
    )
    .await;
    assert!(err.message.chars().count() <= promptq::providers::MAX_MESSAGE_CHARS + 1);
}

// --- mock ------------------------------------------------------------------------------

#[tokio::test]
async fn the_mock_answers_without_a_network_and_fails_on_demand() {
    let providers = Providers::new(ProviderSettings::default()).unwrap();
    let steady = model(ProviderKind::Mock, "mock-1", json!({}));
    let first = providers
        .complete(&steady, "What is a queue?", 0, 1)
        .await
        .unwrap();
    let again = providers
        .complete(&steady, "What is a queue?", 0, 2)
        .await
        .unwrap();
    assert_eq!(first.text, again.text);
    assert_eq!(first.http_status, None);
    assert!(first.usage.total_tokens.is_some_and(|t| t > 0));

    let broken = model(ProviderKind::Mock, "mock-1", json!({"failRate": 1}));
    let err = providers
        .complete(&broken, "What is a queue?", 0, 1)
        .await
        .unwrap_err();
    assert_retryable(&err);
    assert_eq!(err.to_attempt_error().class, ErrorClass::Retryable);
}
