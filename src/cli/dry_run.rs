//! `run --dry-run`: the jobs the next run would create per model and their estimated cost, as
//! a table with a total or as JSON. Writes nothing.

use std::process::ExitCode;

use crate::app::{App, DryRun, counted};
use crate::domain::BatchKey;

use super::table::{Align, Table, inert};

pub async fn dry_run(
    app: &App,
    batch_key: Option<BatchKey>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let estimate = app.dry_run(batch_key).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&estimate)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    print(&estimate)?;
    Ok(ExitCode::SUCCESS)
}

fn print(estimate: &DryRun) -> anyhow::Result<()> {
    outln!(
        "dry run: batch {} would create {} for {} (nothing was enqueued)",
        estimate.batch_key,
        counted(estimate.jobs, "job", "jobs"),
        counted(estimate.prompt_count, "prompt", "prompts")
    )?;
    if estimate.models.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&[
        ("model", Align::Left),
        ("jobs", Align::Right),
        ("in/answer", Align::Right),
        ("out/answer", Align::Right),
        ("estimated from", Align::Left),
        ("est. cost", Align::Right),
    ]);
    let tokens = |n: Option<f64>| n.map_or_else(|| "?".to_owned(), |n| format!("{n:.0}"));
    for model in &estimate.models {
        let mut basis = Vec::new();
        if model.from_same_prompt > 0 {
            basis.push(format!("{} same prompt", model.from_same_prompt));
        }
        if model.from_model_average > 0 {
            basis.push(format!("{} model average", model.from_model_average));
        }
        if model.unknown > 0 {
            basis.push(format!("{} no answers yet", model.unknown));
        }
        let cost = match model.cost_usd {
            Some(usd) if model.batch => format!("${usd:.4} (batch)"),
            Some(usd) => format!("${usd:.4}"),
            None if model.unknown < model.jobs => "no price".to_owned(),
            None => "unknown".to_owned(),
        };
        table.push(vec![
            inert(&model.model_name),
            model.jobs.to_string(),
            tokens(model.prompt_tokens),
            tokens(model.completion_tokens),
            basis.join(", "),
            cost,
        ]);
    }
    table.print()?;
    if estimate.unknown_jobs > 0 {
        outln!(
            "total: at least ${:.4} ({} of unknown cost: no price or no earlier answer)",
            estimate.cost_usd,
            counted(estimate.unknown_jobs, "job", "jobs")
        )?;
    } else {
        outln!("total: ${:.4}", estimate.cost_usd)?;
    }
    Ok(())
}
