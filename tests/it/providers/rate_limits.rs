//! 429s and the waits they ask for: `retry-after-ms`, `Retry-After` in seconds or as a date,
//! and the `x-ratelimit-*` hints.

use std::time::{Duration, SystemTime};

use super::*;

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
