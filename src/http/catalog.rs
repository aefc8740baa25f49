//! The catalog's routes: models and prompts, created, listed, read, patched and deleted.
//!
//! Creates answer 201, everything else 200, always with `"success": true` and the row. Bodies
//! are parsed strictly (an unknown field is a 400, not ignored); what needs the database or the
//! providers' rules (a name already taken, params a provider refuses, an unknown model id) is
//! checked by the use cases in [`App`]. No handler touches SQL or a provider.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, double_option};
use super::{Success, success};
use crate::app::{App, AppError};
use crate::app::{ModelPatch, NewModel, NewPrompt, PromptPatch};
use crate::domain::{Model, ModelId, Prompt, PromptId, ProviderKind};

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// `{"model": …}`
#[derive(Debug, Serialize)]
pub struct OneModel {
    pub model: Model,
    /// What would keep the model from running on this server (a key it lacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `{"models": […]}`
#[derive(Debug, Serialize)]
pub struct Models {
    pub models: Vec<Model>,
}

/// `{"prompt": …}`
#[derive(Debug, Serialize)]
pub struct OnePrompt {
    pub prompt: Prompt,
}

/// `{"prompts": […]}`
#[derive(Debug, Serialize)]
pub struct Prompts {
    pub prompts: Vec<Prompt>,
}

/// `{"id": …}` of a deleted row.
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub id: i64,
}

/// The one conflict a model write can meet is its name (unique among live models); say so
/// instead of quoting the database's constraint message.
fn name_taken(err: AppError, name: Option<&str>) -> ApiError {
    match (err, name) {
        (AppError::Conflict(_), Some(name)) => {
            ApiError::Conflict(format!("a model named '{name}' already exists"))
        }
        (err, _) => err.into(),
    }
}

/// A model to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateModel {
    pub name: String,
    /// openai, openrouter, openai-compatible or mock
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The model's name at the provider.
    pub model: String,
    /// temperature, maxTokens, maxConcurrency, rpm, tpm, baseUrl, latencyMs, failRate, …
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    #[serde(default = "yes")]
    pub active: bool,
}

/// Changes to a model; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateModel {
    pub name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    pub active: Option<bool>,
}

/// Creates a model (201).
#[utoipa::path(post, path = "/api/models", tag = "catalog", request_body = CreateModel,
    responses((status = 201, body = super::openapi::OneModelDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 409, body = super::openapi::ErrorDoc, description = "the name is taken")))]
pub async fn create_model(
    State(app): State<App>,
    ApiJson(body): ApiJson<CreateModel>,
) -> ApiResult<(StatusCode, Json<Success<OneModel>>)> {
    let name = body.name.clone();
    let model = app
        .create_model(NewModel {
            name: body.name,
            provider: body.provider,
            model: body.model,
            params: body.params,
            active: body.active,
        })
        .await
        .map_err(|err| name_taken(err, Some(&name)))?;
    let warnings = app.model_warnings(&model);
    Ok((StatusCode::CREATED, success(OneModel { model, warnings })))
}

/// Every model that is not deleted.
#[utoipa::path(get, path = "/api/models", tag = "catalog",
    responses((status = 200, body = super::openapi::ModelsDoc), (status = 401, body = super::openapi::ErrorDoc)))]
pub async fn list_models(State(app): State<App>) -> ApiResult<Json<Success<Models>>> {
    Ok(success(Models {
        models: app.models().await?,
    }))
}

/// One model.
#[utoipa::path(get, path = "/api/models/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::OneModelDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn get_model(
    State(app): State<App>,
    ApiPath(id): ApiPath<ModelId>,
) -> ApiResult<Json<Success<OneModel>>> {
    Ok(success(OneModel {
        model: app.model(id).await?,
        warnings: Vec::new(),
    }))
}

/// Changes a model; deactivating it skips its queued jobs.
#[utoipa::path(patch, path = "/api/models/{id}", tag = "catalog", params(("id" = i64, Path)),
    request_body = UpdateModel,
    responses((status = 200, body = super::openapi::OneModelDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc)))]
pub async fn update_model(
    State(app): State<App>,
    ApiPath(id): ApiPath<ModelId>,
    ApiJson(body): ApiJson<UpdateModel>,
) -> ApiResult<Json<Success<OneModel>>> {
    let patch = ModelPatch {
        name: body.name,
        provider: body.provider,
        model: body.model,
        params: body.params,
        active: body.active,
    };
    let name = patch.name.clone();
    let model = app
        .update_model(id, patch)
        .await
        .map_err(|err| name_taken(err, name.as_deref()))?;
    let warnings = app.model_warnings(&model);
    Ok(success(OneModel { model, warnings }))
}

/// Deletes a model (its history stays) and skips its queued jobs.
#[utoipa::path(delete, path = "/api/models/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::DeletedDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn delete_model(
    State(app): State<App>,
    ApiPath(id): ApiPath<ModelId>,
) -> ApiResult<Json<Success<Deleted>>> {
    app.delete_model(id).await?;
    Ok(success(Deleted { id }))
}

/// A prompt to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePrompt {
    pub text: String,
    /// Default: every model active when each batch is enqueued (models added later join).
    pub model_ids: Option<Vec<i64>>,
    /// Runs per batch, 1 to 1000 (default 1).
    #[serde(default = "one")]
    pub runs: i32,
    #[serde(default = "yes")]
    pub active: bool,
    /// A cron expression (in TIMEZONE); default: the global CRON_SCHEDULE.
    pub schedule: Option<String>,
}

/// Changes to a prompt; absent fields stay as they are, `"schedule": null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePrompt {
    pub text: Option<String>,
    /// Run it on exactly these models from now on.
    pub model_ids: Option<Vec<i64>>,
    /// `true`: run it on every model active when each batch is enqueued (not with `modelIds`).
    pub all_models: Option<bool>,
    pub runs: Option<i32>,
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
}

/// Creates a prompt (201).
#[utoipa::path(post, path = "/api/prompts", tag = "catalog", request_body = CreatePrompt,
    responses((status = 201, body = super::openapi::OnePromptDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc, description = "an unknown model id")))]
pub async fn create_prompt(
    State(app): State<App>,
    ApiJson(body): ApiJson<CreatePrompt>,
) -> ApiResult<(StatusCode, Json<Success<OnePrompt>>)> {
    let prompt = app
        .create_prompt(NewPrompt {
            text: body.text,
            model_ids: body.model_ids,
            runs: body.runs,
            active: body.active,
            schedule: body.schedule,
        })
        .await?;
    Ok((StatusCode::CREATED, success(OnePrompt { prompt })))
}

/// Every prompt that is not deleted.
#[utoipa::path(get, path = "/api/prompts", tag = "catalog",
    responses((status = 200, body = super::openapi::PromptsDoc), (status = 401, body = super::openapi::ErrorDoc)))]
pub async fn list_prompts(State(app): State<App>) -> ApiResult<Json<Success<Prompts>>> {
    Ok(success(Prompts {
        prompts: app.prompts().await?,
    }))
}

/// One prompt.
#[utoipa::path(get, path = "/api/prompts/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::OnePromptDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn get_prompt(
    State(app): State<App>,
    ApiPath(id): ApiPath<PromptId>,
) -> ApiResult<Json<Success<OnePrompt>>> {
    Ok(success(OnePrompt {
        prompt: app.prompt(id).await?,
    }))
}

/// Changes a prompt; deactivating it skips its queued jobs.
#[utoipa::path(patch, path = "/api/prompts/{id}", tag = "catalog", params(("id" = i64, Path)),
    request_body = UpdatePrompt,
    responses((status = 200, body = super::openapi::OnePromptDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn update_prompt(
    State(app): State<App>,
    ApiPath(id): ApiPath<PromptId>,
    ApiJson(body): ApiJson<UpdatePrompt>,
) -> ApiResult<Json<Success<OnePrompt>>> {
    if body.all_models == Some(false) && body.model_ids.is_none() {
        return Err(AppError::BadInput(
            "allModels: false needs modelIds, the models to run it on".into(),
        )
        .into());
    }
    let patch = PromptPatch {
        text: body.text,
        model_ids: body.model_ids,
        all_models: body.all_models == Some(true),
        runs: body.runs,
        active: body.active,
        schedule: body.schedule,
    };
    Ok(success(OnePrompt {
        prompt: app.update_prompt(id, patch).await?,
    }))
}

/// Deletes a prompt (its history stays) and skips its queued jobs.
#[utoipa::path(delete, path = "/api/prompts/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::DeletedDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn delete_prompt(
    State(app): State<App>,
    ApiPath(id): ApiPath<PromptId>,
) -> ApiResult<Json<Success<Deleted>>> {
    app.delete_prompt(id).await?;
    Ok(success(Deleted { id }))
}
