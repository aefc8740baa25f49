//! `batches`: the newest batches, each with its jobs by status, its tokens and its cost.

use std::process::ExitCode;

use crate::app::App;

use super::table::{Align, Table, inert};

/// How many batches, and how to print them.
#[derive(Debug, clap::Args)]
pub struct BatchesArgs {
    /// Batches to list, newest first; at most 1000
    #[arg(long, default_value_t = 10)]
    pub limit: i64,
    /// Print JSON (a list of {batchKey, summary, tokens, costUsd}) instead of a table
    #[arg(long)]
    pub json: bool,
}

pub async fn batches(app: &App, args: BatchesArgs) -> anyhow::Result<ExitCode> {
    let batches = app.batch_figures(args.limit).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&batches)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if batches.is_empty() {
        outln!("no batches yet: `promptq cron` creates the current one")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        ("batch", Align::Left),
        ("jobs", Align::Right),
        ("queued", Align::Right),
        ("processing", Align::Right),
        ("submitted", Align::Right),
        ("succeeded", Align::Right),
        ("failed", Align::Right),
        ("skipped", Align::Right),
        ("tokens", Align::Right),
        ("cost", Align::Right),
    ]);
    for batch in &batches {
        let s = &batch.summary;
        table.push(vec![
            inert(&batch.batch_key),
            s.total.to_string(),
            s.queued.to_string(),
            s.processing.to_string(),
            s.submitted.to_string(),
            s.succeeded.to_string(),
            s.failed.to_string(),
            s.skipped.to_string(),
            batch.tokens.total.to_string(),
            batch
                .cost_usd
                .map_or_else(|| "-".to_owned(), |usd| format!("${usd:.4}")),
        ]);
    }
    table.print()?;
    Ok(ExitCode::SUCCESS)
}
