//! `models add | list | edit | remove | import`: the models prompts run on, through the
//! model use cases of [`App`]. The provider is checked here with the other values a user
//! types, so a wrong one is a one-line error (exit 1) that lists the valid names.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::app::{App, AppError, ImportScope};
use crate::app::{ModelPatch, NewModel};
use crate::domain::{Model, ModelId, ProviderKind};

use super::table::{Align, Table, cell};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Add a model
    Add {
        /// A unique name, used by prompts and import files
        #[arg(long)]
        name: String,
        /// Who answers: openai, openrouter, openai-compatible or mock
        #[arg(long)]
        provider: String,
        /// The model's name at the provider, e.g. gpt-4o-mini
        #[arg(long)]
        model: String,
        #[command(flatten)]
        params: ParamArgs,
        /// Add it switched off (no jobs are created for it)
        #[arg(long)]
        inactive: bool,
    },
    /// List the models
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Change a model; what is not given stays as it is
    Edit {
        id: ModelId,
        /// A new name
        #[arg(long)]
        name: Option<String>,
        /// A new provider: openai, openrouter, openai-compatible or mock
        #[arg(long)]
        provider: Option<String>,
        /// A new model name at the provider
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        params: ParamArgs,
        /// Switch it on
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Switch it off: its queued jobs are skipped, no new ones are created
        #[arg(long)]
        inactive: bool,
    },
    /// Remove a model: its answers stay, its queued jobs are skipped
    Remove { id: ModelId },
    /// Create or update the models of a YAML or JSON file, matched by name (see `prompts
    /// import` for the format); the file's prompts are checked but not imported
    Import { file: PathBuf },
}

/// A model's params: `--params` sets them all, `--param` one at a time.
#[derive(Debug, clap::Args)]
pub struct ParamArgs {
    /// One param as key=value; the value is read as JSON when it parses (60, 0.3, true,
    /// {"top_p": 0.9}), else as text. Repeatable. On edit it changes only that key, and
    /// key=null removes it. Keys: temperature, maxTokens, seed, extra, maxConcurrency, rpm,
    /// tpm, price ({"input": 2, "output": 8, "cachedInput": 0.5}, USD per million tokens),
    /// budgetUsdPerDay; for openai-compatible endpoint (a name the operator declared: OLLAMA for
    /// OLLAMA_BASE_URL and OLLAMA_API_KEY) or baseUrl (an endpoint without a key); for mock
    /// latencyMs and failRate
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub param: Vec<(String, Value)>,
    /// All params as one JSON object (replaces the current ones on edit)
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
}

impl ParamArgs {
    fn is_empty(&self) -> bool {
        self.param.is_empty() && self.params.is_none()
    }

    /// The params to store: `--params` (or `base`) with each `--param` applied on top.
    fn apply(self, base: &Value) -> anyhow::Result<Value> {
        let mut map = match self.params {
            Some(json) => match serde_json::from_str(&json).context("--params")? {
                Value::Object(map) => map,
                _ => anyhow::bail!("--params must be a JSON object"),
            },
            None => match base {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            },
        };
        for (key, value) in self.param {
            if value.is_null() {
                map.remove(&key);
            } else {
                map.insert(key, value);
            }
        }
        Ok(Value::Object(map))
    }
}

fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, not '{text}'"))?;
    if key.trim().is_empty() {
        return Err(format!("expected KEY=VALUE, not '{text}'"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.trim().to_owned(), value))
}

fn provider(text: &str) -> anyhow::Result<ProviderKind> {
    Ok(text.parse::<ProviderKind>()?)
}

pub async fn run(app: &App, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Add {
            name,
            provider: kind,
            model,
            params,
            inactive,
        } => {
            let new = NewModel {
                name,
                provider: provider(&kind)?,
                model,
                params: params.apply(&Value::Null)?,
                active: !inactive,
            };
            let name = new.name.clone();
            let model = app
                .create_model(new)
                .await
                .map_err(|err| name_taken(err, Some(&name)))?;
            outln!("added {}", describe(&model))?;
            for warning in app.model_warnings(&model) {
                eprintln!("warning: {warning}");
            }
        }
        ModelsCommand::List { json } => {
            let models = app.models().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&models)?)?;
            } else {
                print_table(&models)?;
            }
        }
        ModelsCommand::Edit {
            id,
            name,
            provider: kind,
            model,
            params,
            active,
            inactive,
        } => {
            let params = if params.is_empty() {
                None
            } else {
                Some(params.apply(&app.model(id).await?.params)?)
            };
            let patch = ModelPatch {
                name,
                provider: kind.as_deref().map(provider).transpose()?,
                model,
                params,
                active: (active || inactive).then_some(active),
            };
            if patch == ModelPatch::default() {
                anyhow::bail!(
                    "nothing to change: give at least one of --name, --provider, --model, --param, --params, --active, --inactive"
                );
            }
            let name = patch.name.clone();
            let model = app
                .update_model(id, patch)
                .await
                .map_err(|err| name_taken(err, name.as_deref()))?;
            outln!("updated {}", describe(&model))?;
        }
        ModelsCommand::Remove { id } => {
            app.delete_model(id).await?;
            outln!("removed model {id}; its queued jobs are skipped, its answers stay")?;
        }
        ModelsCommand::Import { file } => {
            return super::catalog::import(app, &file, ImportScope::Models).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The database's words for a taken name ("UNIQUE constraint failed: models.name") are not
/// a user's: the only unique column of a model is its name.
fn name_taken(err: AppError, name: Option<&str>) -> anyhow::Error {
    match (err, name) {
        (AppError::Conflict(_), Some(name)) => {
            anyhow::anyhow!("a model named '{name}' already exists")
        }
        (err, _) => err.into(),
    }
}

fn describe(model: &Model) -> String {
    format!(
        "model {} '{}' ({} {}{})",
        model.id,
        model.name,
        model.provider,
        model.model,
        if model.active { "" } else { ", inactive" }
    )
}

fn print_table(models: &[Model]) -> anyhow::Result<()> {
    if models.is_empty() {
        outln!("no models yet: add one with `promptq models add` or `promptq models import FILE`")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("name", Align::Left),
        ("provider", Align::Left),
        ("model", Align::Left),
        ("active", Align::Left),
        ("params", Align::Left),
    ]);
    for model in models {
        table.push(vec![
            model.id.to_string(),
            model.name.clone(),
            model.provider.to_string(),
            model.model.clone(),
            if model.active { "yes" } else { "no" }.to_owned(),
            cell(&model.params.to_string(), 60),
        ]);
    }
    table.print()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_json_when_they_parse_and_text_otherwise() {
        assert_eq!(
            parse_param("latencyMs=60"),
            Ok(("latencyMs".into(), json!(60)))
        );
        assert_eq!(
            parse_param("baseUrl=http://localhost:11434/v1"),
            Ok(("baseUrl".into(), json!("http://localhost:11434/v1")))
        );
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), json!("b=c"))));
        assert!(parse_param("novalue").is_err());
    }

    #[test]
    fn single_params_merge_into_the_current_ones() {
        let args = ParamArgs {
            param: vec![("rpm".into(), json!(60)), ("seed".into(), Value::Null)],
            params: None,
        };
        let merged = args
            .apply(&json!({"seed": 1, "temperature": 0.2}))
            .expect("merge");
        assert_eq!(merged, json!({"temperature": 0.2, "rpm": 60}));
        let replaced = ParamArgs {
            param: vec![],
            params: Some(r#"{"rpm": 1}"#.into()),
        }
        .apply(&json!({"seed": 1}))
        .expect("replace");
        assert_eq!(replaced, json!({"rpm": 1}));
    }
}
