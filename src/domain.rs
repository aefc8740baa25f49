//! The queue's vocabulary: prompts, models, jobs, their states and the outcome of an attempt.
//!
//! Plain data with the invariants that can be checked without I/O ("parse, don't validate"):
//! a [`BatchKey`] or a [`JobStatus`] can only exist valid. This module imports nothing else
//! of the crate and never touches a database, a clock or the network.

pub mod price;
pub mod provider_batch;
pub mod queries;
pub mod records;
pub mod spec;
pub mod stats;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use records::BlockedModel;
pub use spec::ModelSpec;

/// Identifier of a row in `prompt_jobs`.
pub type JobId = i64;
/// Identifier of a row in `prompts`.
pub type PromptId = i64;
/// Identifier of a row in `models`.
pub type ModelId = i64;

/// The life of a job: `queued → processing → succeeded | failed`, `queued → skipped`,
/// `processing → queued` (a retry, a released or a rescued job). A job sent through a
/// provider's Batch API is `submitted` once the provider accepted its batch: `processing →
/// submitted → succeeded | failed | queued` (its line's outcome, or its batch handed it back),
/// `submitted → skipped` (cancelled). Leases and rescues never touch a `submitted` job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Submitted,
    Succeeded,
    Failed,
    Skipped,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Submitted,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Submitted => "submitted",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Skipped => "skipped",
        }
    }

    /// A job in a terminal state is never picked up again unless a user retries it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Skipped
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a value that users type (a status, a batch key, a provider name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl FromStr for JobStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                ParseError(format!(
                    "unknown status '{s}' (expected one of: {})",
                    known.join(", ")
                ))
            })
    }
}

/// The name of one period of a schedule: `YYYY-MM-DD` for a daily schedule,
/// `YYYY-MM-DDTHH:MM` for shorter ones. Keys of one schedule sort in time order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BatchKey(String);

impl BatchKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BatchKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
            || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").is_ok() && s.len() == 16;
        if valid {
            Ok(BatchKey(s.to_owned()))
        } else {
            Err(ParseError(format!(
                "invalid batch key '{s}' (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
            )))
        }
    }
}

impl TryFrom<String> for BatchKey {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BatchKey> for String {
    fn from(key: BatchKey) -> String {
        key.0
    }
}

impl fmt::Display for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who answers a model's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "openrouter")]
    OpenRouter,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    #[serde(rename = "mock")]
    Mock,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::OpenRouter,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Mock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Mock => "mock",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                ParseError(format!(
                    "unknown provider '{s}' (expected one of: openai, openrouter, openai-compatible, mock)"
                ))
            })
    }
}

/// A model that prompts run on: which provider, which model name there, and its params
/// (`temperature`, `maxTokens`, `seed`, limits, `baseUrl`, mock `latencyMs`/`failRate`, …)
/// as written and as read ([`ModelSpec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "ModelFields")]
pub struct Model {
    pub id: ModelId,
    pub name: String,
    pub provider: ProviderKind,
    pub model: String,
    pub params: serde_json::Value,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    /// `params`, read: made with them (`ModelSpec::read(&params)`), never written alone.
    #[serde(skip_serializing)]
    pub spec: ModelSpec,
}

/// A model as serialized: its spec is read from its params, never taken from outside.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelFields {
    id: ModelId,
    name: String,
    provider: ProviderKind,
    model: String,
    params: serde_json::Value,
    active: bool,
    created_at: DateTime<Utc>,
}

impl From<ModelFields> for Model {
    fn from(m: ModelFields) -> Self {
        Model {
            spec: ModelSpec::read(&m.params),
            id: m.id,
            name: m.name,
            provider: m.provider,
            model: m.model,
            params: m.params,
            active: m.active,
            created_at: m.created_at,
        }
    }
}

impl Model {
    /// This model with its `spec` read from its `params`: where a row becomes a model.
    pub fn with_spec(mut self) -> Model {
        self.spec = ModelSpec::read(&self.params);
        self
    }

    /// This model with the generation params replaced by `snapshot`'s (none when `None`):
    /// a job runs with the generation params of its enqueue.
    pub fn with_generation_params(mut self, snapshot: Option<serde_json::Value>) -> Model {
        self.params = with_generation_params(self.params, snapshot);
        self.with_spec()
    }
}

/// A prompt, the models it runs on, how many runs per batch, and its own schedule if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    pub id: PromptId,
    pub text: String,
    /// The models its next batch runs on: its own list, or, for an all-models prompt, the
    /// models active now.
    pub model_ids: Vec<ModelId>,
    /// Runs on every model active when its batch is enqueued (it was given no model list).
    #[serde(default)]
    pub all_models: bool,
    pub runs: i32,
    pub active: bool,
    pub schedule: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_batch_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One job: one call of one prompt on one model, for one run index of one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub prompt_id: PromptId,
    pub model_id: ModelId,
    pub run_index: i32,
    pub batch_key: String,
    pub status: JobStatus,
    pub error_message: Option<String>,
    /// Attempts spent: claims that ended in anything but a rate limit (429), which are counted
    /// apart in `rate_limited_count` and spend nothing.
    pub attempt_count: i32,
    pub max_attempts: i32,
    /// Claims that the provider answered with a rate limit.
    #[serde(default)]
    pub rate_limited_count: i32,
    pub scheduled_for: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The version of the prompt this job answers (SHA-256 of its text, hex), fixed at
    /// enqueue; `None` for jobs enqueued before prompts had versions.
    #[serde(default)]
    pub prompt_version: Option<String>,
    /// The provider's id of the batch a `submitted` job waits in (the status listing and a
    /// job's detail fill it in; `None` otherwise).
    #[serde(default)]
    pub provider_batch_id: Option<String>,
}

/// The model params that shape an answer, snapshotted with each job at enqueue (limits,
/// endpoints and the mock's knobs are read from the model as it is at call time).
pub const GENERATION_PARAMS: [&str; 4] = ["temperature", "maxTokens", "seed", "extra"];

/// `current` params with the generation params replaced by `snapshot`'s (none when `None`).
fn with_generation_params(
    current: serde_json::Value,
    snapshot: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut params = match current {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    for key in GENERATION_PARAMS {
        params.remove(key);
    }
    if let Some(serde_json::Value::Object(snapshot)) = snapshot {
        for (key, value) in snapshot {
            if GENERATION_PARAMS.contains(&key.as_str()) {
                params.insert(key, value);
            }
        }
    }
    serde_json::Value::Object(params)
}

impl Job {
    /// How many times the job was claimed: attempts spent and rate-limited claims. The number
    /// of the latest claim, which fences every write made on its behalf.
    pub fn claim_number(&self) -> i32 {
        self.attempt_count + self.rate_limited_count
    }
}

/// A job handed to a worker by a claim: the job, its attempt number (the fence every later
/// write of this attempt must present), and what the call needs: the prompt text of the job's
/// version and the model with the generation params of the job's enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job: Job,
    pub attempt: i32,
    pub prompt_text: String,
    /// Shared by the jobs of one claim that run the same model with the same params.
    pub model: std::sync::Arc<Model>,
}

/// How a failed attempt failed, as far as what to do next is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth another attempt: connection errors, timeouts, 5xx.
    Retryable,
    /// The provider said "slow down" (429 without a quota problem).
    RateLimited,
    /// Another attempt would fail the same way: bad request, bad key, no credit.
    Permanent,
    /// The worker holding the job vanished (its lease expired).
    Abandoned,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Abandoned => "abandoned",
        }
    }
}

/// What went wrong in one attempt, as recorded in `job_attempts` and `error_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptError {
    pub class: ErrorClass,
    pub http_status: Option<u16>,
    pub message: String,
}

/// What a model call produced, ready to be stored in `responses`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewResponse {
    pub text: String,
    pub served_model: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub latency_ms: i64,
    pub provider_request_id: Option<String>,
    pub http_status: Option<u16>,
    /// Citations or annotations the provider attached, as JSON text.
    pub citations: Option<String>,
    /// The provider's body as received.
    pub raw: Option<String>,
}

/// How an attempt ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Box<NewResponse>),
    /// Back to `queued`, due again at `at`. With `refund_attempt` the attempt does not count
    /// against the job's budget (a provider's rate limit delays a job, it does not fail it).
    Retry {
        at: DateTime<Utc>,
        error: AttemptError,
        refund_attempt: bool,
    },
    Failed(AttemptError),
}

/// One attempt's finish, fenced by (job id, attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub job_id: JobId,
    pub attempt: i32,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// What a finish did: applied (the attempt still owned the job) or stale (it changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishResult {
    pub job_id: JobId,
    pub applied: bool,
    /// The job's status after the finish (its unchanged status when stale).
    pub status: Option<JobStatus>,
    /// The id of the stored response, for an applied success.
    pub response_id: Option<i64>,
}

/// Job counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: i64,
    pub queued: i64,
    pub processing: i64,
    /// In a provider batch the provider accepted, waiting for its results.
    pub submitted: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl Summary {
    pub fn add(&mut self, status: JobStatus, count: i64) {
        self.total += count;
        match status {
            JobStatus::Queued => self.queued += count,
            JobStatus::Processing => self.processing += count,
            JobStatus::Submitted => self.submitted += count,
            JobStatus::Succeeded => self.succeeded += count,
            JobStatus::Failed => self.failed += count,
            JobStatus::Skipped => self.skipped += count,
        }
    }

    /// Jobs taken from the queue and not yet ended: `processing` or `submitted`.
    pub fn in_flight(&self) -> i64 {
        self.processing + self.submitted
    }
}

/// What the scheduler needs to know of an active prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledPrompt {
    pub prompt_id: PromptId,
    /// Its own cron expression; `None` (or blank) follows the global schedule, `off` is daily.
    pub schedule: Option<String>,
    /// The key of the last batch created for it by a scheduled pass.
    pub last_batch_key: Option<String>,
}

/// One prompt's batch to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub prompt_id: PromptId,
    pub batch_key: BatchKey,
    /// The slot of the prompt's schedule this batch belongs to (for a backfill, the start of
    /// the key's period).
    pub scheduled_for: DateTime<Utc>,
}

/// A value that must never be printed or stored: an API key, the cron secret.
/// `Debug` and `Display` show `[redacted]`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// `None` for a missing or blank value; surrounding whitespace (a pasted newline) is dropped.
    pub fn from_optional(value: Option<String>) -> Option<Self> {
        value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(Secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `text` as one line, for status lines and table cells: runs of whitespace and control
/// characters (newlines, tabs, escapes) become one space. The full text stays where a job's
/// detail is shown.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn batch_keys_accept_days_and_minutes_only() {
        assert!("2025-10-14".parse::<BatchKey>().is_ok());
        assert!("2025-10-14T13:00".parse::<BatchKey>().is_ok());
        for bad in [
            "2025-13-01",
            "2025-10-14T25:00",
            "20251014",
            "2025-10-14 13:00",
            "",
            "x",
        ] {
            assert!(bad.parse::<BatchKey>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn providers_parse_by_contract_name() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
        }
        assert!("anthropic".parse::<ProviderKind>().is_err());
    }
}
