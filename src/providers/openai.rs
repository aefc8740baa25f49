//! One thin client for every endpoint that speaks OpenAI chat completions: `openai`,
//! `openrouter` (the same API plus attribution headers and `usage.cost`) and
//! `openai-compatible` (an endpoint the operator declared, or a keyless `params.baseUrl`:
//! Ollama, vLLM, LM Studio, …).
//!
//! It sends one non-streaming `POST {base}/chat/completions` and classifies whatever comes
//! back the way the providers document it and the official OpenAI SDK behaves: transport
//! failures, timeouts, 408, 409, 429 and 5xx are retryable; other 4xx are permanent, and a
//! 429 that means "out of quota" is permanent too. Bodies are read leniently
//! (`response`) because compatible servers differ in the details. It never logs or
//! returns a key, and never retries by itself: one call, one answer, the engine decides.

mod response;

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use crate::domain::spec::{CallSpec, Generation};
use crate::domain::{Model, ProviderKind};

use super::error::{ErrorKind, ProviderError, Redactor, human_duration};
use super::ratelimit::{self, RateLimitHint};
use super::{Completion, ProviderSettings, RouteError, Secret};

use response::ErrorDetail;

/// A bigger answer is not a chat completion; refuse it instead of filling memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Where one call goes and with which key.
#[derive(Debug)]
pub(super) struct Endpoint<'s> {
    kind: ProviderKind,
    url: String,
    key: Option<&'s Secret>,
}

impl<'s> Endpoint<'s> {
    /// Picks the base URL and key for a model, by the one rule of [`super::endpoints`]. A
    /// missing key for `openai` or `openrouter` is an account-level problem: every call would
    /// fail the same way. A refused pairing fails the job before any request is sent.
    pub(super) fn resolve(
        kind: ProviderKind,
        params: &'s CallSpec,
        settings: &'s ProviderSettings,
    ) -> Result<Self, ProviderError> {
        let route = super::endpoints::route(kind, params, settings).map_err(|err| {
            let mut error = ProviderError::new(ErrorKind::Permanent, err.message().to_owned());
            error.account_level = matches!(
                err,
                RouteError::Unavailable {
                    missing_key: true,
                    ..
                }
            );
            error
        })?;
        Ok(Endpoint {
            kind,
            url: format!("{}/chat/completions", route.base_url.trim_end_matches('/')),
            key: route.key,
        })
    }

    fn name(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// The request body: `params.extra` first, then the fields promptq sets itself, which
/// `extra` cannot override. `stream` is dropped because one JSON answer is read, not SSE.
/// OpenAI takes `max_completion_tokens` (its reasoning models refuse `max_tokens`); OpenRouter
/// and the compatible servers document `max_tokens`.
pub(super) fn request_body(
    kind: ProviderKind,
    model: &Model,
    params: &Generation,
    prompt: &str,
) -> Value {
    let mut body: Map<String, Value> = params.extra.clone().unwrap_or_default();
    body.remove("stream");
    body.insert("model".into(), Value::String(model.model.clone()));
    body.insert(
        "messages".into(),
        json!([{ "role": "user", "content": prompt }]),
    );
    if let Some(temperature) = params.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = params.max_tokens {
        let field = if kind == ProviderKind::OpenAi {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), json!(max_tokens));
    }
    if let Some(seed) = params.seed {
        body.insert("seed".into(), json!(seed));
    }
    Value::Object(body)
}

/// One call: send, read the whole body, classify.
pub(super) async fn complete(
    client: &reqwest::Client,
    redactor: &Redactor,
    endpoint: &Endpoint<'_>,
    settings: &ProviderSettings,
    model: &Model,
    params: &Generation,
    prompt: &str,
) -> Result<Completion, ProviderError> {
    let name = endpoint.name();
    let body = request_body(endpoint.kind, model, params, prompt);
    let mut request = client.post(&endpoint.url).json(&body);
    if let Some(key) = endpoint.key {
        // bearer_auth marks the header sensitive, so reqwest and hyper never print it.
        request = request.bearer_auth(key.expose());
    }
    if endpoint.kind == ProviderKind::OpenRouter {
        if let Some(app_url) = &settings.app_url {
            request = request.header("HTTP-Referer", app_url);
        }
        request = request.header("X-Title", "promptq");
    }

    let started = Instant::now();
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(name, e, settings.timeout, redactor))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = read_body(response)
        .await
        .map_err(|e| transport_error(name, e, settings.timeout, redactor))?
        .ok_or_else(|| {
            let mut err = ProviderError::new(
                ErrorKind::Permanent,
                format!("{name} {status} answer is larger than {MAX_BODY_BYTES} bytes"),
            );
            err.http_status = Some(status);
            err
        })?;
    let latency = started.elapsed();

    let now = SystemTime::now();
    let hint = RateLimitHint::from_headers(&headers, now);
    if (200..300).contains(&status) {
        response::parse_success(name, status, &headers, &bytes, now, redactor).map(|mut c| {
            c.latency = latency;
            c.rate_limit = hint;
            c
        })
    } else {
        Err(classify_status(
            name, status, &headers, &bytes, now, redactor,
        ))
    }
}

/// One answer read from elsewhere than a live call (a line of a Batch API result file): a 2xx
/// body is read as a completion, any other status classified as a call's would be.
pub(super) fn read_answer(
    name: &str,
    status: u16,
    body: &[u8],
    redactor: &Redactor,
) -> Result<Completion, ProviderError> {
    let headers = HeaderMap::new();
    let now = SystemTime::now();
    if (200..300).contains(&status) {
        response::parse_success(name, status, &headers, body, now, redactor)
    } else {
        Err(classify_status(name, status, &headers, body, now, redactor))
    }
}

/// Reads the body up to [`MAX_BODY_BYTES`]; `Ok(None)` when it is bigger.
async fn read_body(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let expected = response.content_length().unwrap_or(8 * 1024);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0).min(MAX_BODY_BYTES));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// No answer came: a timeout, a refused or reset connection. All transient, except a
/// request that could not even be built (a malformed URL or header), which would fail
/// again.
fn transport_error(
    name: &str,
    err: reqwest::Error,
    timeout: Duration,
    redactor: &Redactor,
) -> ProviderError {
    let (kind, message) = if err.is_timeout() {
        (
            ErrorKind::Retryable,
            format!("{name} timed out after {}", human_duration(timeout)),
        )
    } else if err.is_builder() {
        (
            ErrorKind::Permanent,
            format!("{name} request is invalid: {}", error_chain(err)),
        )
    } else if err.is_connect() {
        (
            ErrorKind::Retryable,
            format!("{name} connection failed: {}", error_chain(err)),
        )
    } else {
        (
            ErrorKind::Retryable,
            format!("{name} request failed: {}", error_chain(err)),
        )
    };
    ProviderError::new(kind, redactor.message(&message))
}

/// The error and its causes in one line ("error sending request: client error (Connect):
/// tcp connect error: Connection refused (os error 111)"), without the URL.
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a status means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    kind: ErrorKind,
    rate_limited: bool,
    account_level: bool,
    label: &'static str,
}

/// The status rules, as the providers document them and the OpenAI SDK retries.
fn rule(status: u16, detail: &ErrorDetail, retry_after: Option<Duration>) -> Rule {
    use ErrorKind::{Permanent, Retryable};
    let rule = |kind, label| Rule {
        kind,
        rate_limited: false,
        account_level: false,
        label,
    };
    match status {
        // Out of credit or quota is not a rate limit: waiting will not bring money back.
        429 if detail.is_quota_exhausted() => Rule {
            account_level: true,
            ..rule(Permanent, "out of quota")
        },
        429 => Rule {
            rate_limited: true,
            ..rule(Retryable, "rate limited")
        },
        // OpenRouter: "insufficient credits"; with a Retry-After it is a passing condition.
        402 if retry_after.is_some() => rule(Retryable, "payment required"),
        402 => Rule {
            account_level: true,
            ..rule(Permanent, "out of credit")
        },
        401 => Rule {
            account_level: true,
            ..rule(Permanent, "unauthorized (check the API key)")
        },
        400 => rule(Permanent, "bad request"),
        403 => rule(Permanent, "forbidden"),
        404 => rule(Permanent, "not found (check the model name and base URL)"),
        408 => rule(Retryable, "request timeout"),
        409 => rule(Retryable, "conflict"),
        413 => rule(Permanent, "request too large"),
        422 => rule(Permanent, "unprocessable request"),
        502 => rule(
            Retryable,
            "bad gateway (the model is down or answered badly)",
        ),
        503 => rule(Retryable, "unavailable"),
        504 => rule(Retryable, "gateway timeout"),
        500..=599 => rule(Retryable, "server error"),
        300..=399 => rule(Permanent, "redirect (check the base URL)"),
        _ => rule(Permanent, "error"),
    }
}

/// An answer with an error status.
fn classify_status(
    name: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    redactor: &Redactor,
) -> ProviderError {
    let detail = ErrorDetail::from_body(body, StatusCode::from_u16(status).ok());
    // OpenRouter repeats its rate-limit headers inside the error's metadata.
    let headers = detail.merged_headers(headers);
    let hint = RateLimitHint::from_headers(&headers, now);
    let header_wait = ratelimit::retry_after(&headers, now);
    let mut rule = rule(status, &detail, header_wait);
    let retry_after = match header_wait {
        Some(wait) => Some(wait),
        None if rule.rate_limited => hint.and_then(|h| h.wait_hint()),
        None => None,
    };
    if let Some(should_retry) = ratelimit::should_retry(&headers) {
        rule.kind = if should_retry {
            ErrorKind::Retryable
        } else {
            ErrorKind::Permanent
        };
    }
    let mut message = format!("{name} {status} {}: {}", rule.label, detail.describe());
    if status / 100 == 3
        && let Some(location) = headers.get("location").and_then(|l| l.to_str().ok())
    {
        message.push_str(&format!(" (redirected to {location})"));
    }
    build(rule, Some(status), message, retry_after, hint, redactor)
}

/// A 200 whose body reports an error (OpenRouter's failures after generation started).
/// A numeric `code` is read as the status it names; without one, the failure is taken as
/// transient, since the request itself was accepted.
pub(super) fn body_error(
    name: &str,
    status: u16,
    error: &Value,
    headers: &HeaderMap,
    now: SystemTime,
    redactor: &Redactor,
) -> ProviderError {
    let detail = ErrorDetail::from_error_value(error);
    let code = detail.numeric_code.filter(|c| (400..600).contains(c));
    let header_wait = ratelimit::retry_after(headers, now);
    let rule = match code {
        Some(code) => rule(code, &detail, header_wait),
        None => Rule {
            kind: ErrorKind::Retryable,
            rate_limited: false,
            account_level: false,
            label: "",
        },
    };
    let code_text = code.map(|c| format!(" (code {c})")).unwrap_or_default();
    let message = format!(
        "{name} {status} answer carries an error{code_text}: {}",
        detail.describe()
    );
    let hint = RateLimitHint::from_headers(headers, now);
    build(rule, Some(status), message, header_wait, hint, redactor)
}

fn build(
    rule: Rule,
    status: Option<u16>,
    mut message: String,
    retry_after: Option<Duration>,
    rate_limit: Option<RateLimitHint>,
    redactor: &Redactor,
) -> ProviderError {
    if rule.kind == ErrorKind::Retryable
        && let Some(wait) = retry_after
    {
        message.push_str(&format!(" (retry after {})", human_duration(wait)));
    }
    ProviderError {
        kind: rule.kind,
        rate_limited: rule.rate_limited,
        account_level: rule.account_level,
        retry_after,
        http_status: status,
        // Redact before truncating, so a cut can never leave part of a key behind.
        message: redactor.message(&message),
        rate_limit: rate_limit.map(Box::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(body: &str) -> ErrorDetail {
        ErrorDetail::from_body(body.as_bytes(), None)
    }

    #[test]
    fn status_rules() {
        let plain = detail("{}");
        let retryable = [408, 409, 429, 500, 502, 503, 504, 529];
        for status in retryable {
            assert_eq!(
                rule(status, &plain, None).kind,
                ErrorKind::Retryable,
                "{status}"
            );
        }
        for status in [400, 401, 402, 403, 404, 413, 422, 301] {
            assert_eq!(
                rule(status, &plain, None).kind,
                ErrorKind::Permanent,
                "{status}"
            );
        }
        assert!(rule(429, &plain, None).rate_limited);
        assert!(rule(401, &plain, None).account_level);
        assert!(rule(402, &plain, None).account_level);
        assert!(!rule(403, &plain, None).account_level);
    }

    #[test]
    fn quota_429_is_permanent_and_account_level() {
        for body in [
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            r#"{"error":{"message":"quota","type":"insufficient_quota"}}"#,
        ] {
            let r = rule(429, &detail(body), None);
            assert_eq!(r.kind, ErrorKind::Permanent);
            assert!(r.account_level && !r.rate_limited);
        }
    }

    #[test]
    fn a_402_with_retry_after_can_be_retried() {
        let r = rule(402, &detail("{}"), Some(Duration::from_secs(30)));
        assert_eq!(r.kind, ErrorKind::Retryable);
        assert!(!r.account_level);
    }

    #[test]
    fn max_tokens_field_follows_the_provider() {
        let model = Model {
            id: 1,
            name: "m".into(),
            provider: ProviderKind::OpenAi,
            model: "gpt-4o-mini".into(),
            params: Value::Null,
            active: true,
            created_at: chrono::Utc::now(),
            spec: Default::default(),
        };
        let extra = json!({"stream": true, "top_p": 0.5, "model": "other", "max_tokens": 1});
        let params = Generation {
            max_tokens: Some(100),
            extra: extra.as_object().cloned(),
            ..Generation::default()
        };
        let openai = request_body(ProviderKind::OpenAi, &model, &params, "hi");
        assert_eq!(openai["max_completion_tokens"], 100);
        assert_eq!(openai["model"], "gpt-4o-mini");
        assert_eq!(openai["top_p"], 0.5);
        assert!(openai.get("stream").is_none());
        let router = request_body(ProviderKind::OpenRouter, &model, &params, "hi");
        assert_eq!(router["max_tokens"], 100);
        assert!(router.get("max_completion_tokens").is_none());
    }
}
