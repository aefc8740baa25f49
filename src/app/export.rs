//! Exporting stored responses page by page, so that an export of any size holds one page in
//! memory at a time.
//!
//! The store lists responses newest first (by id). Each page after the first asks for the
//! rows below the lowest id handed out so far (keyset paging): a page costs the same however
//! deep into a year of answers it is, where an offset would skip every row before it, and
//! answers stored while an export runs (new, higher ids) neither come out nor push older rows
//! into the next page. Every response that existed when the first page was read comes out
//! exactly once, and none stored after it does.

use std::collections::HashMap;

use serde::Serialize;

use super::{App, AppResult, MAX_PAGE};
use crate::domain::ModelId;
use crate::insights::matcher::Matcher;
use crate::insights::{Citation, links};
use crate::store::{Page, ResponseFilter, StoredResponse};

/// Responses read a page at a time; see the module documentation.
pub struct ResponseExport {
    app: App,
    /// The caller's filter, with `below_id` the lowest id handed out so far.
    filter: ResponseFilter,
    done: bool,
}

/// Rows per database round trip: large enough to be cheap, small enough to stay light.
const EXPORT_PAGE: i64 = 500;

impl ResponseExport {
    /// The next page of responses, newest first; `None` once every one was handed out.
    pub async fn next_page(&mut self) -> AppResult<Option<Vec<StoredResponse>>> {
        if self.done {
            return Ok(None);
        }
        let page = Page {
            limit: EXPORT_PAGE.min(MAX_PAGE),
            offset: 0,
        };
        let rows = self.app.responses(&self.filter, page).await?;
        self.done = (rows.len() as i64) < page.limit;
        match rows.iter().map(|row| row.id).min() {
            Some(lowest) => {
                self.filter.below_id = Some(lowest);
                Ok(Some(rows))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

impl App {
    /// The responses matching `filter`, to read with [`ResponseExport::next_page`].
    pub fn export_responses(&self, filter: ResponseFilter) -> ResponseExport {
        ResponseExport {
            app: self.clone(),
            filter,
            done: false,
        }
    }

    /// Every model's name by id, for exports and tables that show names. Removed models are
    /// not listed (the store hides them), so callers must expect an id without a name.
    pub async fn model_names(&self) -> AppResult<HashMap<ModelId, String>> {
        Ok(self
            .models()
            .await?
            .into_iter()
            .map(|model| (model.id, model.name))
            .collect())
    }
}

/// A mention in an exported answer: the tracker that looks for the term, and what
/// [`Matcher::mentions`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportMention {
    pub tracker: String,
    pub term: String,
    pub count: i64,
    pub rank: i64,
    pub list_position: Option<i64>,
}

/// The current trackers, compiled once per export: each exported answer's mentions and
/// citations are found the way the analysis pass finds them, so an export is complete even
/// while the pass is still behind (e.g. just after a tracker was edited).
pub struct ExportInsights {
    matchers: Vec<(String, Matcher)>,
}

impl ExportInsights {
    /// Named trackers' matchers, in the order their mentions are listed.
    pub fn new(matchers: Vec<(String, Matcher)>) -> Self {
        ExportInsights { matchers }
    }

    /// Every tracker's mentions in `response`, tracker by tracker, each in rank order.
    pub fn mentions(&self, response: &StoredResponse) -> Vec<ExportMention> {
        self.matchers
            .iter()
            .flat_map(|(tracker, matcher)| {
                matcher
                    .mentions(&response.text)
                    .into_iter()
                    .map(|m| ExportMention {
                        tracker: tracker.clone(),
                        term: m.term,
                        count: m.count,
                        rank: m.rank,
                        list_position: m.list_position,
                    })
            })
            .collect()
    }

    /// The URLs `response` cites, from the provider's structured citations and from its text.
    pub fn citations(&self, response: &StoredResponse) -> Vec<Citation> {
        links::citations(&response.text, response.citations.as_deref())
    }
}

impl App {
    /// See [`ExportInsights`]. A stored tracker that no longer compiles is left out, loudly.
    pub async fn export_insights(&self) -> AppResult<ExportInsights> {
        let mut matchers = Vec::new();
        for tracker in self.store().tracker_list().await? {
            match Matcher::new(&tracker.terms) {
                Ok(matcher) => matchers.push((tracker.name, matcher)),
                Err(err) => {
                    tracing::warn!(tracker = %tracker.name, error = %err, "tracker left out of the export");
                }
            }
        }
        Ok(ExportInsights { matchers })
    }
}
