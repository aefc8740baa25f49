//! Importing a catalog: the models and prompts a team keeps in a file under version control.
//!
//! A [`Catalog`] is the parsed file (YAML or JSON: the format is the face's concern, not this
//! module's). [`App::import_catalog`] validates every item before it writes anything, and
//! reports each problem with its place in the file (`prompts[2].runs: …`). Then it makes the
//! database agree with the file: a model is matched by its name and a prompt by its text; a
//! missing one is created, a different one updated, an equal one left alone. Importing the
//! same file twice therefore changes nothing. An import never deletes: a model or prompt that
//! left the file stays until someone removes it.
//!
//! The writes are not one transaction (the store has no such operation); if the database
//! fails half-way, running the import again finishes the job, since it is idempotent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{App, AppError, AppResult};
use crate::domain::{Model, ModelId, Prompt, ProviderKind};
use crate::store::{ModelPatch, NewModel, NewPrompt, PromptPatch};

/// The file's content: `models:` and `prompts:`, both optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub models: Vec<CatalogModel>,
    #[serde(default)]
    pub prompts: Vec<CatalogPrompt>,
}

/// A model as the file states it; matched to the database by `name`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    pub name: String,
    /// Kept as text so that a wrong provider is reported with the item's place in the file.
    pub provider: String,
    pub model: String,
    /// A JSON object; omitted means `{}`.
    #[serde(default)]
    pub params: serde_json::Value,
    #[serde(default = "yes")]
    pub active: bool,
}

/// A prompt as the file states it; matched to the database by its exact `text`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPrompt {
    pub text: String,
    /// Model names; omitted means every model active when each batch is created.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default = "one")]
    pub runs: i32,
    /// A cron expression; omitted means the global schedule.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

/// Which sections of the file an import applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportScope {
    /// The `models:` section only.
    Models,
    /// Both sections, models first, since prompts name their models.
    Everything,
}

/// What an import did, per kind of item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub models: ImportCounts,
    pub prompts: ImportCounts,
    /// What would keep the file's models from running in this process (a key it lacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// At most this many problems are listed; the rest are counted (the error is one line).
const MAX_LISTED_PROBLEMS: usize = 5;

impl App {
    /// Makes the database agree with `catalog` (see the module documentation).
    pub async fn import_catalog(
        &self,
        catalog: Catalog,
        scope: ImportScope,
    ) -> AppResult<ImportReport> {
        let existing_models = self.models().await?;
        let (models, prompts) = self.validate_catalog(catalog, &existing_models)?;
        let mut report = ImportReport::default();

        let mut by_name: BTreeMap<String, Model> = existing_models
            .into_iter()
            .map(|model| (model.name.clone(), model))
            .collect();
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        for new in models {
            let model = match by_name.get(&new.name) {
                None => {
                    report.models.created += 1;
                    self.create_model(new).await?
                }
                Some(current) => match model_patch(current, &new) {
                    None => {
                        report.models.unchanged += 1;
                        continue;
                    }
                    Some(patch) => {
                        report.models.updated += 1;
                        self.update_model(current.id, patch).await?
                    }
                },
            };
            by_name.insert(model.name.clone(), model);
        }
        report.warnings = names
            .iter()
            .filter_map(|name| by_name.get(name))
            .flat_map(|model| self.model_warnings(model))
            .collect();
        if scope == ImportScope::Models {
            return Ok(report);
        }

        // A prompt without a model list runs on every model active at each batch, as when it
        // is created.
        let mut by_text: BTreeMap<String, Prompt> = BTreeMap::new();
        for prompt in self.prompts().await? {
            // Several live prompts may share a text; the oldest one is the file's.
            by_text.entry(prompt.text.clone()).or_insert(prompt);
        }
        for item in prompts {
            let model_ids = item.models.as_ref().map(|names| {
                sorted(
                    names
                        .iter()
                        .filter_map(|name| by_name.get(name).map(|m| m.id)),
                )
            });
            match by_text.get(&item.text) {
                None => {
                    self.create_prompt(NewPrompt {
                        text: item.text.clone(),
                        model_ids,
                        runs: item.runs,
                        active: item.active,
                        schedule: item.schedule.clone(),
                    })
                    .await?;
                    report.prompts.created += 1;
                }
                Some(current) => match prompt_patch(current, &item, model_ids) {
                    None => report.prompts.unchanged += 1,
                    Some(patch) => {
                        self.update_prompt(current.id, patch).await?;
                        report.prompts.updated += 1;
                    }
                },
            }
        }
        Ok(report)
    }

    /// Checks every item; all problems are reported at once, each with its place in the file.
    /// Prompts keep their model names: they become ids once the models are written.
    fn validate_catalog(
        &self,
        catalog: Catalog,
        existing_models: &[Model],
    ) -> AppResult<(Vec<NewModel>, Vec<CatalogPrompt>)> {
        let mut problems = Vec::new();
        let mut models = Vec::new();
        let mut model_names: BTreeMap<String, usize> = BTreeMap::new();
        for (index, item) in catalog.models.into_iter().enumerate() {
            let at = format!("models[{index}]");
            if let Some(first) = first_place(&mut model_names, &item.name, index) {
                problems.push(format!(
                    "{at}.name: '{}' is already used by models[{first}]",
                    item.name
                ));
            }
            let provider = match item.provider.parse::<ProviderKind>() {
                Ok(provider) => provider,
                Err(err) => {
                    problems.push(format!("{at}.provider: {err}"));
                    continue;
                }
            };
            let params = match item.params {
                serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
                params => params,
            };
            let before = problems.len();
            for (field, value) in [("name", &item.name), ("model", &item.model)] {
                if value.trim().is_empty() {
                    problems.push(format!("{at}.{field}: must not be empty"));
                }
            }
            if let Err(err) = crate::domain::spec::check_param_names(&params) {
                problems.push(format!("{at}.params: {err}"));
            }
            let spec = crate::domain::ModelSpec::read(&params);
            if let Err(err) = self.providers().check_params(provider, &spec) {
                problems.push(format!("{at}.params: {err}"));
            }
            if problems.len() > before {
                continue;
            }
            models.push(NewModel {
                name: item.name,
                provider,
                model: item.model,
                params,
                active: item.active,
            });
        }

        let known: BTreeSet<&str> = existing_models
            .iter()
            .map(|model| model.name.as_str())
            .chain(model_names.keys().map(String::as_str))
            .collect();
        let mut prompts = Vec::new();
        let mut texts: BTreeMap<String, usize> = BTreeMap::new();
        for (index, item) in catalog.prompts.into_iter().enumerate() {
            let at = format!("prompts[{index}]");
            let before = problems.len();
            if let Some(first) = first_place(&mut texts, &item.text, index) {
                problems.push(format!("{at}.text: the same text as prompts[{first}]"));
            }
            // The same checks as `create_prompt`, one field at a time to name the field.
            let checks = [
                ("text", self.check_prompt(Some(&item.text), None, None)),
                ("runs", self.check_prompt(None, Some(item.runs), None)),
                (
                    "schedule",
                    self.check_prompt(None, None, item.schedule.as_deref()),
                ),
            ];
            for (field, result) in checks {
                if let Err(err) = result {
                    problems.push(field_problem(&at, field, &err.to_string()));
                }
            }
            match &item.models {
                Some(names) if names.is_empty() => problems.push(format!(
                    "{at}.models: must name at least one model (omit it for every active model)"
                )),
                Some(names) => {
                    for (i, name) in names.iter().enumerate() {
                        if !known.contains(name.as_str()) {
                            problems.push(format!(
                                "{at}.models[{i}]: no model named '{name}' in the file or the database"
                            ));
                        }
                    }
                }
                None => {}
            }
            if problems.len() == before {
                prompts.push(item);
            }
        }

        if problems.is_empty() {
            return Ok((models, prompts));
        }
        let count = problems.len();
        let mut message = problems
            .into_iter()
            .take(MAX_LISTED_PROBLEMS)
            .collect::<Vec<_>>()
            .join("; ");
        if count > MAX_LISTED_PROBLEMS {
            message.push_str(&format!(" (and {} more)", count - MAX_LISTED_PROBLEMS));
        }
        Err(AppError::BadInput(format!("nothing imported: {message}")))
    }
}

/// Records where `key` first appeared; for a repeat, that first place.
fn first_place(seen: &mut BTreeMap<String, usize>, key: &str, index: usize) -> Option<usize> {
    match seen.get(key) {
        Some(first) => Some(*first),
        None => {
            seen.insert(key.to_owned(), index);
            None
        }
    }
}

/// `prompts[1].runs: must be …` from `runs must be …`: the field is named once, by its place.
fn field_problem(at: &str, field: &str, message: &str) -> String {
    let message = message
        .strip_prefix(field)
        .map(|rest| rest.trim_start_matches(':').trim_start())
        .unwrap_or(message);
    format!("{at}.{field}: {message}")
}

fn sorted(ids: impl Iterator<Item = ModelId>) -> Vec<ModelId> {
    let mut ids: Vec<ModelId> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The changes that make `current` what the file says, or `None` when it already is.
fn model_patch(current: &Model, wanted: &NewModel) -> Option<ModelPatch> {
    let patch = ModelPatch {
        name: None,
        provider: (current.provider != wanted.provider).then_some(wanted.provider),
        model: (current.model != wanted.model).then(|| wanted.model.clone()),
        params: (current.params != wanted.params).then(|| wanted.params.clone()),
        active: (current.active != wanted.active).then_some(wanted.active),
    };
    (patch != ModelPatch::default()).then_some(patch)
}

/// The changes that make `current` what the file says, or `None` when it already is.
/// `model_ids: None` (no list in the file) means every active model, at each batch.
fn prompt_patch(
    current: &Prompt,
    wanted: &CatalogPrompt,
    model_ids: Option<Vec<ModelId>>,
) -> Option<PromptPatch> {
    let current_ids = sorted(current.model_ids.iter().copied());
    let patch = PromptPatch {
        text: None,
        all_models: model_ids.is_none() && !current.all_models,
        model_ids: model_ids.filter(|ids| current.all_models || current_ids != *ids),
        runs: (current.runs != wanted.runs).then_some(wanted.runs),
        active: (current.active != wanted.active).then_some(wanted.active),
        schedule: (current.schedule != wanted.schedule).then(|| wanted.schedule.clone()),
    };
    (patch != PromptPatch::default()).then_some(patch)
}
