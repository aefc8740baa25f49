//! The documented shapes of the catalog's answers (models, prompts, deletes), for the OpenAPI
//! document: each mirrors the JSON a route answers and is checked against it by the tests.

use chrono::{DateTime, Utc};
use utoipa::ToSchema;

/// The answer of a delete.
#[derive(ToSchema)]
#[schema(as = Deleted)]
pub struct DeletedDoc {
    success: bool,
    id: i64,
}

/// A model.
#[derive(ToSchema)]
#[schema(as = Model, rename_all = "camelCase")]
pub struct ModelDoc {
    id: i64,
    name: String,
    /// openai, openrouter, openai-compatible or mock
    provider: String,
    model: String,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    active: bool,
    created_at: DateTime<Utc>,
}

/// `{"success": true, "model": …}`
#[derive(ToSchema)]
#[schema(as = OneModel)]
pub struct OneModelDoc {
    success: bool,
    model: ModelDoc,
    /// On a write: what would keep the model from running on this server (a key it lacks).
    warnings: Option<Vec<String>>,
}

/// `{"success": true, "models": […]}`
#[derive(ToSchema)]
#[schema(as = Models)]
pub struct ModelsDoc {
    success: bool,
    models: Vec<ModelDoc>,
}

/// A prompt.
#[derive(ToSchema)]
#[schema(as = Prompt, rename_all = "camelCase")]
pub struct PromptDoc {
    id: i64,
    text: String,
    model_ids: Vec<i64>,
    all_models: bool,
    runs: i32,
    active: bool,
    /// Its own cron expression; null follows the global schedule.
    schedule: Option<String>,
    last_run_at: Option<DateTime<Utc>>,
    last_batch_key: Option<String>,
    created_at: DateTime<Utc>,
}

/// `{"success": true, "prompt": …}`
#[derive(ToSchema)]
#[schema(as = OnePrompt)]
pub struct OnePromptDoc {
    success: bool,
    prompt: PromptDoc,
}

/// `{"success": true, "prompts": […]}`
#[derive(ToSchema)]
#[schema(as = Prompts)]
pub struct PromptsDoc {
    success: bool,
    prompts: Vec<PromptDoc>,
}
