//! How a model call fails, in the terms the engine acts on: retry or not, slow down or not,
//! pause the whole provider or not, and a message fit for a job's `error_message`.
//!
//! Every message leaves this module through [`Redactor`], so no key ever reaches a log, the
//! database or an API answer, even when a provider echoes it back. Nothing here decides
//! *when* to retry: the engine owns backoff and caps; a provider only passes on what it was
//! told (`retry_after`, [`RateLimitHint`]).

use std::fmt;
use std::time::Duration;

use crate::domain::{AttemptError, ErrorClass};

use super::ratelimit::RateLimitHint;

/// The longest message stored for a failed attempt; provider bodies can be pages of HTML.
pub const MAX_MESSAGE_CHARS: usize = 500;

const REDACTED: &str = "[redacted]";

/// Whether another attempt can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient: connection errors, timeouts, 408, 409, 429, 5xx, a garbled answer.
    Retryable,
    /// Another attempt would fail the same way: bad request, bad key, no credit.
    Permanent,
}

/// A failed model call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The provider asked us to slow down (a 429 that is not a quota problem).
    pub rate_limited: bool,
    /// The account, not the request, is at fault (bad key, no credit, no quota): every call
    /// to this provider would fail, so the engine may pause the provider.
    pub account_level: bool,
    /// How long the provider asked us to wait, from its headers.
    pub retry_after: Option<Duration>,
    /// `None` when no HTTP answer came (connection error, timeout, the mock).
    pub http_status: Option<u16>,
    /// Redacted and at most [`MAX_MESSAGE_CHARS`] long.
    pub message: String,
    /// Boxed: rarely present, and the error travels in every `Result` of a call.
    pub rate_limit: Option<Box<RateLimitHint>>,
}

impl ProviderError {
    pub(crate) fn new(kind: ErrorKind, message: String) -> Self {
        ProviderError {
            kind,
            rate_limited: false,
            account_level: false,
            retry_after: None,
            http_status: None,
            message,
            rate_limit: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The attempt record: rate-limited retryables are told apart so the engine and the
    /// dashboard can show "slowed down" rather than "broken".
    pub fn to_attempt_error(&self) -> AttemptError {
        let class = match (self.kind, self.rate_limited) {
            (ErrorKind::Permanent, _) => ErrorClass::Permanent,
            (ErrorKind::Retryable, true) => ErrorClass::RateLimited,
            (ErrorKind::Retryable, false) => ErrorClass::Retryable,
        };
        AttemptError {
            class,
            http_status: self.http_status,
            message: self.message.clone(),
        }
    }
}

/// Removes every configured key, and anything shaped like an OpenAI or OpenRouter key
/// (`sk-…`), from text that is about to leave the providers module.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a key that contains another is removed whole.
    keys: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} keys)", self.keys.len())
    }
}

impl Redactor {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        keys.dedup();
        Redactor { keys }
    }

    /// Redacts configured keys only: for bodies stored as received, where a model's own
    /// output may legitimately contain text like `sk-…`.
    pub fn keys_only(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for key in &self.keys {
            if out.contains(key.as_str()) {
                out = out.replace(key.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts keys and key-shaped tokens, then truncates: the form every error message takes.
    pub fn message(&self, text: &str) -> String {
        truncate_chars(&redact_key_shapes(&self.keys_only(text)), MAX_MESSAGE_CHARS)
    }
}

/// Replaces `sk-` followed by at least 8 key characters (letters, digits, `-`, `_`, and the
/// `*` providers use when they echo a masked key) when it starts a word.
fn redact_key_shapes(text: &str) -> String {
    const MIN_TAIL: usize = 8;
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("sk-") {
        let starts_word = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let tail = &rest[pos + 3..];
        let tail_len = tail.find(|c: char| !is_key_char(c)).unwrap_or(tail.len());
        if starts_word && tail_len >= MIN_TAIL {
            out.push_str(&rest[..pos]);
            out.push_str(REDACTED);
            rest = &tail[tail_len..];
        } else {
            out.push_str(&rest[..pos + 3]);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let mut out = text[..cut].trim_end().to_owned();
            out.push('…');
            out
        }
    }
}

pub use crate::domain::one_line;

/// A duration as people read it in a message: `250ms`, `2s`, `1.5s`, `6m0s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{:.1}s", d.as_secs_f64())
        }
    } else {
        let secs = d.as_secs();
        if secs < 3600 {
            format!("{}m{}s", secs / 60, secs % 60)
        } else {
            format!("{}h{}m", secs / 3600, secs % 3600 / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_keys_and_key_shapes_are_redacted() {
        let redactor = Redactor::new(["my-local-secret", "sk-or-v1-abcdef0123456789"]);
        let text = "bad key my-local-secret; also sk-or-v1-abcdef0123456789 and \
                    sk-proj-****************wxyz and sk-live1234567890";
        let out = redactor.message(text);
        assert!(!out.contains("my-local-secret"), "{out}");
        assert!(!out.contains("abcdef0123456789"), "{out}");
        assert!(!out.contains("wxyz"), "{out}");
        assert!(!out.contains("live1234567890"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
    }

    #[test]
    fn words_that_merely_contain_sk_are_left_alone() {
        let redactor = Redactor::default();
        for text in ["ask-me-anything-please", "sk-short", "task-0123456789abc"] {
            assert_eq!(redactor.message(text), text);
        }
    }

    #[test]
    fn stored_bodies_lose_configured_keys_only() {
        let redactor = Redactor::new(["secret-value-1"]);
        let body = r#"{"text":"secret-value-1 and sk-example-of-output"}"#;
        assert_eq!(
            redactor.keys_only(body),
            r#"{"text":"[redacted] and sk-example-of-output"}"#
        );
    }

    #[test]
    fn messages_are_truncated_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let out = Redactor::default().message(&long);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(out.ends_with('…'));
        assert_eq!(truncate_chars("short", 10), "short");
    }

    #[test]
    fn one_line_replaces_newlines_and_control_characters() {
        assert_eq!(
            one_line("502 Bad Gateway\r\n<html>\n\t<body>\u{1b}[31mred\u{7}</body>"),
            "502 Bad Gateway <html> <body> [31mred </body>"
        );
        assert_eq!(one_line("  plain  "), "plain");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(human_duration(Duration::from_secs(7260)), "2h1m");
    }

    #[test]
    fn rate_limited_retryables_are_their_own_attempt_class() {
        let mut err = ProviderError::new(ErrorKind::Retryable, "x".into());
        assert_eq!(err.to_attempt_error().class, ErrorClass::Retryable);
        err.rate_limited = true;
        assert_eq!(err.to_attempt_error().class, ErrorClass::RateLimited);
        err.kind = ErrorKind::Permanent;
        assert_eq!(err.to_attempt_error().class, ErrorClass::Permanent);
    }
}
