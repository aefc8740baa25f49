//! The tracker pages: every tracker group (`GET /trackers`), and one group's page
//! (`GET /trackers/{id}?batch=&term=`): the trend of a term's mention rate and share of voice
//! per model over the newest batches, the batch's per-prompt table with its answers' excerpts
//! (each mention in a `<mark>`), the cited domains, and the drift from the previous batch.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::html::{scroll, truncate};
use super::listing::parse_batch_key;
use super::trend::{Series, trend_chart};
use super::{PageError, PageResult, page};
use crate::app::{AnswerExcerpt, App, TREND_BATCHES, TrackerPage};
use crate::insights::excerpt::Piece;

/// Characters of a prompt shown in a table.
const PROMPT_CHARS: usize = 80;

/// `GET /trackers`: every tracker group with its terms and how far the analysis got.
pub(super) async fn list(State(app): State<App>) -> PageResult {
    let trackers = app.trackers().await?;
    let body = html! {
        h1 { "Trackers" }
        @if trackers.is_empty() {
            p.muted { "No tracker yet. Add one with " code { "promptq trackers add NAME --term TERM" }
                " or " code { "POST /api/insights/trackers" } "." }
        } @else {
            (scroll(html! { table #trackers {
                tr { th { "Tracker" } th { "Terms" } th.n { "Version" } th { "Analysis" } }
                @for t in &trackers {
                    tr {
                        td { a href={ "/trackers/" (t.tracker.id) } { (t.tracker.name) } }
                        td { (t.tracker.terms.iter().map(|term| term.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        td.n { (t.tracker.version) }
                        td { (t.progress_text) }
                    }
                }
            } }))
        }
    };
    Ok(page(&app, "Trackers", false, body))
}

#[derive(Deserialize)]
pub(super) struct ShowQuery {
    batch: Option<String>,
    term: Option<String>,
}

/// `GET /trackers/{id}`: see the module documentation.
pub(super) async fn show(
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query.map_err(|err| PageError::BadRequest(err.body_text()))?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::NotFound(format!("no tracker {id}")))?;
    let batch = match query.batch.as_deref() {
        None | Some("") => None,
        Some(key) => Some(parse_batch_key(key)?.to_string()),
    };
    let data = app.tracker_page(&id.to_string(), batch.as_deref()).await?;
    let terms: Vec<&str> = data
        .report
        .models
        .first()
        .map(|m| m.cell.terms.iter().map(|t| t.term.as_str()).collect())
        .unwrap_or_default();
    let term = match query.term.as_deref() {
        Some(t) if !terms.is_empty() && !terms.contains(&t) => {
            return Err(PageError::BadRequest(format!(
                "no term '{t}' in this tracker"
            )));
        }
        Some(t) => Some(t),
        None => terms.first().copied(),
    };
    let title = format!("Tracker {}", data.report.tracker);
    let body = html! {
        h1 { (title) }
        (heading(&data))
        @if let Some(term) = term {
            (term_picker(&data, &terms, term))
            (charts(&data, term))
        }
        h2 { "Per prompt" }
        (prompts_table(&data))
        h2 { "Cited domains" }
        (leaderboard(&data))
        h2 { "Drift from the previous batch" }
        (drift_table(&data))
    };
    Ok(page(&app, &title, false, body))
}

fn heading(data: &TrackerPage) -> Markup {
    let r = &data.report;
    html! {
        p #batch {
            @match &r.batch_key {
                Some(key) => {
                    "Batch " a href={ "/batches/" (key) } { (key) }
                    @if let Some(previous) = &r.previous_batch_key {
                        " against " a href={ "?batch=" (previous) } { (previous) }
                    }
                    " · "
                },
                None => "No answer yet · ",
            }
            (r.progress_text)
        }
    }
}

fn term_picker(data: &TrackerPage, terms: &[&str], current: &str) -> Markup {
    let batch = data.report.batch_key.as_deref().unwrap_or("");
    html! {
        p.filters #terms {
            "Term: "
            @for t in terms {
                a class=(if *t == current { "on" } else { "" })
                    href={ "?batch=" (batch) "&term=" (urlencoding(t)) } { (t) }
            }
        }
    }
}

/// Percent-encodes a query value (term names may hold any character).
fn urlencoding(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn charts(data: &TrackerPage, term: &str) -> Markup {
    let batches: Vec<String> = data.trend.iter().map(|b| b.batch_key.clone()).collect();
    // Every model seen in the window, by id, with its latest name.
    let mut models: Vec<(i64, String)> = Vec::new();
    for batch in &data.trend {
        for m in &batch.models {
            let name = m
                .model_name
                .clone()
                .unwrap_or_else(|| format!("model #{}", m.cell.model_id));
            match models.iter_mut().find(|(id, _)| *id == m.cell.model_id) {
                Some(known) => known.1 = name,
                None => models.push((m.cell.model_id, name)),
            }
        }
    }
    let series = |figure: fn(&crate::insights::figures::TermFigures) -> f64| -> Vec<Series> {
        models
            .iter()
            .map(|(id, name)| Series {
                name: name.clone(),
                values: data
                    .trend
                    .iter()
                    .map(|b| {
                        b.models
                            .iter()
                            .find(|m| m.cell.model_id == *id)
                            .and_then(|m| m.cell.terms.iter().find(|t| t.term == term))
                            .map(figure)
                    })
                    .collect(),
            })
            .collect()
    };
    html! {
        p.muted { "The newest " (TREND_BATCHES) " batches with answers, per model over every prompt." }
        div.charts #trend {
            (trend_chart(&format!("Mention rate of {term}"), &batches, &series(|t| t.mention_rate)))
            (trend_chart(&format!("Share of voice of {term}"), &batches, &series(|t| t.share_of_voice)))
        }
    }
}

fn excerpt(e: &AnswerExcerpt) -> Markup {
    html! {
        p.excerpt {
            a.job href={ "/jobs/" (e.job_id) } { "run " (e.run_index) } ": "
            @for piece in &e.pieces {
                @match piece {
                    Piece::Text(text) => (text),
                    Piece::Mark(text, term) => mark title=(term) { (text) },
                    Piece::Gap => span.muted { "…" },
                }
            }
        }
    }
}

fn prompts_table(data: &TrackerPage) -> Markup {
    let cells = &data.report.prompts;
    if cells.is_empty() {
        return html! { p.muted { "No analysed answer in this batch." } };
    }
    scroll(html! {
        table #prompts {
            tr { th { "Prompt" } th { "Model" } th { "Named (runs)" } th { "Excerpts" } }
            @for c in cells {
                @let prompt_id = c.cell.prompt_id.unwrap_or_default();
                tr {
                    td {
                        @if let Some(key) = &data.report.batch_key {
                            a href={ "/batches/" (key) "/prompts/" (prompt_id) } {
                                (truncate(c.prompt_text.as_deref().unwrap_or("(removed prompt)"), PROMPT_CHARS))
                            }
                        }
                    }
                    td.nw { (c.model_name.clone().unwrap_or_else(|| format!("model #{}", c.cell.model_id))) }
                    td.nw {
                        @for t in c.cell.terms.iter().filter(|t| t.mentioned > 0) {
                            (t.term) " " (t.mentioned) "/" (c.cell.runs) br;
                        }
                        @if c.cell.terms.iter().all(|t| t.mentioned == 0) {
                            span.muted { "none of " (c.cell.runs) }
                        }
                    }
                    td {
                        @for e in data.excerpts.get(&(prompt_id, c.cell.model_id)).into_iter().flatten() {
                            (excerpt(e))
                        }
                    }
                }
            }
        }
    })
}

fn leaderboard(data: &TrackerPage) -> Markup {
    if data.leaderboard.is_empty() {
        return html! { p.muted { "No answer of this batch cites a source." } };
    }
    scroll(html! {
        table #domains {
            tr { th.n { "#" } th { "Domain" } th.n { "Answers citing it" } }
            @for (i, d) in data.leaderboard.iter().enumerate() {
                tr { td.n { (i + 1) } td { (d.domain) } td.n { (d.answers) } }
            }
        }
    })
}

fn drift_table(data: &TrackerPage) -> Markup {
    let rows = &data.report.drift;
    if rows.is_empty() {
        return html! { p.muted { "Nothing to compare: no prompt was answered in both batches." } };
    }
    let terms = |t: &[String]| {
        if t.is_empty() {
            "—".to_owned()
        } else {
            t.join(", ")
        }
    };
    scroll(html! {
        table #drift {
            tr { th { "Prompt" } th { "Model" } th.n { "Drift" } th { "Now named" } th { "No longer named" } }
            @for d in rows {
                tr {
                    td { (truncate(d.prompt_text.as_deref().unwrap_or("(removed prompt)"), PROMPT_CHARS)) }
                    td.nw { (d.model_name.clone().unwrap_or_else(|| format!("model #{}", d.drift.model_id))) }
                    td.n { (format!("{:.2}", d.drift.drift)) }
                    td { (terms(&d.drift.added)) }
                    td { (terms(&d.drift.dropped)) }
                }
            }
        }
    })
}
