//! The pages that reach past the overview: every batch (newest first, a page at a time), and
//! one prompt's answers in one batch, side by side across models.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use maud::html;
use serde::Deserialize;

use super::html::{badge, progress_bar, running, scroll};
use super::listing::{Names, parse_batch_key, parse_offset};
use super::{PageError, PageResult, page};
use crate::app::{App, JobFilter, MAX_PAGE, Page, ResponseFilter, StatusQuery};
use crate::domain::{JobId, PromptId};

/// Batches per page of `/batches`.
const BATCHES_PER_PAGE: i64 = 50;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    offset: Option<String>,
}

/// `GET /batches`: every batch, newest first. The store lists the newest `n`, so a later page
/// reads the ones before it too; batches older than the newest [`MAX_PAGE`] are not listed.
pub(super) async fn list(
    State(app): State<App>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query.map_err(|err| PageError::BadRequest(err.body_text()))?;
    let offset = parse_offset(query.offset.as_deref())?;
    if offset >= MAX_PAGE {
        return Err(PageError::BadRequest(format!(
            "only the newest {MAX_PAGE} batches are listed"
        )));
    }
    let wanted = (offset + BATCHES_PER_PAGE + 1).min(MAX_PAGE);
    let overview = app.overview(wanted, 0).await?;
    let more = overview.batches.len() as i64 > offset + BATCHES_PER_PAGE;
    let shown: Vec<_> = overview
        .batches
        .iter()
        .skip(offset as usize)
        .take(BATCHES_PER_PAGE as usize)
        .collect();
    let body = html! {
        h1 { "Batches" }
        @if shown.is_empty() {
            p.muted { "No batch here." }
        } @else {
            (scroll(html! { table #all-batches {
                tr {
                    th { "Batch" } th { "Progress" } th.n { "Total" } th.n { "Succeeded" }
                    th.n { "Failed" }
                }
                @for batch in &shown {
                    @let s = &batch.summary;
                    tr {
                        td.nw { a href={ "/batches/" (batch.batch_key) } { (batch.batch_key) } }
                        td { (progress_bar(s)) }
                        td.n { (s.total) } td.n { (s.succeeded) } td.n { (s.failed) }
                    }
                }
            } }))
        }
        @if offset > 0 || more {
            p.pager {
                @if offset > 0 {
                    a href={ "/batches?offset=" ((offset - BATCHES_PER_PAGE).max(0)) } { "newer" } " "
                }
                @if more {
                    a href={ "/batches?offset=" (offset + BATCHES_PER_PAGE) } { "older" }
                }
            }
        }
    };
    let refresh = shown.iter().any(|b| running(&b.summary));
    Ok(page(&app, "Batches", refresh, body))
}

/// `GET /batches/{key}/prompts/{id}`: each of the prompt's jobs in the batch, by model and
/// run, with its answer (or where the job stands), in columns that a narrow screen stacks.
pub(super) async fn compare(
    State(app): State<App>,
    Path((key, prompt_id)): Path<(String, String)>,
) -> PageResult {
    let key = parse_batch_key(&key)?;
    let prompt_id: PromptId = prompt_id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::NotFound(format!("no prompt {prompt_id}")))?;
    let jobs_query = StatusQuery {
        filter: JobFilter {
            batch_key: Some(key.to_string()),
            prompt_id: Some(prompt_id),
            ..JobFilter::default()
        },
        page: Page {
            limit: MAX_PAGE,
            offset: 0,
        },
    };
    let responses_filter = ResponseFilter {
        batch_key: Some(key.to_string()),
        prompt_id: Some(prompt_id),
        ..ResponseFilter::default()
    };
    let whole = Page {
        limit: MAX_PAGE,
        offset: 0,
    };
    let (listed, responses, names) = tokio::try_join!(
        async { Ok(app.status(&jobs_query).await?) },
        async { Ok(app.responses(&responses_filter, whole).await?) },
        Names::load(&app),
    )?;
    if listed.jobs.is_empty() {
        return Err(PageError::NotFound(format!(
            "prompt {prompt_id} has no jobs in batch {key}"
        )));
    }
    let answers: HashMap<JobId, _> = responses.iter().map(|r| (r.job_id, r)).collect();
    let mut jobs = listed.jobs;
    jobs.sort_by_key(|job| (job.model_id, job.run_index));
    // The text the batch answered, which may differ from the prompt's text today.
    let asked = responses
        .iter()
        .find_map(|r| r.prompt_text.clone())
        .unwrap_or_else(|| names.prompt(prompt_id));
    let key = key.as_str();
    let body = html! {
        h1 { "Answers in batch " a href={ "/batches/" (key) } { (key) } }
        pre #prompt { (asked) }
        div.answers {
            @for job in &jobs {
                section {
                    h3 {
                        (names.model(job.model_id))
                        @if jobs.iter().any(|other| other.model_id == job.model_id && other.id != job.id) {
                            " · run " (job.run_index)
                        }
                        " " (badge(job.status)) " "
                        a.job href={ "/jobs/" (job.id) } { "#" (job.id) }
                    }
                    @match answers.get(&job.id) {
                        Some(response) => pre.answer { (response.text) },
                        None => p.muted {
                            (job.error_message.as_deref().unwrap_or("No answer yet."))
                        },
                    }
                }
            }
        }
    };
    let refresh = jobs.iter().any(|job| !job.status.is_terminal());
    Ok(page(
        &app,
        &format!("Answers in batch {key}"),
        refresh,
        body,
    ))
}
