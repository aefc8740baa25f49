//! Reading chat completion bodies leniently: OpenAI, OpenRouter and the compatible servers
//! agree on the shape but not on the details (content as a string or as parts, numbers as
//! strings, where cached and reasoning tokens live, how errors are wrapped).
//!
//! Everything is read from a `serde_json::Value` by hand rather than into strict structs, so
//! an unexpected field type loses that one figure instead of the whole answer. A body that
//! is not a completion at all (not JSON, no choices, an `error` object) becomes a clear,
//! retryable error naming the problem; it is never passed off as an empty answer.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::super::error::{ErrorKind, ProviderError, Redactor};
use super::super::{Completion, Usage};

/// How much of an unreadable body goes into a message.
const SNIPPET_CHARS: usize = 200;

/// A 2xx body as a [`Completion`] (latency and rate-limit hints are filled in by the caller).
pub(super) fn parse_success(
    name: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    redactor: &Redactor,
) -> Result<Completion, ProviderError> {
    let not_a_completion = |problem: String| {
        let mut err = ProviderError::new(
            ErrorKind::Retryable,
            redactor.message(&format!("{name} {status} answer {problem}")),
        );
        err.http_status = Some(status);
        err
    };
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| not_a_completion(format!("is not JSON ({e}): {}", snippet(body))))?;
    if let Some(error) = json.get("error").filter(|e| !e.is_null()) {
        return Err(super::body_error(
            name, status, error, headers, now, redactor,
        ));
    }
    let Some(choice) = json
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
    else {
        return Err(not_a_completion(format!(
            "has no choices: {}",
            snippet(body)
        )));
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(error) = choice.get("error").filter(|e| !e.is_null()) {
        return Err(super::body_error(
            name, status, error, headers, now, redactor,
        ));
    }
    if finish_reason.as_deref() == Some("error") {
        return Err(super::body_error(
            name,
            status,
            &Value::String("the choice finished with reason 'error'".into()),
            headers,
            now,
            redactor,
        ));
    }
    let message = choice.get("message");
    let text = message
        .and_then(message_text)
        // Legacy completions and some servers put the text on the choice itself.
        .or_else(|| {
            choice
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    // OpenRouter: a model warming up can answer 200 with nothing in it; that is a failed
    // call, not an empty answer. A finish reason (even `length`) makes it a real one.
    let text = match (text, &finish_reason) {
        (Some(text), _) => text,
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(not_a_completion(format!(
                "has no content and no finish reason: {}",
                snippet(body)
            )));
        }
    };

    let usage = json.get("usage");
    let field = |path: &[&str]| dig(usage, path);
    let usage_figures = Usage {
        prompt_tokens: field(&["prompt_tokens"]).and_then(as_i64),
        completion_tokens: field(&["completion_tokens"]).and_then(as_i64),
        total_tokens: field(&["total_tokens"]).and_then(as_i64),
        cached_tokens: field(&["prompt_tokens_details", "cached_tokens"])
            .or_else(|| field(&["prompt_cache_hit_tokens"]))
            .and_then(as_i64),
        reasoning_tokens: field(&["completion_tokens_details", "reasoning_tokens"])
            .or_else(|| field(&["reasoning_tokens"]))
            .and_then(as_i64),
    };
    let cost_usd = field(&["cost"]).and_then(as_f64);

    let request_id = ["x-request-id", "x-openrouter-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .or_else(|| json.get("id").and_then(Value::as_str).map(str::to_owned));

    let annotations = message
        .and_then(|m| m.get("annotations"))
        .filter(|a| is_non_empty(a))
        .cloned();
    let top_citations = json.get("citations").filter(|c| is_non_empty(c)).cloned();
    let citations = match (annotations, top_citations) {
        (Some(annotations), Some(citations)) => Some(serde_json::json!({
            "citations": citations,
            "annotations": annotations,
        })),
        (annotations, citations) => annotations.or(citations),
    };

    Ok(Completion {
        text,
        served_model: json.get("model").and_then(Value::as_str).map(str::to_owned),
        finish_reason,
        usage: usage_figures,
        cost_usd,
        latency: Duration::ZERO,
        request_id,
        citations,
        raw: Some(redactor.keys_only(&String::from_utf8_lossy(body))),
        http_status: Some(status),
        rate_limit: None,
    })
}

/// The text of a message: a string, the text parts of an array, or the refusal when the
/// model refused (a refusal is an answer, recorded as one).
fn message_text(message: &Value) -> Option<String> {
    match message.get("content") {
        Some(Value::String(text)) => return Some(text.clone()),
        Some(Value::Array(parts)) => {
            let text: String = parts
                .iter()
                .filter_map(|part| match part {
                    Value::String(text) => Some(text.as_str()),
                    part => part.get("text").and_then(Value::as_str),
                })
                .collect();
            return Some(text);
        }
        _ => {}
    }
    message
        .get("refusal")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What an error body says, from the shapes seen in the wild: OpenAI and OpenRouter's
/// `{"error": {"message", "type", "code", "metadata"}}`, `{"error": "text"}`, vLLM's
/// top-level `message`, FastAPI's `detail`, or not JSON at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ErrorDetail {
    message: String,
    code: Option<String>,
    error_type: Option<String>,
    pub(super) numeric_code: Option<u16>,
    /// OpenRouter: which upstream failed.
    upstream: Option<String>,
    /// OpenRouter: the rate-limit headers it repeats in `metadata.headers`.
    metadata_headers: Vec<(String, String)>,
}

impl ErrorDetail {
    pub(super) fn from_body(body: &[u8], status: Option<StatusCode>) -> Self {
        let reason = || {
            status
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no details")
                .to_owned()
        };
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            let text = snippet(body);
            return ErrorDetail {
                message: if text.is_empty() { reason() } else { text },
                ..ErrorDetail::default()
            };
        };
        if let Some(error) = json.get("error").filter(|e| !e.is_null()) {
            return ErrorDetail::from_error_value(error);
        }
        let mut detail = ErrorDetail::from_error_value(&json);
        if detail.message.is_empty() {
            detail.message = match json.get("detail") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None if json.as_object().is_some_and(|o| o.is_empty()) => reason(),
                None => snippet(body),
            };
        }
        detail
    }

    pub(super) fn from_error_value(error: &Value) -> Self {
        if let Value::String(text) = error {
            return ErrorDetail {
                message: text.clone(),
                ..ErrorDetail::default()
            };
        }
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
        let code_value = error.get("code");
        let metadata = error.get("metadata");
        let upstream = dig(metadata, &["provider_name"])
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut message = text("message").unwrap_or_default();
        if let Some(raw) = dig(metadata, &["raw"]) {
            let raw = match raw {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            if !raw.is_empty() && !message.contains(&raw) {
                message = if message.is_empty() {
                    raw
                } else {
                    format!("{message}: {raw}")
                };
            }
        }
        let metadata_headers = dig(metadata, &["headers"])
            .and_then(Value::as_object)
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(k, v)| {
                        let value = match v {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            _ => return None,
                        };
                        Some((k.to_ascii_lowercase(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        ErrorDetail {
            message,
            code: code_value.and_then(Value::as_str).map(str::to_owned),
            error_type: text("type"),
            numeric_code: code_value
                .and_then(as_i64)
                .or_else(|| error.get("status").and_then(as_i64))
                .and_then(|c| u16::try_from(c).ok()),
            upstream,
            metadata_headers,
        }
    }

    /// OpenAI's "you ran out of credit", which arrives as a 429.
    pub(super) fn is_quota_exhausted(&self) -> bool {
        [&self.code, &self.error_type]
            .iter()
            .any(|v| v.as_deref() == Some("insufficient_quota"))
    }

    /// The message with its code and upstream, for an error message.
    pub(super) fn describe(&self) -> String {
        let mut text = if self.message.is_empty() {
            "no details".to_owned()
        } else {
            self.message.clone()
        };
        if let Some(code) = self.code.as_deref().or(self.error_type.as_deref())
            && !text.contains(code)
        {
            text.push_str(&format!(" [{code}]"));
        }
        if let Some(upstream) = &self.upstream {
            text.push_str(&format!(" (upstream: {upstream})"));
        }
        text
    }

    /// The response headers, plus any that the body repeats and the headers lack.
    pub(super) fn merged_headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut merged = headers.clone();
        for (name, value) in &self.metadata_headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) && !merged.contains_key(&name)
            {
                merged.insert(name, value);
            }
        }
        merged
    }
}

fn dig<'v>(value: Option<&'v Value>, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value?, |value, key| value.get(key))
        .filter(|v| !v.is_null())
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.round() as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn is_non_empty(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::String(text) => !text.is_empty(),
        _ => true,
    }
}

/// The start of a body, on one line, for a message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    super::super::error::truncate_chars(&one_line, SNIPPET_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Completion, ProviderError> {
        parse_success(
            "openai",
            200,
            &HeaderMap::new(),
            body.to_string().as_bytes(),
            SystemTime::now(),
            &Redactor::default(),
        )
    }

    #[test]
    fn content_parts_are_joined_and_refusals_kept() {
        let parts = json!({"choices": [{"message": {"content": [
            {"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}
        ]}, "finish_reason": "stop"}]});
        assert_eq!(parse(parts).unwrap().text, "Hello, world");
        let refusal = json!({"choices": [{"message": {"content": null,
            "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
        assert_eq!(parse(refusal).unwrap().text, "I can't help with that.");
    }

    #[test]
    fn figures_written_oddly_are_still_read() {
        let body = json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": "12", "completion_tokens": 3.0, "total_tokens": 15,
                      "cost": "0.0002", "prompt_tokens_details": null}});
        let c = parse(body).unwrap();
        assert_eq!(c.usage.prompt_tokens, Some(12));
        assert_eq!(c.usage.completion_tokens, Some(3));
        assert_eq!(c.usage.cached_tokens, None);
        assert_eq!(c.cost_usd, Some(0.0002));
    }

    #[test]
    fn an_empty_choice_without_finish_reason_is_an_error() {
        let err = parse(json!({"choices": [{"message": {"content": null}}]})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Retryable);
        assert!(err.message.contains("no content"), "{}", err.message);
    }

    #[test]
    fn error_shapes_in_the_wild() {
        let vllm = ErrorDetail::from_body(
            br#"{"object":"error","message":"model not found","type":"NotFoundError","code":404}"#,
            None,
        );
        assert_eq!(vllm.describe(), "model not found [NotFoundError]");
        assert_eq!(vllm.numeric_code, Some(404));
        let fastapi = ErrorDetail::from_body(br#"{"detail":"Not Found"}"#, None);
        assert_eq!(fastapi.describe(), "Not Found");
        let plain = ErrorDetail::from_body(br#"{"error":"model 'x' not found"}"#, None);
        assert_eq!(plain.describe(), "model 'x' not found");
        let empty = ErrorDetail::from_body(b"", StatusCode::from_u16(503).ok());
        assert_eq!(empty.describe(), "Service Unavailable");
        let html = ErrorDetail::from_body(b"<html>\n  <h1>Bad   Gateway</h1></html>", None);
        assert_eq!(html.describe(), "<html> <h1>Bad Gateway</h1></html>");
        let upstream = ErrorDetail::from_body(
            br#"{"error":{"code":502,"message":"Provider returned error",
                "metadata":{"provider_name":"Together","raw":"overloaded"}}}"#,
            None,
        );
        assert_eq!(
            upstream.describe(),
            "Provider returned error: overloaded (upstream: Together)"
        );
    }
}
