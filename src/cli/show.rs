//! `jobs show ID`: one job whole, as a person debugging it wants it: its state, each attempt
//! with its outcome and error class, the tokens and cost of its answer, and the answer itself.

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::app::{App, JobDetail, StoredResponse};
use crate::domain::JobId;
use crate::domain::provider_batch::ProviderBatch;

use super::table::{Align, Table, cell, inert, or_dash};

/// Longest error message an attempt's row shows; the job's last error is shown whole.
const ERROR_WIDTH: usize = 72;

pub async fn show(app: &App, id: JobId, json: bool) -> anyhow::Result<ExitCode> {
    let detail = app.job_detail(id).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&detail)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_job(app, &detail).await?;
    Ok(ExitCode::SUCCESS)
}

fn time(at: Option<DateTime<Utc>>) -> String {
    or_dash(at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

async fn print_job(app: &App, detail: &JobDetail) -> anyhow::Result<()> {
    let job = &detail.job;
    let model = app.model_names().await?.get(&job.model_id).cloned();
    let prompt = app.prompt(job.prompt_id).await.ok().map(|p| p.text);
    outln!(
        "job {}: {}{} ({} of {} attempts spent{})",
        job.id,
        job.status,
        job.provider_batch_id
            .as_deref()
            .map(|remote| format!(" in provider batch {}", inert(remote)))
            .unwrap_or_default(),
        job.attempt_count,
        job.max_attempts,
        if job.rate_limited_count > 0 {
            format!(", {} rate-limited", job.rate_limited_count)
        } else {
            String::new()
        }
    )?;
    outln!(
        "prompt {}: {}",
        job.prompt_id,
        or_dash(prompt.map(|text| cell(&text, 100)))
    )?;
    outln!(
        "model {}: {}",
        job.model_id,
        or_dash(model.as_deref().map(inert))
    )?;
    outln!("batch {}, run {}", inert(&job.batch_key), job.run_index)?;
    outln!(
        "created {}, started {}, finished {}",
        time(Some(job.created_at)),
        time(job.started_at),
        time(job.finished_at)
    )?;
    if let Some(error) = &job.error_message {
        outln!("error: {}", inert(error))?;
    }
    if let Some(batch) = &detail.provider_batch {
        outln!("{}", provider_batch_line(batch))?;
    }
    if !detail.attempts.is_empty() {
        outln!()?;
        let mut table = Table::new(&[
            ("attempt", Align::Right),
            ("outcome", Align::Left),
            ("class", Align::Left),
            ("http", Align::Right),
            ("finished", Align::Left),
            ("error", Align::Left),
        ]);
        for attempt in &detail.attempts {
            table.push(vec![
                attempt.attempt.to_string(),
                attempt.outcome.clone(),
                or_dash(attempt.error_class.as_deref()),
                or_dash(attempt.http_status),
                time(Some(attempt.finished_at)),
                or_dash(
                    attempt
                        .error_message
                        .as_deref()
                        .map(|e| cell(e, ERROR_WIDTH)),
                ),
            ]);
        }
        table.print()?;
    }
    match &detail.response {
        Some(response) => print_answer(response)?,
        None => outln!("\nno answer stored")?,
    }
    Ok(())
}

/// One line on a provider batch: where it is, at the provider and here.
pub fn provider_batch_line(batch: &ProviderBatch) -> String {
    format!(
        "provider batch {} ({} jobs of model {}, batch {}): {}{}{}",
        batch.id,
        batch.request_count,
        batch.model_id,
        inert(&batch.batch_key),
        batch.state,
        batch
            .provider_batch_id
            .as_deref()
            .map(|id| format!(", {} at the provider", inert(id)))
            .unwrap_or_default(),
        batch
            .provider_status
            .as_deref()
            .map(|status| format!(" ({})", inert(status)))
            .unwrap_or_default(),
    )
}

fn print_answer(response: &StoredResponse) -> std::io::Result<()> {
    let tokens = |v: Option<i64>| or_dash(v);
    outln!()?;
    outln!(
        "answer {} from {}, {} ms, finish {}",
        response.id,
        or_dash(response.served_model.as_deref().map(inert)),
        response.latency_ms,
        or_dash(response.finish_reason.as_deref().map(inert))
    )?;
    outln!(
        "tokens: {} prompt, {} completion, {} total; cost: {}",
        tokens(response.prompt_tokens),
        tokens(response.completion_tokens),
        tokens(response.total_tokens),
        response
            .cost_usd
            .map_or_else(|| "not reported".to_owned(), |usd| format!("${usd:.6}"))
    )?;
    outln!()?;
    outln!("{}", inert(response.text.trim_end()))
}
