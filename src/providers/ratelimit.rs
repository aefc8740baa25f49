//! What a provider's response headers say about when to call again: `retry-after-ms`,
//! `Retry-After` (seconds or an HTTP date), `x-should-retry`, and the `x-ratelimit-*` family
//! (OpenAI's `-requests`/`-tokens` pairs with Go-style durations like `6m0s`, OpenRouter's
//! single `x-ratelimit-reset` in epoch milliseconds).
//!
//! Pure functions of the headers and a `now` passed in, so the rules are testable without a
//! clock. Values are reported as the provider sent them (past dates become zero), except that
//! no wait read here exceeds [`MAX_WAIT`]: a provider's `Retry-After: 1e20` or a reset in the
//! year 9999 means "as long as we ever wait", never an overflow. It never fails a call and
//! never panics: a header it cannot read is ignored.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::HeaderMap;

/// The longest any wait lasts, whatever a provider asks for: a backoff, a pause, a reschedule.
/// Longer asks are read as this one, so a hostile or broken header delays work by an hour at
/// most instead of to the year 9999.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// What the provider told us about its rate limits, for the limiter to slow down before a
/// 429 and to size its waits after one. (The `x-ratelimit-limit-*` ceilings are left out:
/// remaining and reset are enough to pace calls, and they keep [`super::ProviderError`]
/// small.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHint {
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Until the request budget is full again.
    pub reset_requests: Option<Duration>,
    /// Until the token budget is full again.
    pub reset_tokens: Option<Duration>,
    /// The budgets' sizes (`x-ratelimit-limit-*`): the pace to keep when nothing is configured.
    pub limit_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
}

impl RateLimitHint {
    /// Reads the `x-ratelimit-*` headers; `None` when the provider sent none.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<RateLimitHint> {
        let hint = RateLimitHint {
            remaining_requests: count(headers, "x-ratelimit-remaining-requests")
                .or_else(|| count(headers, "x-ratelimit-remaining")),
            remaining_tokens: count(headers, "x-ratelimit-remaining-tokens"),
            reset_requests: header(headers, "x-ratelimit-reset-requests")
                .and_then(parse_reset)
                .or_else(|| header(headers, "x-ratelimit-reset").and_then(|v| epoch_reset(v, now))),
            reset_tokens: header(headers, "x-ratelimit-reset-tokens").and_then(parse_reset),
            limit_requests: count(headers, "x-ratelimit-limit-requests").filter(|&n| n > 0),
            limit_tokens: count(headers, "x-ratelimit-limit-tokens").filter(|&n| n > 0),
        };
        (hint != RateLimitHint::default()).then_some(hint)
    }

    /// How long to wait after a 429 that carried no `Retry-After`: until the exhausted
    /// budget resets, or, when none reads as exhausted (one large request can exceed what is
    /// left), until the later of the two resets.
    pub fn wait_hint(&self) -> Option<Duration> {
        let exhausted = [
            (self.remaining_requests, self.reset_requests),
            (self.remaining_tokens, self.reset_tokens),
        ]
        .into_iter()
        .filter(|(remaining, _)| *remaining == Some(0))
        .filter_map(|(_, reset)| reset)
        .max();
        exhausted.or_else(|| self.reset_requests.max(self.reset_tokens))
    }
}

/// The wait a response asks for, as the official OpenAI SDK reads it: `retry-after-ms`
/// first, then `Retry-After` in seconds, then `Retry-After` as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(non_negative) {
        return Some(bounded_secs(ms / 1000.0));
    }
    let value = header(headers, "retry-after")?;
    if let Some(secs) = non_negative(value) {
        return Some(bounded_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(until(at, now))
}

/// `x-should-retry: true|false`, which OpenAI sends to override the status-based rule.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match header(headers, "x-should-retry")? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses a Go-style duration as OpenAI writes its resets: `6m0s`, `1s`, `20ms`,
/// `1h2m3.5s`, `250us`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(secs) = non_negative(text) {
        return Some(bounded_secs(secs));
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok().filter(|v: &f64| !v.is_nan())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    // Digits and units only, so `total` is a sum of non-negative terms: at worst +inf, which
    // reads as the longest wait.
    Some(bounded_secs(total))
}

/// Parses an HTTP date in the three forms RFC 9110 requires readers to accept:
/// IMF-fixdate, RFC 850 and asctime.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc2822(text)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%A, %d-%b-%y %H:%M:%S GMT")
                .ok()
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%a %b %e %H:%M:%S %Y")
                .ok()
                .map(|d| d.and_utc())
        })?;
    Some(SystemTime::from(parsed))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn count(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = non_negative(header(headers, name)?)?;
    // Some gateways send remaining counts as floats ("99.0"); whole units are what matters.
    Some(value as u64)
}

/// A plain decimal number (an exponent allowed), at least zero. Words that Rust's float parser
/// also takes (`inf`, `NaN`) are not numbers a provider means.
fn non_negative(text: &str) -> Option<f64> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| *v >= 0.0)
}

/// Seconds as a duration, at most [`MAX_WAIT`] (`+inf` included); `secs` is not NaN or negative.
fn bounded_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())).unwrap_or(MAX_WAIT)
}

/// The wait until `at`: zero when it is past, at most [`MAX_WAIT`].
fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT)
}

fn parse_reset(text: &str) -> Option<Duration> {
    parse_duration(text)
}

/// OpenRouter's `x-ratelimit-reset` is a Unix time in milliseconds; accept seconds and a
/// plain delay too, told apart by magnitude.
fn epoch_reset(text: &str, now: SystemTime) -> Option<Duration> {
    let value = non_negative(text)?;
    let epoch_secs = if value >= 1e12 {
        value / 1000.0
    } else if value >= 1e9 {
        value
    } else {
        return parse_duration(text);
    };
    // In floating point, so that an epoch past what `SystemTime` holds cannot overflow.
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Some(bounded_secs((epoch_secs - now_secs).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::from(DateTime::parse_from_rfc3339(rfc3339).unwrap())
    }

    #[test]
    fn go_durations_as_openai_writes_them() {
        let cases = [
            ("6m0s", 360_000),
            ("1s", 1_000),
            ("20ms", 20),
            ("0h2m3s", 123_000),
            // Past the cap on waits, read as the cap.
            ("1h2m3s", 3_600_000),
            ("0.5s", 500),
            ("1m30.5s", 90_500),
            ("2", 2_000),
            ("1.5", 1_500),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["", "s", "5x", "-1s", "1s5", "m5", "abc"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let expected = at("1994-11-06T08:49:37Z");
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(text), Some(expected), "{text}");
        }
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds_then_dates() {
        let now = at("2025-10-14T12:00:00Z");
        let both = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(retry_after(&both, now), Some(Duration::from_millis(1500)));
        let secs = headers(&[("retry-after", "2")]);
        assert_eq!(retry_after(&secs, now), Some(Duration::from_secs(2)));
        let date = headers(&[("retry-after", "Tue, 14 Oct 2025 12:00:30 GMT")]);
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(30)));
        let past = headers(&[("retry-after", "Tue, 14 Oct 2025 11:00:00 GMT")]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        let junk = headers(&[("retry-after", "soon"), ("retry-after-ms", "-5")]);
        assert_eq!(retry_after(&junk, now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn openai_rate_limit_headers() {
        let now = SystemTime::now();
        let map = headers(&[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-remaining-tokens", "29000"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        let hint = RateLimitHint::from_headers(&map, now).expect("hint");
        assert_eq!(hint.remaining_requests, Some(0));
        assert_eq!(hint.remaining_tokens, Some(29000));
        assert_eq!(hint.reset_requests, Some(Duration::from_secs(360)));
        assert_eq!(hint.reset_tokens, Some(Duration::from_millis(20)));
        // The request budget is the exhausted one, so its reset is the wait.
        assert_eq!(hint.wait_hint(), Some(Duration::from_secs(360)));
        assert_eq!(RateLimitHint::from_headers(&HeaderMap::new(), now), None);
    }

    #[test]
    fn without_an_exhausted_budget_the_later_reset_is_the_wait() {
        let hint = RateLimitHint {
            remaining_requests: Some(3),
            remaining_tokens: Some(10),
            reset_requests: Some(Duration::from_secs(1)),
            reset_tokens: Some(Duration::from_secs(4)),
            ..RateLimitHint::default()
        };
        assert_eq!(hint.wait_hint(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn openrouter_reset_is_epoch_milliseconds() {
        let now = at("2025-10-14T12:00:00Z");
        let reset_ms = (1_760_443_200_000_u64 + 5_000).to_string(); // now + 5 s
        let map = headers(&[
            ("x-ratelimit-limit", "20"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset_ms),
        ]);
        let hint = RateLimitHint::from_headers(&map, now).expect("hint");
        assert_eq!(hint.remaining_requests, Some(0));
        assert_eq!(hint.reset_requests, Some(Duration::from_secs(5)));
    }

    #[test]
    fn hostile_values_are_capped_or_ignored_never_a_panic() {
        let now = at("2025-10-14T12:00:00Z");
        let capped = [
            ("retry-after", "1e20"),
            ("retry-after", "1e400"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after-ms", "18446744073709551616000"),
            ("x-ratelimit-reset-requests", "99999999h"),
            (
                "x-ratelimit-reset-requests",
                "9999999999999999999999999999h9s",
            ),
            ("x-ratelimit-reset", "1e300"),
        ];
        for (name, value) in capped {
            let map = headers(&[(name, value)]);
            let wait = retry_after(&map, now)
                .or_else(|| RateLimitHint::from_headers(&map, now).and_then(|h| h.wait_hint()));
            assert_eq!(wait, Some(MAX_WAIT), "{name}: {value}");
        }
        for (name, value) in [
            ("retry-after-ms", "-1"),
            ("retry-after", "NaN"),
            ("retry-after", "inf"),
            ("retry-after", "-5"),
            ("x-ratelimit-reset-requests", "NaNs"),
        ] {
            let map = headers(&[(name, value)]);
            assert_eq!(retry_after(&map, now), None, "{name}: {value}");
            assert_eq!(
                RateLimitHint::from_headers(&map, now).and_then(|h| h.wait_hint()),
                None,
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn should_retry_header_is_read_strictly() {
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "false")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
    }
}
