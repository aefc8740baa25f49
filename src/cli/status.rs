//! `status`: the counts of the matching jobs and one page of them, as a table or as the JSON
//! of `GET /api/jobs/status` (both come from the same use case, [`App::status_answer`]).

use std::process::ExitCode;

use crate::app::{App, StatusQuery, StatusReport, counted};
use crate::app::{JobFilter, Page};
use crate::domain::{BatchKey, JobId, JobStatus, ModelId, PromptId};

use super::table::{Align, Table, cell, inert, or_dash};

/// Filters and paging of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this job (an unknown id is an error, exit code 1)
    #[arg(long)]
    pub job_id: Option<JobId>,
    /// Only jobs of this batch (YYYY-MM-DD or YYYY-MM-DDTHH:MM)
    #[arg(long)]
    pub batch_key: Option<BatchKey>,
    /// Only jobs of this prompt
    #[arg(long)]
    pub prompt_id: Option<PromptId>,
    /// Only jobs on this model
    #[arg(long)]
    pub model_id: Option<ModelId>,
    /// Only jobs in this state: queued, processing, submitted, succeeded, failed or skipped
    #[arg(long)]
    pub status: Option<JobStatus>,
    /// Jobs to list (the counts always cover every matching job); at most 1000
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Jobs to skip before the listed ones
    #[arg(long, default_value_t = 0)]
    pub offset: i64,
    /// Print the JSON of GET /api/jobs/status instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Longest error message shown in the table; `--json` has them whole.
const ERROR_WIDTH: usize = 60;
/// Longest prompt text shown in the table.
const PROMPT_WIDTH: usize = 32;

pub async fn status(app: &App, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let query = StatusQuery {
        filter: JobFilter {
            job_id: args.job_id,
            batch_key: args.batch_key.map(String::from),
            prompt_id: args.prompt_id,
            model_id: args.model_id,
            status: args.status,
        },
        page: Page {
            limit: args.limit,
            offset: args.offset,
        },
    };
    let answer = app.status_answer(&query).await?;
    if let Some(id) = args.job_id
        && answer.report.summary.total == 0
    {
        anyhow::bail!("job {id} not found");
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&answer)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_report(app, &answer.report, query.page).await?;
    if let Some(alerts) = answer.alerts.filter(|a| a.pending > 0 || a.failed > 0) {
        outln!(
            "alerts: {} waiting for delivery, {} failed (delivered: {})",
            alerts.pending,
            alerts.failed,
            alerts.delivered
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_report(app: &App, report: &StatusReport, page: Page) -> anyhow::Result<()> {
    let s = &report.summary;
    outln!(
        "{}: {} queued, {} processing, {}{} succeeded, {} failed, {} skipped",
        counted(s.total, "job", "jobs"),
        s.queued,
        s.processing,
        // Only batch mode has submitted jobs: the line stays as it was without it.
        match s.submitted {
            0 => String::new(),
            n => format!("{n} submitted (in a provider batch), "),
        },
        s.succeeded,
        s.failed,
        s.skipped
    )?;
    let w = &report.workers;
    if w.live > 0 {
        outln!(
            "{}: {} of {} slots calling a model, {} waiting for a slot",
            counted(w.live, "worker", "workers"),
            w.running,
            w.slots,
            counted(w.waiting_for_slot, "claimed job", "claimed jobs")
        )?;
    }
    if report.expired_leases > 0 {
        outln!(
            "{} lost their worker (lease expired); a running worker will rescue them",
            counted(report.expired_leases, "processing job", "processing jobs")
        )?;
    }
    for pause in &report.pauses {
        outln!(
            "paused: {} until {} ({})",
            pause.scope,
            pause
                .until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cell(&pause.reason, PAUSE_REASON_WIDTH)
        )?;
    }
    print_spend(app, report).await?;
    for blocked in report.blocked.iter().filter(|b| b.by_budget()) {
        outln!(
            "stopped: model '{}' (id {}): {}; {} queued",
            blocked.model_name,
            blocked.model_id,
            blocked.reason,
            blocked.queued
        )?;
    }
    for blocked in report.blocked.iter().filter(|b| !b.by_budget()) {
        let waiting = match blocked.queued {
            0 => "its jobs would wait unclaimed".to_owned(),
            1 => "1 queued job waits unclaimed until it can".to_owned(),
            n => format!("{n} queued jobs wait unclaimed until it can"),
        };
        outln!(
            "blocked: model '{}' (id {}) cannot run here: {}; {waiting} (set it, then restart the worker)",
            blocked.model_name,
            blocked.model_id,
            blocked.reason,
        )?;
    }
    for batch in &report.provider_batches {
        outln!("{}", super::show::provider_batch_line(batch))?;
    }
    if report.jobs.is_empty() {
        if s.total > 0 {
            outln!("no jobs at offset {}", page.offset)?;
        }
        return Ok(());
    }
    // Names read better than ids; one query each, whatever the page size.
    let models = app.model_names().await?;
    let prompts: std::collections::HashMap<PromptId, String> = app
        .prompts()
        .await?
        .into_iter()
        .map(|prompt| (prompt.id, prompt.text))
        .collect();
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("prompt", Align::Left),
        ("model", Align::Left),
        ("run", Align::Right),
        ("batch", Align::Left),
        ("version", Align::Left),
        ("status", Align::Left),
        ("attempts", Align::Right),
        ("error", Align::Left),
    ]);
    for job in &report.jobs {
        let prompt = match prompts.get(&job.prompt_id) {
            Some(text) => format!("{} {}", job.prompt_id, cell(text, PROMPT_WIDTH)),
            None => job.prompt_id.to_string(),
        };
        table.push(vec![
            job.id.to_string(),
            prompt,
            models
                .get(&job.model_id)
                .cloned()
                .unwrap_or_else(|| job.model_id.to_string()),
            job.run_index.to_string(),
            job.batch_key.clone(),
            // The prompt version the job answers: the first characters of its text's hash.
            or_dash(
                job.prompt_version
                    .as_deref()
                    .map(|v| v.get(..8).unwrap_or(v)),
            ),
            match &job.provider_batch_id {
                Some(remote) => format!("{} ({})", job.status, inert(remote)),
                None => job.status.to_string(),
            },
            attempts_cell(job),
            or_dash(job.error_message.as_deref().map(|e| cell(e, ERROR_WIDTH))),
        ]);
    }
    table.print()?;
    let first = page.offset + 1;
    let last = page.offset + report.jobs.len() as i64;
    if last < s.total {
        outln!(
            "jobs {first}–{last} of {}; see more with --offset {last}",
            s.total
        )?;
    } else if page.offset > 0 {
        outln!("jobs {first}–{last} of {}", s.total)?;
    }
    Ok(())
}

/// Today's spending, by model, beside the daily budget; nothing when nothing is known.
async fn print_spend(app: &App, report: &StatusReport) -> anyhow::Result<()> {
    let spend = &report.spent_today;
    if spend.per_model.is_empty() && spend.budget_usd_per_day.is_none() {
        return Ok(());
    }
    let budget = spend.budget_usd_per_day.map_or_else(String::new, |usd| {
        format!(" of BUDGET_USD_PER_DAY ${usd:.4}")
    });
    let models = app.model_names().await?;
    let by_model: Vec<String> = spend
        .per_model
        .iter()
        .map(|m| {
            let name = models
                .get(&m.model_id)
                .cloned()
                .unwrap_or_else(|| m.model_id.to_string());
            format!("{name} ${:.4}", m.cost_usd)
        })
        .collect();
    outln!(
        "spent today: ${:.4}{budget}{}",
        spend.total_usd,
        if by_model.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_model.join(", "))
        }
    )?;
    Ok(())
}

/// The longest pause reason a status line shows.
const PAUSE_REASON_WIDTH: usize = 160;

/// `spent/allowed`, and the rate-limited claims apart: `3/3, 8 rate-limited`.
fn attempts_cell(job: &crate::domain::Job) -> String {
    let spent = format!("{}/{}", job.attempt_count, job.max_attempts);
    if job.rate_limited_count > 0 {
        format!("{spent}, {} rate-limited", job.rate_limited_count)
    } else {
        spent
    }
}
