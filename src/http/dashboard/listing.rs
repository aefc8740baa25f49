//! Pieces of the listing pages: names for ids, the jobs table, the pager, query parsing.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::PageError;
use super::html::{Esc, badge, progress_bar, truncate};
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
pub(super) fn summary_line(s: &Summary) -> String {
    format!(
        "<p>{} <span id=\"summary\">{} jobs: {} queued, {} running, {} succeeded, {} failed, \
         {} skipped</span></p>",
        progress_bar(s),
        s.total,
        s.queued,
        s.processing,
        s.succeeded,
        s.failed,
        s.skipped
    )
}

/// A table of jobs; `failures` adds the batch, the error and a retry button per job.
pub(super) fn jobs_table(jobs: &[Job], names: &Names, failures: bool) -> String {
    let mut out = String::from("<table class=\"jobs\"><tr><th>Job</th>");
    if failures {
        out.push_str("<th>Batch</th>");
    }
    out.push_str("<th>Prompt</th><th>Model</th><th class=\"n\">Run</th><th>Status</th><th class=\"n\">Attempts</th><th>Error</th>");
    out.push_str(if failures { "<th></th></tr>" } else { "</tr>" });
    for job in jobs {
        let _ = write!(
            out,
            "<tr><td><a class=\"job\" href=\"/jobs/{id}\">#{id}</a></td>",
            id = job.id
        );
        if failures {
            let _ = write!(
                out,
                "<td class=\"nw\"><a href=\"/batches/{k}\">{k}</a></td>",
                k = Esc(&job.batch_key)
            );
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}/{}</td><td class=\"err\">{}</td>",
            Esc(&truncate(&names.prompt(job.prompt_id), 80)),
            Esc(&names.model(job.model_id)),
            job.run_index,
            badge(job.status),
            job.attempt_count,
            job.max_attempts,
            Esc(&truncate(
                &crate::providers::one_line(job.error_message.as_deref().unwrap_or("")),
                200
            ))
        );
        if failures {
            let _ = write!(
                out,
                "<td><form method=\"post\" action=\"/jobs/{}/retry\" class=\"inline\">\
                 <button type=\"submit\">Retry</button></form></td>",
                job.id
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// Previous/next links when the listing has more than one page; `base` ends in `?` or `&amp;`.
pub(super) fn pager(base: &str, offset: i64, total: i64) -> String {
    if total <= PAGE_SIZE {
        return String::new();
    }
    let mut out = format!(
        "<p>Jobs {}–{} of {total}. ",
        offset + 1,
        (offset + PAGE_SIZE).min(total)
    );
    if offset > 0 {
        let _ = write!(
            out,
            "<a href=\"{base}offset={}\">previous</a> ",
            (offset - PAGE_SIZE).max(0)
        );
    }
    if offset + PAGE_SIZE < total {
        let _ = write!(
            out,
            "<a href=\"{base}offset={}\">next</a>",
            offset + PAGE_SIZE
        );
    }
    out.push_str("</p>");
    out
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
