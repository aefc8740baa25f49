//! HTTP fan-out, as on serverless: one `POST {APP_URL}/api/jobs/process` per due job.
//!
//! Used after a scheduling pass when `DISPATCH=http`. Each pass first rescues expired leases and
//! then sends every queued job that is due, not only the new ones, so that jobs left behind by
//! lost calls are picked up by the next pass and nothing is stranded. The calls run with bounded
//! concurrency; the receiving end claims each job atomically, so a duplicate call is a 409.
//! Every call carries the `CRON_SECRET`; the configuration refuses an `APP_URL` that would send
//! it in clear over a network (plain `http://` off this machine).

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::engine::runtime::Runtime;
use crate::store::Clock;

/// What a fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanOutReport {
    pub rescued: usize,
    pub sent: usize,
    /// Calls answered 2xx.
    pub accepted: usize,
    /// Calls answered 409: someone else has the job already.
    pub conflicts: usize,
    /// Calls that failed (connection error or another status); the next pass retries them.
    pub failed: usize,
    /// Due jobs this pass did not send because its time budget ran out.
    pub left: usize,
    /// Whether those were handed to a fresh invocation (`POST {APP_URL}/api/jobs/dispatch`).
    pub handed_off: bool,
}

/// The most jobs one pass sends.
const MAX_PER_PASS: i64 = 100_000;

pub(crate) fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Every call carries the CRON_SECRET: a redirect must not take it anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Sends every due queued job to `{APP_URL}/api/jobs/process`; with a `deadline`, starts no
/// call after it (the calls under way are awaited) and counts the jobs left in `left`.
pub async fn fan_out(runtime: &Runtime, deadline: Option<std::time::Instant>) -> FanOutReport {
    let mut report = FanOutReport::default();
    let Some(base) = runtime.config().app_url.clone() else {
        tracing::error!("DISPATCH=http without APP_URL: nothing sent");
        return report;
    };
    let now = Clock::Database;
    match runtime.store().jobs_rescue_expired(now).await {
        Ok(rescued) => report.rescued = rescued.len(),
        Err(err) => tracing::warn!(error = %err, "rescue before fan-out failed"),
    }
    // Jobs of models this process cannot call would only be refused (409): they wait.
    let except = match runtime.blocked_ids().await {
        Ok(except) => except,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the blocked models for the fan-out");
            return report;
        }
    };
    let ids = match runtime
        .store()
        .jobs_due_ids(now, MAX_PER_PASS, &except)
        .await
    {
        Ok(ids) => ids,
        Err(err) => {
            tracing::error!(error = %err, "cannot list due jobs for the fan-out");
            return report;
        }
    };
    let url = format!("{base}/api/jobs/process");
    let secret = runtime.config().cron_secret.clone();
    // A model call can take MODEL_TIMEOUT_SECS; the HTTP call waits a little longer.
    let timeout = runtime.config().model_timeout + Duration::from_secs(15);
    let concurrency = runtime.config().worker_concurrency.max(1);
    let due = ids.len();
    let statuses: Vec<Option<u16>> = futures_util::stream::iter(ids)
        .take_while(|_| {
            std::future::ready(deadline.is_none_or(|at| std::time::Instant::now() < at))
        })
        .map(|id| {
            let mut request = client()
                .post(&url)
                .timeout(timeout)
                .json(&serde_json::json!({ "jobId": id }));
            if let Some(secret) = &secret {
                request = request.header("Authorization", format!("Bearer {}", secret.expose()));
            }
            async move {
                match request.send().await {
                    Ok(answer) => Some(answer.status().as_u16()),
                    Err(err) => {
                        tracing::warn!(job_id = id, error = %err, "fan-out call failed");
                        None
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    report.sent = statuses.len();
    report.left = due - statuses.len();
    for status in statuses {
        match status {
            Some(200..=299) => report.accepted += 1,
            Some(409) => report.conflicts += 1,
            _ => report.failed += 1,
        }
    }
    tracing::info!(?report, "fan-out pass");
    report
}
