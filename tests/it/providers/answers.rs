//! Calls that succeed: what each provider sends, and what the answer becomes.

use std::time::Duration;

use super::fake::completion_body;
use super::*;

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

    // The way a model names an endpoint now: LOCAL_BASE_URL with LOCAL_API_KEY beside it.
    let named = model(
        ProviderKind::OpenAiCompatible,
        "llama3.2",
        json!({"endpoint": "local"}),
    );
    call(&providers, &named).await.expect("a completion");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {LOCAL_KEY}").as_str())
    );
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
