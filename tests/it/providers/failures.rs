//! Everything else that can go wrong, by class: permanent (and account-level), transient,
//! 200s that are not completions, and keys that must never show.

use std::time::{Duration, Instant};

use super::fake::completion_body;
use super::*;

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
    assert_contains(
        &err.message,
        "MISSING_API_KEY is sent only to MISSING_BASE_URL",
    );
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
