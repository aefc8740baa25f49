//! The dashboard's listing pages: the overview, a batch's jobs, the failed jobs.

use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::chart::{model_chart, model_label, success_rate};
use super::html::{Esc, count, millis, progress_bar, running, time};
use super::listing::{
    Names, PAGE_SIZE, jobs_table, pager, parse_batch_key, parse_offset, summary_line,
};
use super::{PageError, PageResult, page};
use crate::app::{App, StatusQuery};
use crate::domain::JobStatus;
use crate::store::{JobFilter, Page};

/// Batches listed on the overview.
const BATCHES_SHOWN: i64 = 20;
/// Batches the model figures cover.
const MODEL_WINDOW: usize = 7;

/// `GET /`.
pub(super) async fn overview(State(app): State<App>) -> PageResult {
    let overview = app.overview(BATCHES_SHOWN, MODEL_WINDOW).await?;
    let mut body = String::from("<h1>Overview</h1>");
    if !overview.pauses.is_empty() {
        body.push_str("<h2>Paused</h2><table><tr><th>What</th><th>Until</th><th>Why</th></tr>");
        for pause in &overview.pauses {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                Esc(&pause.scope),
                time(pause.until),
                Esc(&pause.reason)
            );
        }
        body.push_str("</table>");
    }

    body.push_str("<h2>Batches</h2>");
    if overview.batches.is_empty() {
        body.push_str(
            "<p class=\"muted\">No batch yet: the first scheduling pass creates one.</p>",
        );
    } else {
        body.push_str(
            "<table id=\"batches\"><tr><th>Batch</th><th>Progress</th><th class=\"n\">Total</th>\
             <th class=\"n\">Queued</th><th class=\"n\">Running</th><th class=\"n\">Succeeded</th>\
             <th class=\"n\">Failed</th><th class=\"n\">Skipped</th></tr>",
        );
        for batch in &overview.batches {
            let key = Esc(&batch.batch_key);
            let s = &batch.summary;
            let failed = if s.failed > 0 {
                format!("<a href=\"/failed?batch={key}\">{}</a>", s.failed)
            } else {
                "0".to_owned()
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"/batches/{key}\">{key}</a></td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{failed}</td><td class=\"n\">{}</td></tr>",
                progress_bar(s),
                s.total,
                s.queued,
                s.processing,
                s.succeeded,
                s.skipped
            );
        }
        body.push_str("</table>");
    }

    if !overview.models.is_empty() {
        let _ = write!(
            body,
            "<h2>Models over the last {} batch{}</h2>",
            overview.window.len(),
            if overview.window.len() == 1 { "" } else { "es" }
        );
        body.push_str(&model_chart(&overview.models));
        body.push_str(
            "<table id=\"models\"><tr><th>Model</th><th class=\"n\">Succeeded</th>\
             <th class=\"n\">Failed</th><th class=\"n\">Success rate</th>\
             <th class=\"n\">p50</th><th class=\"n\">p95</th></tr>",
        );
        for model in &overview.models {
            let rate = success_rate(model)
                .map(|rate| format!("{:.0}%", rate * 100.0))
                .unwrap_or_else(|| "—".to_owned());
            let latency = |ms: Option<i64>| ms.map(millis).unwrap_or_else(|| "—".to_owned());
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{rate}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                Esc(&model_label(model)),
                model.summary.succeeded,
                model.summary.failed,
                latency(model.latency_ms.p50),
                latency(model.latency_ms.p95)
            );
        }
        body.push_str("</table>");
    }
    let failed: i64 = overview.batches.iter().map(|b| b.summary.failed).sum();
    if failed > 0 {
        let _ = write!(
            body,
            "<p><a href=\"/failed\">{failed} failed job{} in these batches</a></p>",
            if failed == 1 { "" } else { "s" }
        );
    }
    let refresh = overview.batches.iter().any(|b| running(&b.summary));
    Ok(page(&app, "Overview", refresh, &body))
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
    let (all, listed, names) = tokio::try_join!(
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
    )?;
    if all.summary.total == 0 {
        return Err(PageError::NotFound(format!("batch {key} has no jobs")));
    }
    let key_html = Esc(key.as_str()).to_string();
    let mut body = format!("<h1>Batch {key_html}</h1>");
    body.push_str(&summary_line(&all.summary));
    if all.summary.failed > 0 {
        let _ = write!(
            body,
            "<div><form method=\"post\" action=\"/batches/{key_html}/retry-failed\" class=\"inline\">\
             <button type=\"submit\">Retry all {} failed in this batch</button></form></div>",
            all.summary.failed
        );
    }
    body.push_str("<p class=\"filters\">");
    let on = |wanted: Option<JobStatus>| {
        if status == wanted {
            " class=\"on\""
        } else {
            ""
        }
    };
    let _ = write!(
        body,
        "<a href=\"/batches/{key_html}\"{}>all ({})</a>",
        on(None),
        all.summary.total
    );
    for candidate in JobStatus::ALL {
        let _ = write!(
            body,
            "<a href=\"/batches/{key_html}?status={candidate}\"{}>{candidate} ({})</a>",
            on(Some(candidate)),
            count(&all.summary, candidate)
        );
    }
    body.push_str("</p>");
    body.push_str(&jobs_table(&listed.jobs, &names, false));
    let base = match status {
        Some(status) => format!("/batches/{key_html}?status={status}&amp;"),
        None => format!("/batches/{key_html}?"),
    };
    body.push_str(&pager(&base, offset, listed.summary.total));
    let title = format!("Batch {key}");
    Ok(page(&app, &title, running(&all.summary), &body))
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
    let listing = StatusQuery {
        filter: JobFilter {
            batch_key: batch.as_ref().map(ToString::to_string),
            status: Some(JobStatus::Failed),
            ..JobFilter::default()
        },
        page: Page {
            limit: PAGE_SIZE,
            offset,
        },
    };
    let (listed, names, overview) = tokio::try_join!(
        async { Ok(app.status(&listing).await?) },
        Names::load(&app),
        async { Ok(app.overview(BATCHES_SHOWN, 0).await?) },
    )?;
    let mut body = match &batch {
        Some(key) => format!(
            "<h1>Failed jobs of batch <a href=\"/batches/{k}\">{k}</a></h1>",
            k = Esc(key.as_str())
        ),
        None => "<h1>Failed jobs</h1>".to_owned(),
    };
    let with_failures = overview
        .batches
        .iter()
        .filter(|b| b.summary.failed > 0)
        .filter(|b| batch.as_ref().is_none_or(|key| key.as_str() == b.batch_key));
    for item in with_failures {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/batches/{k}/retry-failed\" class=\"inline\">\
             <button type=\"submit\">Retry all {n} failed in {k}</button></form> ",
            k = Esc(&item.batch_key),
            n = item.summary.failed
        );
    }
    if listed.jobs.is_empty() {
        body.push_str("<p class=\"muted\">No failed jobs.</p>");
    } else {
        body.push_str(&jobs_table(&listed.jobs, &names, true));
    }
    let base = match &batch {
        Some(key) => format!("/failed?batch={}&amp;", Esc(key.as_str())),
        None => "/failed?".to_owned(),
    };
    body.push_str(&pager(&base, offset, listed.summary.total));
    Ok(page(&app, "Failed jobs", false, &body))
}
