//! The dashboard's listing pages: the overview, a batch's jobs with its per-model summary,
//! the failed jobs (newest first).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use maud::html;
use serde::Deserialize;

use super::chart::{model_chart, model_label, success_rate};
use super::html::{count, millis, progress_bar, running, scroll, time};
use super::listing::{
    Names, PAGE_SIZE, jobs_table, pager, parse_batch_key, parse_offset, processing_by_batch,
    summary_line, workers_line,
};
use super::{PageError, PageResult, page};
use crate::app::{App, StatusQuery};
use crate::app::{JobFilter, Page};
use crate::domain::JobStatus;

/// Batches listed on the overview (the others are on `/batches`).
pub(super) const BATCHES_SHOWN: i64 = 20;
/// Batches the model figures cover.
const MODEL_WINDOW: usize = 7;

/// `GET /`.
pub(super) async fn overview(State(app): State<App>) -> PageResult {
    let (overview, processing, workers) = tokio::try_join!(
        async { Ok(app.overview(BATCHES_SHOWN, MODEL_WINDOW).await?) },
        processing_by_batch(&app, None),
        async { Ok(app.workers().await?) },
    )?;
    let failed: i64 = overview.batches.iter().map(|b| b.summary.failed).sum();
    let dash = || "—".to_owned();
    let latency = |ms: Option<i64>| ms.map_or_else(dash, millis);
    let windows = overview.window.len();
    let body = html! {
        h1 { "Overview" }
        (workers_line(&workers))
        @if !overview.pauses.is_empty() {
            h2 { "Paused" }
            (scroll(html! { table {
                tr { th { "What" } th { "Until" } th { "Why" } }
                @for pause in &overview.pauses {
                    tr { td { (pause.scope) } td { (time(pause.until)) } td { (pause.reason) } }
                }
            } }))
        }
        @let spend = &overview.spent_today;
        @if !spend.per_model.is_empty() || spend.budget_usd_per_day.is_some() {
            p #spend {
                strong { "Spent today: " } (format!("${:.4}", spend.total_usd))
                @if let Some(budget) = spend.budget_usd_per_day {
                    " of a daily budget of " (format!("${budget:.4}"))
                }
            }
        }
        @for blocked in overview.blocked.iter().filter(|b| b.by_budget()) {
            p.blocked {
                strong { "Stopped: " }
                "model " (blocked.model_name) ": " (blocked.reason) "; "
                (blocked.queued)
                @if blocked.queued == 1 { " queued job waits." } @else { " queued jobs wait." }
            }
        }
        @for blocked in overview.blocked.iter().filter(|b| !b.by_budget()) {
            p.blocked {
                strong { "Blocked: " }
                "model " (blocked.model_name) " cannot run here (" (blocked.reason) "); "
                (blocked.queued)
                @if blocked.queued == 1 { " queued job waits" } @else { " queued jobs wait" }
                " unclaimed until a worker that has it runs."
            }
        }
        h2 { "Batches" }
        @if overview.batches.is_empty() {
            p.muted { "No batch yet: the first scheduling pass creates one." }
        } @else {
            (scroll(html! { table #batches {
                tr {
                    th { "Batch" } th { "Progress" } th.n { "Total" } th.n { "Queued" }
                    th.n title="Claimed jobs whose worker still holds them: calling a model or waiting for a free slot" { "In progress" }
                    th.n title="Jobs in a provider batch the provider accepted, waiting for its results" { "Submitted" }
                    th.n { "Succeeded" } th.n { "Failed" } th.n { "Skipped" }
                }
                @for batch in &overview.batches {
                    @let s = &batch.summary;
                    @let held = processing.get(&batch.batch_key).copied().unwrap_or_default();
                    tr {
                        td.nw { a href={ "/batches/" (batch.batch_key) } { (batch.batch_key) } }
                        td { (progress_bar(s)) }
                        td.n { (s.total) } td.n { (s.queued) } td.n { (held.in_progress) }
                        td.n { (s.submitted) }
                        td.n { (s.succeeded) }
                        td.n {
                            @if s.failed > 0 {
                                a href={ "/failed?batch=" (batch.batch_key) } { (s.failed) }
                            } @else { "0" }
                        }
                        td.n { (s.skipped) }
                    }
                }
            } }))
            @if overview.batches.len() as i64 >= BATCHES_SHOWN {
                p { a href="/batches" { "All batches" } }
            }
        }
        @if !overview.models.is_empty() {
            h2 { "Models over the last " (windows) " batch" @if windows != 1 { "es" } }
            (model_chart(&overview.models))
            (scroll(html! { table #models {
                tr {
                    th { "Model" } th.n { "Succeeded" } th.n { "Failed" } th.n { "Success rate" }
                    th.n { "p50" } th.n { "p95" }
                }
                @for model in &overview.models {
                    tr {
                        td { (model_label(model)) }
                        td.n { (model.summary.succeeded) }
                        td.n { (model.summary.failed) }
                        td.n { (success_rate(model).map_or_else(dash, |rate| format!("{:.0}%", rate * 100.0))) }
                        td.n { (latency(model.latency_ms.p50)) }
                        td.n { (latency(model.latency_ms.p95)) }
                    }
                }
            } }))
        }
        @if failed > 0 {
            p { a href="/failed" { (failed) " failed job" @if failed != 1 { "s" } " in these batches" } }
        }
    };
    let refresh = overview.batches.iter().any(|b| running(&b.summary));
    Ok(page(&app, "Overview", refresh, body))
}

#[derive(Deserialize)]
pub(super) struct BatchQuery {
    status: Option<String>,
    offset: Option<String>,
}

/// `GET /batches/{key}`.
pub(super) async fn batch(
    State(app): State<App>,
    Path(key): Path<String>,
    query: Result<Query<BatchQuery>, QueryRejection>,
) -> PageResult {
    let key = parse_batch_key(&key)?;
    let Query(query) = query.map_err(|err| PageError::BadRequest(err.body_text()))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<JobStatus>()
                .map_err(|err| PageError::BadRequest(err.to_string()))?,
        ),
    };
    let offset = parse_offset(query.offset.as_deref())?;
    let whole = JobFilter {
        batch_key: Some(key.to_string()),
        ..JobFilter::default()
    };
    let shown = StatusQuery {
        filter: JobFilter {
            status,
            ..whole.clone()
        },
        page: Page {
            limit: PAGE_SIZE,
            offset,
        },
    };
    let (all, listed, names, models, processing) = tokio::try_join!(
        async {
            Ok(app
                .status(&StatusQuery {
                    filter: whole,
                    page: Page {
                        limit: 1,
                        offset: 0,
                    },
                })
                .await?)
        },
        async { Ok(app.status(&shown).await?) },
        Names::load(&app),
        async { Ok(app.model_report(key.as_str()).await?) },
        processing_by_batch(&app, Some(key.as_str())),
    )?;
    if all.summary.total == 0 {
        return Err(PageError::NotFound(format!("batch {key} has no jobs")));
    }
    let key = key.as_str();
    let base = match status {
        Some(status) => format!("/batches/{key}?status={status}&"),
        None => format!("/batches/{key}?"),
    };
    let on = |wanted: Option<JobStatus>| (status == wanted).then_some("on");
    let held = processing.get(key).copied().unwrap_or_default();
    let dash = || "—".to_owned();
    let body = html! {
        h1 { "Batch " (key) }
        (summary_line(&all.summary, held))
        (workers_line(&all.workers))
        @if all.summary.failed > 0 || all.summary.queued > 0 {
            div.actions {
                @if all.summary.failed > 0 {
                    form.inline method="post" action={ "/batches/" (key) "/retry-failed" } {
                        button type="submit" { "Retry all " (all.summary.failed) " failed in this batch" }
                    }
                }
                @if all.summary.queued > 0 {
                    form.inline method="post" action={ "/batches/" (key) "/cancel-queued" } {
                        button type="submit" { "Cancel all " (all.summary.queued) " queued in this batch" }
                    }
                }
            }
        }
        h2 { "Per model" }
        (scroll(html! { table #per-model {
            tr {
                th { "Model" } th.n { "Jobs" } th.n { "Succeeded" } th.n { "Failed" }
                th.n { "Attempts" } th.n { "Tokens" } th.n { "Cost" } th.n { "p50" } th.n { "p95" }
            }
            @for model in &models {
                tr {
                    td { (names.model(model.model_id)) }
                    td.n { (model.summary.total) }
                    td.n { (model.summary.succeeded) }
                    td.n { (model.summary.failed) }
                    td.n { (model.attempts) }
                    td.n { (model.tokens) }
                    td.n { (model.cost_usd.map_or_else(dash, |usd| format!("${usd:.4}"))) }
                    td.n { (model.latency_p50_ms.map_or_else(dash, millis)) }
                    td.n { (model.latency_p95_ms.map_or_else(dash, millis)) }
                }
            }
        } }))
        h2 { "Jobs" }
        p.filters {
            a href={ "/batches/" (key) } class=[on(None)] { "all (" (all.summary.total) ")" }
            @for candidate in JobStatus::ALL {
                a href={ "/batches/" (key) "?status=" (candidate.to_string()) } class=[on(Some(candidate))] {
                    (candidate.to_string()) " (" (count(&all.summary, candidate)) ")"
                }
            }
        }
        (jobs_table(&listed.jobs, &names, false))
        (pager(&base, offset, listed.summary.total))
    };
    let title = format!("Batch {key}");
    Ok(page(&app, &title, running(&all.summary), body))
}

#[derive(Deserialize)]
pub(super) struct FailedQuery {
    batch: Option<String>,
    offset: Option<String>,
}

/// `GET /failed`.
pub(super) async fn failed(
    State(app): State<App>,
    query: Result<Query<FailedQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query.map_err(|err| PageError::BadRequest(err.body_text()))?;
    let batch = match query.batch.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_batch_key(text)?),
    };
    let offset = parse_offset(query.offset.as_deref())?;
    let filter = JobFilter {
        batch_key: batch.as_ref().map(ToString::to_string),
        status: Some(JobStatus::Failed),
        ..JobFilter::default()
    };
    // Newest first: the listing comes oldest first (by id), so the page `offset` from the
    // newest is read from the other end and turned around.
    let total = app.summary(&filter).await?.total;
    let limit = PAGE_SIZE.min(total - offset);
    let listing = StatusQuery {
        filter,
        page: Page {
            limit: limit.max(1),
            offset: (total - offset - PAGE_SIZE).max(0),
        },
    };
    let (mut listed, names, overview) = tokio::try_join!(
        async { Ok(app.status(&listing).await?) },
        Names::load(&app),
        async { Ok(app.overview(BATCHES_SHOWN, 0).await?) },
    )?;
    if limit <= 0 {
        listed.jobs.clear();
    }
    listed.jobs.reverse();
    let with_failures = overview
        .batches
        .iter()
        .filter(|b| b.summary.failed > 0)
        .filter(|b| batch.as_ref().is_none_or(|key| key.as_str() == b.batch_key));
    let base = match &batch {
        Some(key) => format!("/failed?batch={key}&"),
        None => "/failed?".to_owned(),
    };
    let body = html! {
        @match &batch {
            Some(key) => h1 { "Failed jobs of batch " a href={ "/batches/" (key.as_str()) } { (key.as_str()) } },
            None => h1 { "Failed jobs" },
        }
        @for item in with_failures {
            form.inline method="post" action={ "/batches/" (item.batch_key) "/retry-failed" } {
                button type="submit" { "Retry all " (item.summary.failed) " failed in " (item.batch_key) }
            }
            " "
        }
        @if listed.jobs.is_empty() {
            p.muted { "No failed jobs." }
        } @else {
            (jobs_table(&listed.jobs, &names, true))
        }
        (pager(&base, offset, listed.summary.total))
    };
    Ok(page(&app, "Failed jobs", false, body))
}
