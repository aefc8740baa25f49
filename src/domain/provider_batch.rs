//! A provider batch as promptq records it: the jobs of one batch-mode model and one batch key,
//! sent to a provider's Batch API as one file, and how far that has got. Plain data.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobId, ModelId, ParseError};

/// How far a provider batch has got. Each step is written before the next one depends on it,
/// so that a process killed anywhere leaves a row another process can carry on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderBatchState {
    /// Jobs claimed and linked; nothing is known to be at the provider yet.
    Preparing,
    /// The input file is at the provider; a batch may have been created from it.
    Uploaded,
    /// The provider's batch id is known: polled until it ends.
    Submitted,
    /// Its results were read and its jobs finished or handed back.
    Done,
    /// Given up before it reached the provider; its jobs were handed back.
    Abandoned,
}

impl ProviderBatchState {
    pub const ALL: [ProviderBatchState; 5] = [
        ProviderBatchState::Preparing,
        ProviderBatchState::Uploaded,
        ProviderBatchState::Submitted,
        ProviderBatchState::Done,
        ProviderBatchState::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderBatchState::Preparing => "preparing",
            ProviderBatchState::Uploaded => "uploaded",
            ProviderBatchState::Submitted => "submitted",
            ProviderBatchState::Done => "done",
            ProviderBatchState::Abandoned => "abandoned",
        }
    }

    /// Nothing more happens to a batch in this state.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ProviderBatchState::Done | ProviderBatchState::Abandoned
        )
    }
}

impl fmt::Display for ProviderBatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderBatchState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderBatchState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseError(format!("unknown provider batch state '{s}'")))
    }
}

/// One provider batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderBatch {
    pub id: i64,
    pub model_id: ModelId,
    pub batch_key: String,
    pub state: ProviderBatchState,
    /// Random text sent in the batch's metadata, by which a process that lost track of a
    /// submission finds it again in the provider's list.
    pub token: String,
    pub request_count: i32,
    pub input_file_id: Option<String>,
    pub provider_batch_id: Option<String>,
    /// The provider's own status as last seen (`validating`, `in_progress`, `completed`, …).
    pub provider_status: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub error: Option<String>,
    pub polls: i32,
    pub next_poll_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A step's change to a provider batch; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderBatchPatch {
    pub state: Option<ProviderBatchState>,
    pub input_file_id: Option<String>,
    pub provider_batch_id: Option<String>,
    pub provider_status: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub error: Option<String>,
    /// When the next step may run (and the row's claim ends).
    pub next_poll_at: Option<DateTime<Utc>>,
    /// Counts one more poll.
    pub polled: bool,
}

/// How one job's line of a provider batch ended, as recorded on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineOutcome {
    Succeeded,
    Retry,
    Failed,
    /// The job was cancelled by a user while it waited in the batch.
    Cancelled,
}

impl LineOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LineOutcome::Succeeded => "succeeded",
            LineOutcome::Retry => "retry",
            LineOutcome::Failed => "failed",
            LineOutcome::Cancelled => "cancelled",
        }
    }
}

/// One job attempt's line: `(job, attempt, outcome)`.
pub type LineResult = (JobId, i32, LineOutcome);
