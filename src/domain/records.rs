//! What the store gives back besides jobs: attempt records, stored responses, pauses.
//! Plain data.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobId, ModelId, PromptId};

/// One attempt of a job, as recorded in `job_attempts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub job_id: JobId,
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// `succeeded`, `retry`, `failed` or `abandoned`.
    pub outcome: String,
    pub http_status: Option<i32>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
}

/// A stored response with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    pub id: i64,
    pub job_id: JobId,
    pub prompt_id: PromptId,
    pub model_id: ModelId,
    pub batch_key: String,
    pub run_index: i32,
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
    pub citations: Option<String>,
    pub raw: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The version of the prompt this answers (SHA-256 of its text, hex) and that text;
    /// `None` for answers stored before prompts had versions.
    pub prompt_version: Option<String>,
    pub prompt_text: Option<String>,
}

/// A provider, endpoint or model that must not be called before `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    pub scope: String,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Rate-limited answers in a row with no success (a model's scope only).
    pub strikes: i32,
}

/// An active model this process cannot call (a key or an endpoint it lacks, or a daily budget
/// spent): its jobs stay `queued`, unclaimed and with no attempt spent, until a process that
/// has the setting runs (or the next day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedModel {
    pub model_id: ModelId,
    pub model_name: String,
    /// What is missing, e.g. `openai: OPENAI_API_KEY is not set`.
    pub reason: String,
    /// Its `queued` jobs (among those a status query matches).
    pub queued: i64,
}

impl BlockedModel {
    /// Stopped for the day by a budget, rather than lacking a setting.
    pub fn by_budget(&self) -> bool {
        self.reason.starts_with(super::price::BUDGET_REACHED)
    }
}
