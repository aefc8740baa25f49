//! Pieces of the listing pages: names for ids, the jobs table, the pager, query parsing.

use std::collections::HashMap;

use maud::{Markup, html};

use super::PageError;
use super::html::{badge, progress_bar, truncate};
use crate::app::App;
use crate::domain::{BatchKey, Job, ModelId, PromptId, Summary};

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

/// The counts of a batch in words, with its progress bar.
pub(super) fn summary_line(s: &Summary) -> Markup {
    html! {
        p {
            (progress_bar(s)) " "
            span #summary {
                (s.total) " jobs: " (s.queued) " queued, " (s.processing) " running, "
                (s.succeeded) " succeeded, " (s.failed) " failed, " (s.skipped) " skipped"
            }
        }
    }
}

/// A table of jobs; `failures` adds the batch, the error and a retry button per job.
pub(super) fn jobs_table(jobs: &[Job], names: &Names, failures: bool) -> Markup {
    html! {
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
                    td { a.job href={ "/jobs/" (job.id) } { "#" (job.id) } }
                    @if failures {
                        td.nw { a href={ "/batches/" (job.batch_key) } { (job.batch_key) } }
                    }
                    td { (truncate(&names.prompt(job.prompt_id), 80)) }
                    td { (names.model(job.model_id)) }
                    td.n { (job.run_index) }
                    td { (badge(job.status)) }
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
    }
}

/// Previous/next links when the listing has more than one page; `base` is the listing's path
/// and query so far, ending in `?` or `&` (escaped here, like every other value).
pub(super) fn pager(base: &str, offset: i64, total: i64) -> Markup {
    html! {
        @if total > PAGE_SIZE {
            p {
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
