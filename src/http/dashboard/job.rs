//! One job's page (its attempts and stored response) and the retry and cancel actions.
//!
//! Actions answer with a redirect to the page that shows their effect (post/redirect/get), so
//! that reloading that page never posts again.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;

use super::html::{badge, millis, opt_time, scroll, time};
use super::listing::parse_batch_key;
use super::{PageError, PageResult, page};
use crate::app::JobSelector;
use crate::app::{App, AppError};
use crate::domain::{JobId, JobStatus};

fn parse_job_id(text: &str) -> Result<JobId, PageError> {
    // Anything but a job id names no job: 404, like an id that does not exist.
    text.parse::<JobId>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::NotFound(format!("no job {text}")))
}

/// `GET /jobs/{id}`.
pub(super) async fn show(State(app): State<App>, Path(id): Path<String>) -> PageResult {
    let id = parse_job_id(&id)?;
    let detail = app.job_detail(id).await?;
    let job = &detail.job;
    // The prompt or model may have been removed since: the job's history stays.
    let (prompt, model) = tokio::join!(app.prompt(job.prompt_id), app.model(job.model_id));
    let prompt = known(prompt)?;
    let model = known(model)?;

    let dash = || "—".to_owned();
    let or_dash = |value: Option<String>| value.unwrap_or_else(dash);
    // A retried job keeps the message of the attempt that failed it until it runs again.
    let error_term = match job.status {
        JobStatus::Failed | JobStatus::Skipped => "Error",
        _ => "Last error",
    };
    let body = html! {
        h1 { "Job #" (id) " " (badge(job.status)) }
        @if matches!(job.status, JobStatus::Failed | JobStatus::Skipped) {
            form.inline #retry method="post" action={ "/jobs/" (id) "/retry" } {
                button.primary type="submit" { "Retry" }
            }
        }
        // A job waiting in a provider batch can be cancelled too.
        @if job.status == JobStatus::Queued || detail.provider_batch.is_some() {
            form.inline #cancel method="post" action={ "/jobs/" (id) "/cancel" } {
                button type="submit" { "Cancel" }
            }
        }
        dl {
            dt { "Batch" }
            dd { a href={ "/batches/" (job.batch_key) } { (job.batch_key) } ", run " (job.run_index) }
            dt { "Model" }
            dd {
                @match &model {
                    Some(model) => {
                        (model.name) " "
                        span.muted { "(" (model.provider.to_string()) " · " (model.model) ")" }
                    },
                    None => { "model #" (job.model_id) " (removed)" },
                }
            }
            dt { "Attempts" } dd {
                (job.attempt_count) " of " (job.max_attempts)
                @if job.rate_limited_count > 0 { ", and " (job.rate_limited_count) " rate-limited" }
            }
            @if let Some(version) = &job.prompt_version {
                // The text this job sends was fixed when its batch was created.
                dt { "Prompt version" }
                dd { code title=(version) { (version.get(..12).unwrap_or(version)) } }
            }
            dt { "Scheduled for" } dd { (time(job.scheduled_for)) }
            @if job.status == JobStatus::Queued {
                dt { "Due" } dd { (time(job.next_attempt_at)) }
            }
            @if let Some(batch) = &detail.provider_batch {
                // Its answer comes when the provider's Batch API is done with the whole batch.
                dt { "Provider batch" }
                dd #provider-batch {
                    (batch.id) " · " (batch.state.as_str())
                    @if let Some(remote) = &batch.provider_batch_id { " · " code { (remote) } }
                    @if let Some(status) = &batch.provider_status { " (" (status) ")" }
                }
            }
            dt { "Started" } dd { (opt_time(job.started_at)) }
            dt { "Finished" } dd { (opt_time(job.finished_at)) }
            @if let Some(error) = &job.error_message {
                dt { (error_term) } dd { span.err { (error) } }
            }
        }
        h2 { "Prompt" }
        @match &prompt {
            Some(prompt) => pre #prompt { (prompt.text) },
            None => p.muted { "prompt #" (job.prompt_id) " (removed)" },
        }
        p {
            a #compare href={ "/batches/" (job.batch_key) "/prompts/" (job.prompt_id) } {
                "Every model's answer to this prompt in batch " (job.batch_key)
            }
        }
        h2 { "Attempts" }
        @if detail.attempts.is_empty() {
            p.muted { "No attempt yet." }
        } @else {
            (scroll(html! { table #attempts {
                tr {
                    th.n { "#" } th { "Started" } th { "Finished" } th.n { "Took" }
                    th { "Outcome" } th.n { "HTTP" } th { "Class" } th { "Error" }
                }
                @for attempt in &detail.attempts {
                    tr {
                        td.n { (attempt.attempt) }
                        td { (opt_time(attempt.started_at)) }
                        td { (time(attempt.finished_at)) }
                        td.n {
                            (attempt.started_at.map_or_else(dash, |start| {
                                millis((attempt.finished_at - start).num_milliseconds().max(0))
                            }))
                        }
                        td { (attempt.outcome) }
                        td.n { (attempt.http_status.map(|s| s.to_string()).unwrap_or_default()) }
                        td { (attempt.error_class.as_deref().unwrap_or("")) }
                        td.err { (attempt.error_message.as_deref().unwrap_or("")) }
                    }
                }
            } }))
        }
        h2 { "Response" }
        @match &detail.response {
            None => p.muted { "No stored response." },
            Some(response) => {
                dl {
                    dt { "Stored" } dd { (time(response.created_at)) }
                    dt { "Latency" } dd { (millis(response.latency_ms)) }
                    dt { "Served model" } dd { (or_dash(response.served_model.clone())) }
                    dt { "Finish reason" } dd { (or_dash(response.finish_reason.clone())) }
                    dt { "Tokens" }
                    dd {
                        (or_dash(response.prompt_tokens.map(|n| n.to_string()))) " prompt · "
                        (or_dash(response.completion_tokens.map(|n| n.to_string()))) " completion · "
                        (or_dash(response.total_tokens.map(|n| n.to_string()))) " total"
                    }
                    dt { "Cost" } dd { (or_dash(response.cost_usd.map(|usd| format!("${usd:.6}")))) }
                }
                pre #response { (response.text) }
            },
        }
    };
    let refresh = matches!(
        job.status,
        JobStatus::Queued | JobStatus::Processing | JobStatus::Submitted
    );
    Ok(page(&app, &format!("Job #{id}"), refresh, body))
}

/// A lookup's value, `None` for a row that is gone, the error otherwise.
fn known<T>(found: Result<T, AppError>) -> Result<Option<T>, PageError> {
    match found {
        Ok(value) => Ok(Some(value)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// `POST /jobs/{id}/retry`: a failed or skipped job back to `queued`.
pub(super) async fn retry(State(app): State<App>, Path(id): Path<String>) -> PageResult {
    let id = parse_job_id(&id)?;
    app.retry(&JobSelector::One(id)).await?;
    Ok(Redirect::to(&format!("/jobs/{id}")).into_response())
}

/// `POST /batches/{key}/retry-failed`: every failed job of the batch back to `queued`.
pub(super) async fn retry_batch(State(app): State<App>, Path(key): Path<String>) -> PageResult {
    let key = parse_batch_key(&key)?;
    app.retry(&JobSelector::Batch {
        batch_key: key.to_string(),
        status: Some(JobStatus::Failed),
    })
    .await?;
    Ok(Redirect::to(&format!("/batches/{key}")).into_response())
}

/// `POST /jobs/{id}/cancel`: a queued job to `skipped`.
pub(super) async fn cancel(State(app): State<App>, Path(id): Path<String>) -> PageResult {
    let id = parse_job_id(&id)?;
    app.cancel(&JobSelector::One(id)).await?;
    Ok(Redirect::to(&format!("/jobs/{id}")).into_response())
}

/// `POST /batches/{key}/cancel-queued`: every queued job of the batch to `skipped`.
pub(super) async fn cancel_batch(State(app): State<App>, Path(key): Path<String>) -> PageResult {
    let key = parse_batch_key(&key)?;
    app.cancel(&JobSelector::Batch {
        batch_key: key.to_string(),
        status: Some(JobStatus::Queued),
    })
    .await?;
    Ok(Redirect::to(&format!("/batches/{key}")).into_response())
}
