//! Pieces of the listing pages: names for ids, the jobs table, the pager, query parsing, and
//! the count of calls in flight.

use std::collections::HashMap;

use chrono::Utc;
use maud::{Markup, html};

use super::PageError;
use super::html::{badge, progress_bar, scroll, truncate};
use crate::app::{App, JobFilter, MAX_PAGE, Page, StatusQuery};
use crate::domain::{BatchKey, Job, JobStatus, ModelId, PromptId, Summary};
use crate::store::workers::WorkerTotals;

/// Jobs per page of a listing.
pub(super) const PAGE_SIZE: i64 = 100;

/// Prompt texts and model names by id, to show jobs by what they are.
pub(super) struct Names {
    prompts: HashMap<PromptId, String>,
    models: HashMap<ModelId, String>,
}

impl Names {
    pub(super) async fn load(app: &App) -> Result<Names, PageError> {
        let (prompts, models) = tokio::try_join!(app.prompts(), app.models())?;
        Ok(Names {
            prompts: prompts.into_iter().map(|p| (p.id, p.text)).collect(),
            models: models.into_iter().map(|m| (m.id, m.name)).collect(),
        })
    }

    /// Removed prompts and models are no longer listed: they show as their id.
    pub(super) fn prompt(&self, id: PromptId) -> String {
        self.prompts
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("prompt #{id} (removed)"))
    }

    pub(super) fn model(&self, id: ModelId) -> String {
        self.models
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("model #{id} (removed)"))
    }
}

/// `processing` jobs split by whether a worker still holds them. A job is `processing` from
/// its claim on (calling its model, or waiting for a free slot of its worker: the workers'
/// own counts, [`workers_line`], tell the two apart); one whose lease expired belongs to a
/// worker that died and only waits for a rescue, so counting it as in progress would show
/// work that nobody is doing.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Processing {
    pub in_progress: i64,
    pub stalled: i64,
}

/// [`Processing`] by batch key, over the `processing` jobs of `batch_key` (all batches when
/// `None`). At most [`MAX_PAGE`] of them are read: far more than the workers ever hold.
pub(super) async fn processing_by_batch(
    app: &App,
    batch_key: Option<&str>,
) -> Result<HashMap<String, Processing>, PageError> {
    let listed = app
        .status(&StatusQuery {
            filter: JobFilter {
                batch_key: batch_key.map(str::to_owned),
                status: Some(JobStatus::Processing),
                ..JobFilter::default()
            },
            page: Page {
                limit: MAX_PAGE,
                offset: 0,
            },
        })
        .await?;
    let now = Utc::now();
    let mut by_batch: HashMap<String, Processing> = HashMap::new();
    for job in listed.jobs {
        let entry = by_batch.entry(job.batch_key).or_default();
        match job.lease_expires_at {
            Some(until) if until <= now => entry.stalled += 1,
            _ => entry.in_progress += 1,
        }
    }
    Ok(by_batch)
}

/// The counts of a batch in words, with its progress bar.
pub(super) fn summary_line(s: &Summary, processing: Processing) -> Markup {
    html! {
        div.summary {
            (progress_bar(s)) " "
            span #summary {
                (s.total) " jobs: " (s.queued) " queued, " (processing.in_progress) " in progress, "
                @if processing.stalled > 0 { (processing.stalled) " stalled (waiting for a rescue), " }
                @if s.submitted > 0 { (s.submitted) " submitted (in a provider batch), " }
                (s.succeeded) " succeeded, " (s.failed) " failed, " (s.skipped) " skipped"
            }
        }
    }
}

/// What the workers report: calls in flight, and claimed jobs that wait for a free slot.
pub(super) fn workers_line(workers: &WorkerTotals) -> Markup {
    html! {
        p #workers {
            @if workers.live == 0 {
                "No worker is running."
            } @else {
                strong { "Workers: " }
                (workers.live) @if workers.live == 1 { " process, " } @else { " processes, " }
                (workers.running) " of " (workers.slots) " slots calling a model, "
                (workers.waiting_for_slot) " claimed "
                @if workers.waiting_for_slot == 1 { "job waits" } @else { "jobs wait" }
                " for a slot."
            }
        }
    }
}

/// A table of jobs; `failures` adds the batch, the error and a retry button per job. A
/// prompt links to its answers in the job's batch, side by side across models.
pub(super) fn jobs_table(jobs: &[Job], names: &Names, failures: bool) -> Markup {
    scroll(html! {
        table.jobs {
            tr {
                th { "Job" }
                @if failures { th { "Batch" } }
                th { "Prompt" } th { "Model" } th.n { "Run" } th { "Status" }
                th.n { "Attempts" } th { "Error" }
                @if failures { th {} }
            }
            @for job in jobs {
                tr {
                    td.nw { a.job href={ "/jobs/" (job.id) } { "#" (job.id) } }
                    @if failures {
                        td.nw { a href={ "/batches/" (job.batch_key) } { (job.batch_key) } }
                    }
                    td {
                        a href={ "/batches/" (job.batch_key) "/prompts/" (job.prompt_id) } {
                            (truncate(&names.prompt(job.prompt_id), 80))
                        }
                    }
                    td { (names.model(job.model_id)) }
                    td.n { (job.run_index) }
                    td {
                        (badge(job.status))
                        @if let Some(remote) = &job.provider_batch_id { " " code.muted { (remote) } }
                    }
                    td.n { (job.attempt_count) "/" (job.max_attempts) }
                    td.err { (truncate(&crate::domain::one_line(job.error_message.as_deref().unwrap_or("")), 200)) }
                    @if failures {
                        td {
                            form.inline method="post" action={ "/jobs/" (job.id) "/retry" } {
                                button type="submit" { "Retry" }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Previous/next links when the listing has more than one page; `base` is the listing's path
/// and query so far, ending in `?` or `&` (escaped here, like every other value).
pub(super) fn pager(base: &str, offset: i64, total: i64) -> Markup {
    html! {
        @if total > PAGE_SIZE {
            p.pager {
                "Jobs " (offset + 1) "–" ((offset + PAGE_SIZE).min(total)) " of " (total) ". "
                @if offset > 0 {
                    a href={ (base) "offset=" ((offset - PAGE_SIZE).max(0)) } { "previous" } " "
                }
                @if offset + PAGE_SIZE < total {
                    a href={ (base) "offset=" (offset + PAGE_SIZE) } { "next" }
                }
            }
        }
    }
}

pub(super) fn parse_batch_key(text: &str) -> Result<BatchKey, PageError> {
    text.parse::<BatchKey>()
        .map_err(|err| PageError::BadRequest(err.to_string()))
}

pub(super) fn parse_offset(text: Option<&str>) -> Result<i64, PageError> {
    match text {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .ok_or_else(|| PageError::BadRequest("offset must be a whole number ≥ 0".into())),
    }
}
