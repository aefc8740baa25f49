//! The models and prompts promptq runs: create, read, update, delete, with their checks.

use chrono::Utc;

use crate::domain::{Model, ModelId, Prompt, PromptId, ProviderKind};
use crate::schedule::Schedule;
use crate::store::{ModelPatch, NewModel, NewPrompt, PromptPatch};

use super::{App, AppError, AppResult};

/// Refuses params with a name promptq does not know (a typo would silently do nothing).
pub(super) fn check_param_names(params: &serde_json::Value) -> AppResult<()> {
    crate::domain::spec::check_param_names(params)
        .map_err(|err| AppError::BadInput(format!("params: {err}")))
}

impl App {
    // ---- models

    pub async fn create_model(&self, new: NewModel) -> AppResult<Model> {
        check_param_names(&new.params)?;
        self.check_model(&new.name, new.provider, &new.model, &new.params)?;
        Ok(self.store().model_insert(&new, Utc::now()).await?)
    }

    /// What would keep `model` from running in this process (a key it lacks), for a warning
    /// where it is written: its jobs would wait, unclaimed, until a process with it runs.
    pub fn model_warnings(&self, model: &Model) -> Vec<String> {
        self.providers()
            .cannot_run(model)
            .filter(|_| model.active)
            .map(|reason| {
                format!(
                    "model '{}' cannot run here: {reason}; its jobs will stay queued until a \
                     worker that has it runs",
                    model.name
                )
            })
            .into_iter()
            .collect()
    }

    pub async fn models(&self) -> AppResult<Vec<Model>> {
        Ok(self.store().model_list().await?)
    }

    pub async fn model(&self, id: ModelId) -> AppResult<Model> {
        self.store()
            .model_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("model {id} not found")))
    }

    pub async fn update_model(&self, id: ModelId, patch: ModelPatch) -> AppResult<Model> {
        let current = self.model(id).await?;
        // Only params being written are checked by name: an older row keeps its own.
        if let Some(params) = &patch.params {
            check_param_names(params)?;
        }
        self.check_model(
            patch.name.as_deref().unwrap_or(&current.name),
            patch.provider.unwrap_or(current.provider),
            patch.model.as_deref().unwrap_or(&current.model),
            patch.params.as_ref().unwrap_or(&current.params),
        )?;
        self.store()
            .model_update(id, &patch, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("model {id} not found")))
    }

    pub async fn delete_model(&self, id: ModelId) -> AppResult<()> {
        if self.store().model_delete(id, Utc::now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("model {id} not found")))
        }
    }

    // ---- prompts

    pub async fn create_prompt(&self, new: NewPrompt) -> AppResult<Prompt> {
        self.check_prompt(Some(&new.text), Some(new.runs), new.schedule.as_deref())?;
        Ok(self.store().prompt_insert(&new, Utc::now()).await?)
    }

    pub async fn prompts(&self) -> AppResult<Vec<Prompt>> {
        Ok(self.store().prompt_list().await?)
    }

    pub async fn prompt(&self, id: PromptId) -> AppResult<Prompt> {
        self.store()
            .prompt_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("prompt {id} not found")))
    }

    pub async fn update_prompt(&self, id: PromptId, patch: PromptPatch) -> AppResult<Prompt> {
        if patch.all_models && patch.model_ids.is_some() {
            return Err(AppError::BadInput(
                "give either a model list or all models, not both".into(),
            ));
        }
        self.check_prompt(
            patch.text.as_deref(),
            patch.runs,
            patch.schedule.as_ref().and_then(|s| s.as_deref()),
        )?;
        self.store()
            .prompt_update(id, &patch, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("prompt {id} not found")))
    }

    pub async fn delete_prompt(&self, id: PromptId) -> AppResult<()> {
        if self.store().prompt_delete(id, Utc::now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("prompt {id} not found")))
        }
    }

    pub(super) fn check_prompt(
        &self,
        text: Option<&str>,
        runs: Option<i32>,
        schedule: Option<&str>,
    ) -> AppResult<()> {
        if let Some(text) = text {
            if text.trim().is_empty() {
                return Err(AppError::BadInput("text must not be empty".into()));
            }
            if text.len() > 100_000 {
                return Err(AppError::BadInput(
                    "text must be at most 100000 bytes".into(),
                ));
            }
        }
        if let Some(runs) = runs
            && !(1..=1000).contains(&runs)
        {
            return Err(AppError::BadInput("runs must be between 1 and 1000".into()));
        }
        if let Some(expr) = schedule {
            Schedule::parse(expr, self.config().timezone)
                .map_err(|err| AppError::BadInput(format!("schedule: {err}")))?;
        }
        Ok(())
    }

    /// A model's values, and its params against the operator's endpoints (a key goes only to
    /// its own URL).
    pub(crate) fn check_model(
        &self,
        name: &str,
        provider: ProviderKind,
        model: &str,
        params: &serde_json::Value,
    ) -> AppResult<()> {
        if name.trim().is_empty() {
            return Err(AppError::BadInput("name must not be empty".into()));
        }
        if model.trim().is_empty() {
            return Err(AppError::BadInput("model must not be empty".into()));
        }
        let spec = crate::domain::ModelSpec::read(params);
        self.providers()
            .check_params(provider, &spec)
            .map_err(|err| AppError::BadInput(format!("params: {err}")))?;
        spec.check()
            .map_err(|err| AppError::BadInput(format!("params: {err}")))
    }
}
