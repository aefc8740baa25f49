//! One delivery attempt of an alert to the webhook: the Slack-compatible body, the POST, and
//! what the answer means for the alert (delivered, try again later, or give up).
//!
//! The body is what a Slack incoming webhook takes (`text`, the fallback Slack requires, and
//! `blocks`), plus fields Slack ignores and other receivers can use: `alertId` and `dedupeKey`
//! identify the alert across redeliveries, so a receiver can drop a repeat (see
//! [`crate::app`]'s alert delivery for when one can happen). The webhook's URL carries a
//! secret token in Slack's case: no error produced here contains it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::domain::Secret;
use crate::store::Alert;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts, whatever `Retry-After` asks.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// How much of an error answer's body is kept as the alert's last error.
const BODY_CHARS: usize = 200;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The webhook answered 2xx.
    Delivered,
    /// A network error, a timeout, 408, 429 or 5xx: worth another attempt, after the wait the
    /// webhook asked for (`Retry-After`) if it asked.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Any other answer (400, 403, 404, 410, …): the same request will not succeed.
    Refused { error: String },
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            // The alert goes where the operator said, not where an answer points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// The JSON body of `alert`.
pub fn payload(alert: &Alert) -> Value {
    let context = format!(
        "promptq alert #{} · {} · `{}`",
        alert.id,
        alert.kind.as_str(),
        alert.dedupe_key
    );
    json!({
        "text": alert.message,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.message}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
        "alertId": alert.id,
        "dedupeKey": alert.dedupe_key,
        "kind": alert.kind,
        "batchKey": alert.batch_key,
        "details": alert.details,
        "createdAt": alert.created_at,
    })
}

/// POSTs `alert` to `webhook` once.
pub async fn deliver(webhook: &Secret, alert: &Alert) -> Delivery {
    let sent = client()
        .post(webhook.expose())
        .header("X-Promptq-Alert-Id", alert.id.to_string())
        .json(&payload(alert))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(err) => {
            return Delivery::Retry {
                error: describe(&err),
                retry_after: None,
            };
        }
    };
    let status = answer.status();
    if status.is_success() {
        return Delivery::Delivered;
    }
    let retry_after = crate::providers::retry_after(answer.headers(), SystemTime::now())
        .map(|wait| wait.min(MAX_WAIT));
    let body = answer.text().await.unwrap_or_default();
    let body: String = crate::domain::one_line(&body)
        .chars()
        .take(BODY_CHARS)
        .collect();
    let error = if body.is_empty() {
        format!("the webhook answered {status}")
    } else {
        format!("the webhook answered {status}: {body}")
    };
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Delivery::Retry { error, retry_after }
    } else {
        Delivery::Refused { error }
    }
}

/// A send error without the URL (reqwest's own message names it).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        format!("the webhook did not answer within {}s", TIMEOUT.as_secs())
    } else if err.is_connect() {
        "cannot connect to the webhook".to_owned()
    } else {
        // The causes below reqwest's own (hyper, io) name no URL.
        match std::error::Error::source(err) {
            Some(cause) => format!("cannot reach the webhook: {cause}"),
            None => "cannot reach the webhook".to_owned(),
        }
    }
}

/// The wait after attempt `attempts` failed: the webhook's `Retry-After` when it sent one
/// (never less than `first`), else `first` doubled after each attempt; at most [`MAX_WAIT`].
pub fn backoff(first: Duration, attempts: i32, retry_after: Option<Duration>) -> Duration {
    let wait = match retry_after {
        Some(asked) => asked.max(first),
        None => {
            let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
            first.saturating_mul(1 << doublings)
        }
    };
    wait.min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_an_hour_and_a_retry_after_is_honoured() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(30), 1, None), s(30));
        assert_eq!(backoff(s(30), 3, None), s(120));
        assert_eq!(backoff(s(30), 40, None), MAX_WAIT);
        // The webhook asks for longer than the backoff: it gets it.
        assert_eq!(backoff(s(30), 1, Some(s(300))), s(300));
        // Asked for less: never sooner than the first wait.
        assert_eq!(backoff(s(30), 3, Some(s(5))), s(30));
        assert_eq!(backoff(s(30), 1, Some(s(100_000))), MAX_WAIT);
    }
}
