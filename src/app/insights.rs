//! Trackers and their reports: create, list, change and delete trackers; the analysis pass
//! that derives mentions and citations from stored answers; the per-batch report.
//!
//! The analysis runs beside the queue, never in a job's finish: [`spawn_analysis`] (started by
//! `serve`, `worker` and `run`) and `report` call [`App::analyse_pending`], which reads up to
//! [`ANALYSIS_BATCH`] answers not yet analysed under a tracker's current version and writes
//! their rows in one transaction, batch after batch. A change of a tracker's terms bumps its
//! version, so its past answers are analysed again in the background; until that is done the
//! report says how far it got ("analysed 12,000 of 40,000 answers") and counts only the
//! answers analysed under the current version.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{App, AppError, AppResult};
use crate::insights::drift::{self, Drift};
use crate::insights::figures::{self, Cell};
use crate::insights::matcher::{self, Matcher};
use crate::insights::{Analysis, NewTracker, Progress, Term, Tracker, TrackerId, links};

/// Answers analysed per transaction.
pub const ANALYSIS_BATCH: i64 = 500;
/// How far below the highest analysed answer the pass starts looking: on PostgreSQL an answer
/// can become visible after one with a higher id (its transaction committed later).
const WATERMARK_MARGIN: i64 = 1000;
/// How often the background pass looks for new answers when it has nothing to do.
const ANALYSIS_IDLE: Duration = Duration::from_secs(10);
/// The pause between two busy batches, so the pass leaves the database to the queue.
const ANALYSIS_BREATHER: Duration = Duration::from_millis(50);

/// Changes to a tracker; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TrackerPatch {
    pub name: Option<String>,
    pub terms: Option<Vec<Term>>,
}

/// A tracker with how far its analysis got.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackerView {
    #[serde(flatten)]
    pub tracker: Tracker,
    pub progress: Progress,
    /// `progress` as a sentence.
    pub progress_text: String,
}

/// A cell of the report with the names a reader needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedCell {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_text: Option<String>,
    pub model_name: Option<String>,
    #[serde(flatten)]
    pub cell: Cell,
}

/// One tracker's figures for one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackerReport {
    pub tracker_id: TrackerId,
    pub tracker: String,
    pub version: i64,
    /// `None` when no answer is stored yet.
    pub batch_key: Option<String>,
    pub previous_batch_key: Option<String>,
    pub progress: Progress,
    pub progress_text: String,
    /// Per model, over every prompt.
    pub models: Vec<NamedCell>,
    /// Per prompt × model.
    pub prompts: Vec<NamedCell>,
    /// Per prompt × model with answers in both batches: how much the answers changed, the
    /// biggest movers first.
    pub drift: Vec<NamedDrift>,
}

/// A prompt × model's drift with the names a reader needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedDrift {
    pub prompt_text: Option<String>,
    pub model_name: Option<String>,
    #[serde(flatten)]
    pub drift: Drift,
}

fn checked(name: &str, terms: &[Term]) -> AppResult<(NewTracker, Matcher)> {
    let matcher = matcher::check(name, terms).map_err(AppError::BadInput)?;
    let terms = terms
        .iter()
        .map(|t| Term {
            name: t.name.trim().to_owned(),
            patterns: t.patterns.clone(),
        })
        .collect();
    Ok((
        NewTracker {
            name: name.trim().to_owned(),
            terms,
        },
        matcher,
    ))
}

fn name_taken(err: AppError, name: &str) -> AppError {
    match err {
        AppError::Conflict(_) => {
            AppError::Conflict(format!("a tracker named '{name}' already exists"))
        }
        other => other,
    }
}

impl App {
    /// Creates a tracker; its terms are checked (a bad pattern is refused with the reason).
    pub async fn create_tracker(&self, name: &str, terms: &[Term]) -> AppResult<Tracker> {
        let (new, _) = checked(name, terms)?;
        self.store()
            .tracker_insert(&new, Utc::now())
            .await
            .map_err(|e| name_taken(e.into(), &new.name))
    }

    /// Every tracker with its progress.
    pub async fn trackers(&self) -> AppResult<Vec<TrackerView>> {
        let mut views = Vec::new();
        for tracker in self.store().tracker_list().await? {
            views.push(self.view(tracker).await?);
        }
        Ok(views)
    }

    async fn view(&self, tracker: Tracker) -> AppResult<TrackerView> {
        let progress = self
            .store()
            .analysis_progress(tracker.id, tracker.version)
            .await?;
        Ok(TrackerView {
            tracker,
            progress,
            progress_text: progress.to_string(),
        })
    }

    /// A tracker by id or by name.
    pub async fn tracker(&self, which: &str) -> AppResult<TrackerView> {
        let which = which.trim();
        let found = match which.parse::<TrackerId>() {
            Ok(id) => self.store().tracker_get(id).await?,
            Err(_) => None,
        };
        let found = match found {
            Some(t) => Some(t),
            None => self
                .store()
                .tracker_list()
                .await?
                .into_iter()
                .find(|t| t.name == which),
        };
        let tracker = found.ok_or_else(|| AppError::NotFound(format!("no tracker '{which}'")))?;
        self.view(tracker).await
    }

    /// Changes a tracker; new terms bump its version, so its answers are analysed again.
    pub async fn update_tracker(&self, id: TrackerId, patch: TrackerPatch) -> AppResult<Tracker> {
        let current = self
            .store()
            .tracker_get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no tracker {id}")))?;
        let name = patch.name.unwrap_or(current.name);
        let terms = patch.terms.unwrap_or(current.terms);
        let (new, _) = checked(&name, &terms)?;
        self.store()
            .tracker_update(id, &new, Utc::now())
            .await
            .map_err(|e| name_taken(e.into(), &new.name))?
            .ok_or_else(|| AppError::NotFound(format!("no tracker {id}")))
    }

    /// Deletes a tracker and what was derived for it.
    pub async fn delete_tracker(&self, id: TrackerId) -> AppResult<()> {
        if self.store().tracker_delete(id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("no tracker {id}")))
        }
    }

    /// Analyses, for every tracker, up to `batches` batches of answers not yet analysed under
    /// its current version; the number of answers written.
    pub async fn analyse_pending(&self, batches: usize) -> AppResult<u64> {
        let mut written = 0;
        for tracker in self.store().tracker_list().await? {
            // A stored tracker that no longer compiles (a limit lowered since) is skipped, loudly.
            let matcher = match Matcher::new(&tracker.terms) {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!(tracker = %tracker.name, error = %err, "tracker skipped");
                    continue;
                }
            };
            // Nothing to do is the common case, and two counts tell it.
            let progress = self
                .store()
                .analysis_progress(tracker.id, tracker.version)
                .await?;
            if progress.done() {
                continue;
            }
            // New answers have the highest ids: look above what is analysed first, so that
            // the pass reads only them; a whole sweep follows when the counts still differ.
            let mut after = self
                .store()
                .analysis_watermark(tracker.id, tracker.version)
                .await?
                .map_or(0, |top| (top - WATERMARK_MARGIN).max(0));
            let mut swept = after == 0;
            let mut done = 0;
            while done < batches {
                let answers = self
                    .store()
                    .answers_unanalysed(tracker.id, tracker.version, after, ANALYSIS_BATCH)
                    .await?;
                let Some(last) = answers.last() else {
                    if swept {
                        break;
                    }
                    swept = true;
                    after = 0;
                    continue;
                };
                done += 1;
                after = last.response_id;
                let analyses: Vec<Analysis> = answers
                    .iter()
                    .map(|a| Analysis {
                        response_id: a.response_id,
                        mentions: matcher.mentions(&a.text),
                        citations: links::citations(&a.text, a.citations.as_deref()),
                    })
                    .collect();
                let n = self
                    .store()
                    .analyses_write(tracker.id, tracker.version, &analyses)
                    .await?;
                if n == 0 && !analyses.is_empty() {
                    break; // edited meanwhile: the next pass works under the new version
                }
                written += n;
            }
        }
        Ok(written)
    }

    /// Analyses everything pending (what `report` does before it reports).
    pub async fn analyse_all(&self) -> AppResult<u64> {
        let mut total = 0;
        loop {
            let n = self.analyse_pending(usize::MAX).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// The report of one tracker (by id or name) or of all, for `batch_key` (default: the
    /// latest batch with answers), compared with the batch before it.
    pub async fn insights_report(
        &self,
        tracker: Option<&str>,
        batch_key: Option<&str>,
    ) -> AppResult<Vec<TrackerReport>> {
        let trackers = match tracker {
            Some(which) => vec![self.tracker(which).await?.tracker],
            None => self.store().tracker_list().await?,
        };
        let batch = match batch_key {
            Some(key) => {
                let key = key.trim();
                if key.is_empty() || key.len() > 64 {
                    return Err(AppError::BadInput(
                        "batchKey must be 1 to 64 characters".into(),
                    ));
                }
                Some(key.to_owned())
            }
            None => self.store().batch_answered_latest(None).await?,
        };
        let previous = match &batch {
            Some(key) => self.store().batch_answered_latest(Some(key)).await?,
            None => None,
        };
        let models: HashMap<i64, String> = self
            .store()
            .model_list()
            .await?
            .into_iter()
            .map(|m| (m.id, m.name))
            .collect();
        let prompts: HashMap<i64, String> = self
            .store()
            .prompt_list()
            .await?
            .into_iter()
            .map(|p| (p.id, p.text))
            .collect();
        // The text half of drift is the same for every tracker: computed once.
        let text_drift = match (&batch, &previous) {
            (Some(now), Some(before)) => self.text_drift(now, before).await?,
            _ => Default::default(),
        };
        let name_drift = |drift: Drift| NamedDrift {
            prompt_text: prompts.get(&drift.prompt_id).cloned(),
            model_name: models.get(&drift.model_id).cloned(),
            drift,
        };
        let name = |cell: Cell| NamedCell {
            prompt_text: cell.prompt_id.and_then(|id| prompts.get(&id).cloned()),
            model_name: models.get(&cell.model_id).cloned(),
            cell,
        };
        let mut reports = Vec::new();
        for tracker in trackers {
            let progress = self
                .store()
                .analysis_progress(tracker.id, tracker.version)
                .await?;
            let load = async |key: &Option<String>| -> AppResult<Vec<_>> {
                match key {
                    Some(key) => Ok(self
                        .store()
                        .batch_analysed(tracker.id, tracker.version, key)
                        .await?),
                    None => Ok(Vec::new()),
                }
            };
            let now = load(&batch).await?;
            let before = load(&previous).await?;
            let terms: Vec<String> = tracker.terms.iter().map(|t| t.name.clone()).collect();
            reports.push(TrackerReport {
                tracker_id: tracker.id,
                tracker: tracker.name.clone(),
                version: tracker.version,
                batch_key: batch.clone(),
                previous_batch_key: previous.clone(),
                progress,
                progress_text: progress.to_string(),
                models: figures::cells(&terms, &now, &before, false)
                    .into_iter()
                    .map(name)
                    .collect(),
                prompts: figures::cells(&terms, &now, &before, true)
                    .into_iter()
                    .map(name)
                    .collect(),
                drift: drift::movers(&text_drift, &terms, &now, &before)
                    .into_iter()
                    .map(name_drift)
                    .collect(),
            });
        }
        Ok(reports)
    }
}

/// The background analysis pass of `serve`, `worker` and `run`, until `stop`.
pub fn spawn_analysis(app: App, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pause = match app.analyse_pending(1).await {
                Ok(0) => ANALYSIS_IDLE,
                Ok(n) => {
                    tracing::debug!(answers = n, "insights: answers analysed");
                    ANALYSIS_BREATHER
                }
                Err(err) => {
                    tracing::warn!(error = %err, "insights: analysis failed");
                    ANALYSIS_IDLE
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}

/// A trackers file (`promptq trackers import`): `trackers:` with a name and terms each.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackersFile {
    #[serde(default)]
    pub trackers: Vec<TrackerItem>,
}

/// A tracker as a file states it; matched to the database by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerItem {
    pub name: String,
    pub terms: Vec<Term>,
}

impl App {
    /// Makes the trackers agree with the file: a missing one is created, one with other terms
    /// updated (and re-analysed), an equal one left alone; none is deleted. Every item is
    /// checked before anything is written. The counts: (created, updated, unchanged).
    pub async fn import_trackers(&self, file: TrackersFile) -> AppResult<(u64, u64, u64)> {
        let mut seen = std::collections::HashSet::new();
        let mut checked_items = Vec::new();
        for (i, item) in file.trackers.iter().enumerate() {
            let (new, _) = checked(&item.name, &item.terms)
                .map_err(|e| AppError::BadInput(format!("trackers[{i}]: {e}")))?;
            if !seen.insert(new.name.clone()) {
                return Err(AppError::BadInput(format!(
                    "trackers[{i}]: the tracker '{}' is listed twice",
                    new.name
                )));
            }
            checked_items.push(new);
        }
        let existing = self.store().tracker_list().await?;
        let (mut created, mut updated, mut unchanged) = (0, 0, 0);
        for new in checked_items {
            match existing.iter().find(|t| t.name == new.name) {
                None => {
                    self.store().tracker_insert(&new, Utc::now()).await?;
                    created += 1;
                }
                Some(t) if t.terms == new.terms => unchanged += 1,
                Some(t) => {
                    self.store().tracker_update(t.id, &new, Utc::now()).await?;
                    updated += 1;
                }
            }
        }
        Ok((created, updated, unchanged))
    }
}
