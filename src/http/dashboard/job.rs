//! One job's page (its attempts and stored response) and the retry actions.
//!
//! Actions answer with a redirect to the page that shows their effect (post/redirect/get), so
//! that reloading that page never posts again.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};

use super::html::{Esc, badge, millis, opt_time, time};
use super::listing::parse_batch_key;
use super::{PageError, PageResult, page};
use crate::app::{App, AppError};
use crate::domain::{JobId, JobStatus};
use crate::store::JobSelector;

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

    let mut body = format!("<h1>Job #{id} {}</h1>", badge(job.status));
    if matches!(job.status, JobStatus::Failed | JobStatus::Skipped) {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/jobs/{id}/retry\" class=\"inline\" id=\"retry\">\
             <button type=\"submit\" class=\"primary\">Retry</button></form>"
        );
    }
    body.push_str("<dl>");
    let mut item = |term: &str, value: String| {
        let _ = write!(body, "<dt>{term}</dt><dd>{value}</dd>");
    };
    item(
        "Batch",
        format!(
            "<a href=\"/batches/{k}\">{k}</a>, run {}",
            job.run_index,
            k = Esc(&job.batch_key)
        ),
    );
    item(
        "Model",
        match &model {
            Some(model) => format!(
                "{} <span class=\"muted\">({} · {})</span>",
                Esc(&model.name),
                model.provider,
                Esc(&model.model)
            ),
            None => format!("model #{} (removed)", job.model_id),
        },
    );
    item(
        "Attempts",
        format!("{} of {}", job.attempt_count, job.max_attempts),
    );
    if let Some(version) = &job.prompt_version {
        // The text this job sends was fixed when its batch was created.
        item(
            "Prompt version",
            format!(
                "<code title=\"{0}\">{1}</code>",
                Esc(version),
                Esc(version.get(..12).unwrap_or(version))
            ),
        );
    }
    item("Scheduled for", time(job.scheduled_for));
    if job.status == JobStatus::Queued {
        item("Due", time(job.next_attempt_at));
    }
    item("Started", opt_time(job.started_at));
    item("Finished", opt_time(job.finished_at));
    if let Some(error) = &job.error_message {
        // A retried job keeps the message of the attempt that failed it until it runs again.
        let term = match job.status {
            JobStatus::Failed | JobStatus::Skipped => "Error",
            _ => "Last error",
        };
        item(term, format!("<span class=\"err\">{}</span>", Esc(error)));
    }
    body.push_str("</dl><h2>Prompt</h2>");
    match &prompt {
        Some(prompt) => {
            let _ = write!(body, "<pre id=\"prompt\">{}</pre>", Esc(&prompt.text));
        }
        None => {
            let _ = write!(
                body,
                "<p class=\"muted\">prompt #{} (removed)</p>",
                job.prompt_id
            );
        }
    }

    body.push_str("<h2>Attempts</h2>");
    if detail.attempts.is_empty() {
        body.push_str("<p class=\"muted\">No attempt yet.</p>");
    } else {
        body.push_str(
            "<table id=\"attempts\"><tr><th class=\"n\">#</th><th>Started</th><th>Finished</th>\
             <th class=\"n\">Took</th><th>Outcome</th><th class=\"n\">HTTP</th><th>Class</th>\
             <th>Error</th></tr>",
        );
        for attempt in &detail.attempts {
            let took = attempt
                .started_at
                .map(|start| millis((attempt.finished_at - start).num_milliseconds().max(0)))
                .unwrap_or_else(|| "—".to_owned());
            let _ = write!(
                body,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{took}</td>\
                 <td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                attempt.attempt,
                opt_time(attempt.started_at),
                time(attempt.finished_at),
                Esc(&attempt.outcome),
                attempt
                    .http_status
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                Esc(attempt.error_class.as_deref().unwrap_or("")),
                Esc(attempt.error_message.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</table>");
    }

    body.push_str("<h2>Response</h2>");
    match &detail.response {
        None => body.push_str("<p class=\"muted\">No stored response.</p>"),
        Some(response) => {
            body.push_str("<dl>");
            let mut item = |term: &str, value: String| {
                let _ = write!(body, "<dt>{term}</dt><dd>{value}</dd>");
            };
            let or_dash = |value: Option<String>| value.unwrap_or_else(|| "—".to_owned());
            item("Stored", time(response.created_at));
            item("Latency", millis(response.latency_ms));
            item(
                "Served model",
                or_dash(response.served_model.as_deref().map(|m| Esc(m).to_string())),
            );
            item(
                "Finish reason",
                or_dash(
                    response
                        .finish_reason
                        .as_deref()
                        .map(|m| Esc(m).to_string()),
                ),
            );
            item(
                "Tokens",
                format!(
                    "{} prompt · {} completion · {} total",
                    or_dash(response.prompt_tokens.map(|n| n.to_string())),
                    or_dash(response.completion_tokens.map(|n| n.to_string())),
                    or_dash(response.total_tokens.map(|n| n.to_string()))
                ),
            );
            item(
                "Cost",
                or_dash(response.cost_usd.map(|usd| format!("${usd:.6}"))),
            );
            body.push_str("</dl>");
            let _ = write!(body, "<pre id=\"response\">{}</pre>", Esc(&response.text));
        }
    }
    let refresh = matches!(job.status, JobStatus::Queued | JobStatus::Processing);
    Ok(page(&app, &format!("Job #{id}"), refresh, &body))
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
