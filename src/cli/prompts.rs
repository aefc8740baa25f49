//! `prompts add | list | edit | remove | import`: the prompts that run on a schedule, through
//! the prompt use cases of [`App`].

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::{App, ImportScope};
use crate::app::{NewPrompt, PromptPatch};
use crate::domain::{ModelId, Prompt, PromptId};

use super::table::{Align, Table, cell, or_dash};

#[derive(Debug, clap::Subcommand)]
pub enum PromptsCommand {
    /// Add a prompt
    Add {
        /// The prompt's text; `-` reads it from standard input
        text: String,
        /// A model to run it on (repeatable); without one, every model active when each
        /// batch is enqueued (models added later join the next batch)
        #[arg(long = "model-id", value_name = "ID")]
        model_ids: Vec<ModelId>,
        /// Runs per batch on each model
        #[arg(long, default_value_t = 1)]
        runs: i32,
        /// Its own cron expression (5 fields, in TIMEZONE), instead of CRON_SCHEDULE
        #[arg(long, value_name = "CRON")]
        schedule: Option<String>,
        /// Add it switched off (no jobs are created for it)
        #[arg(long)]
        inactive: bool,
    },
    /// List the prompts
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Change a prompt; what is not given stays as it is
    Edit {
        id: PromptId,
        /// A new text; `-` reads it from standard input
        #[arg(long)]
        text: Option<String>,
        /// Run it on exactly these models (repeatable)
        #[arg(long = "model-id", value_name = "ID", conflicts_with = "all_models")]
        model_ids: Vec<ModelId>,
        /// Run it on every model active when each batch is enqueued, from the next batch on
        /// (models added later join)
        #[arg(long)]
        all_models: bool,
        /// Runs per batch on each model
        #[arg(long)]
        runs: Option<i32>,
        /// Its own cron expression (5 fields, in TIMEZONE)
        #[arg(long, value_name = "CRON", conflicts_with = "global_schedule")]
        schedule: Option<String>,
        /// Drop its own schedule and follow CRON_SCHEDULE
        #[arg(long)]
        global_schedule: bool,
        /// Switch it on
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Switch it off: its queued jobs are skipped, no new ones are created
        #[arg(long)]
        inactive: bool,
    },
    /// Remove a prompt: its answers stay, its queued jobs are skipped
    Remove { id: PromptId },
    /// Create or update the models and prompts of a YAML or JSON file, so a team can keep
    /// them in git
    ///
    /// The file has two lists, both optional. `models:` items have name, provider, model,
    /// params (an object) and active (default true). `prompts:` items have text, models (a list
    /// of model names; omitted: every model active when each batch is created), runs (default 1), schedule (a cron
    /// expression; omitted: CRON_SCHEDULE) and active (default true). Models are matched by
    /// name and prompts by their exact text: missing ones are created, different ones
    /// updated, and nothing is ever deleted, so importing the same file twice changes nothing.
    /// The whole file is checked before anything is written.
    ///
    /// The format follows the extension (.yaml, .yml, .json), else the content.
    Import { file: PathBuf },
}

/// Reads `-` as standard input, so long prompts need no shell quoting.
fn text_arg(text: String) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text);
    }
    let mut read = String::new();
    std::io::stdin()
        .read_to_string(&mut read)
        .context("cannot read the prompt from standard input")?;
    // `echo` and here-strings end with a line break that is not part of the prompt.
    Ok(read.trim_end().to_owned())
}

pub async fn run(app: &App, command: PromptsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PromptsCommand::Add {
            text,
            model_ids,
            runs,
            schedule,
            inactive,
        } => {
            let prompt = app
                .create_prompt(NewPrompt {
                    text: text_arg(text)?,
                    model_ids: (!model_ids.is_empty()).then_some(model_ids),
                    runs,
                    active: !inactive,
                    schedule,
                })
                .await?;
            outln!("added {}", describe(&prompt))?;
        }
        PromptsCommand::List { json } => {
            let prompts = app.prompts().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&prompts)?)?;
            } else {
                print_table(app, &prompts).await?;
            }
        }
        PromptsCommand::Edit {
            id,
            text,
            model_ids,
            all_models,
            runs,
            schedule,
            global_schedule,
            active,
            inactive,
        } => {
            let patch = PromptPatch {
                text: text.map(text_arg).transpose()?,
                model_ids: (!model_ids.is_empty()).then_some(model_ids),
                all_models,
                runs,
                active: (active || inactive).then_some(active),
                schedule: if global_schedule {
                    Some(None)
                } else {
                    schedule.map(Some)
                },
            };
            if patch == PromptPatch::default() {
                anyhow::bail!(
                    "nothing to change: give at least one of --text, --model-id, --all-models, --runs, --schedule, --global-schedule, --active, --inactive"
                );
            }
            let prompt = app.update_prompt(id, patch).await?;
            outln!("updated {}", describe(&prompt))?;
        }
        PromptsCommand::Remove { id } => {
            app.delete_prompt(id).await?;
            outln!("removed prompt {id}; its queued jobs are skipped, its answers stay")?;
        }
        PromptsCommand::Import { file } => {
            return super::catalog::import(app, &file, ImportScope::Everything).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(prompt: &Prompt) -> String {
    let models = if prompt.all_models {
        "all models, now ".to_owned()
    } else {
        String::new()
    };
    format!(
        "prompt {} ({}{} model{} × {} run{}{}{}): {}",
        prompt.id,
        models,
        prompt.model_ids.len(),
        if prompt.model_ids.len() == 1 { "" } else { "s" },
        prompt.runs,
        if prompt.runs == 1 { "" } else { "s" },
        prompt
            .schedule
            .as_deref()
            .map(|s| format!(", schedule '{s}'"))
            .unwrap_or_default(),
        if prompt.active { "" } else { ", inactive" },
        cell(&prompt.text, 60)
    )
}

async fn print_table(app: &App, prompts: &[Prompt]) -> anyhow::Result<()> {
    if prompts.is_empty() {
        outln!(
            "no prompts yet: add one with `promptq prompts add` or `promptq prompts import FILE`"
        )?;
        return Ok(());
    }
    let names: HashMap<ModelId, String> = app.model_names().await?;
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("active", Align::Left),
        ("runs", Align::Right),
        ("models", Align::Left),
        ("schedule", Align::Left),
        ("last batch", Align::Left),
        ("text", Align::Left),
    ]);
    for prompt in prompts {
        let models = prompt
            .model_ids
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
            .collect::<Vec<_>>()
            .join(",");
        // Which models an all-models prompt runs on changes with the catalog: say so.
        let models = if prompt.all_models {
            format!("all: {models}")
        } else {
            models
        };
        table.push(vec![
            prompt.id.to_string(),
            if prompt.active { "yes" } else { "no" }.to_owned(),
            prompt.runs.to_string(),
            cell(&models, 40),
            prompt
                .schedule
                .clone()
                .unwrap_or_else(|| "global".to_owned()),
            or_dash(prompt.last_batch_key.as_deref()),
            cell(&prompt.text, 60),
        ]);
    }
    table.print()?;
    Ok(())
}
