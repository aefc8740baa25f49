//! What the use cases and the store are asked: models and prompts to create or change, which
//! jobs a query or an action applies to, and one page of a listing. Plain data.

use chrono::{DateTime, Utc};

use super::{JobId, JobStatus, ModelId, PromptId, ProviderKind};

/// A model to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub name: String,
    pub provider: ProviderKind,
    pub model: String,
    pub params: serde_json::Value,
    pub active: bool,
}

/// Changes to a model; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub params: Option<serde_json::Value>,
    pub active: Option<bool>,
}

/// A prompt to create. `model_ids: None` means every model active when each batch is enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub text: String,
    pub model_ids: Option<Vec<ModelId>>,
    pub runs: i32,
    pub active: bool,
    pub schedule: Option<String>,
}

/// Changes to a prompt; `None` leaves a field as it is, `schedule: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptPatch {
    pub text: Option<String>,
    /// Run it on exactly these models from now on.
    pub model_ids: Option<Vec<ModelId>>,
    /// Run it on every model active when each batch is enqueued (excludes `model_ids`).
    pub all_models: bool,
    pub runs: Option<i32>,
    pub active: Option<bool>,
    pub schedule: Option<Option<String>>,
}

/// The jobs a retry or a cancel applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSelector {
    One(JobId),
    Batch {
        batch_key: String,
        status: Option<JobStatus>,
    },
}

/// Filters of a job query; all of them must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub job_id: Option<JobId>,
    pub batch_key: Option<String>,
    pub prompt_id: Option<PromptId>,
    pub model_id: Option<ModelId>,
    pub status: Option<JobStatus>,
}

/// One page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 100,
            offset: 0,
        }
    }
}

/// Filters of a response query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFilter {
    pub prompt_id: Option<PromptId>,
    pub model_id: Option<ModelId>,
    pub batch_key: Option<String>,
    pub job_id: Option<JobId>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Only responses with a lower id: the next page after one that ended at this id, read
    /// at the cost of one page however deep it is (an offset skips every row before it).
    pub below_id: Option<i64>,
}
