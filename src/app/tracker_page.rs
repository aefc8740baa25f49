//! What the dashboard's page of one tracker group shows: the batch's report (with drift), the
//! per-model figures of the batches before it (the trend), the citation-domain leaderboard over
//! the batch's answers, and excerpts of its answers around each mention.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{App, AppError, AppResult, NamedCell, TrackerReport};
use crate::insights::excerpt::{self, Piece};
use crate::insights::figures::{self, DomainCount};
use crate::insights::matcher::Matcher;
use crate::store::ResponseFilter;

/// Batches the trend goes back, the reported one included.
pub const TREND_BATCHES: usize = 14;
/// Domains the leaderboard lists.
pub const LEADERBOARD: usize = 20;
/// Answers with mentions shown per prompt × model.
pub const EXCERPTS_PER_CELL: usize = 2;

/// One batch of the trend: each model's figures over every prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendBatch {
    pub batch_key: String,
    pub models: Vec<NamedCell>,
}

/// An answer cut down to its mentions.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerExcerpt {
    pub response_id: i64,
    pub job_id: i64,
    pub run_index: i32,
    pub pieces: Vec<Piece>,
}

/// Everything the tracker page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerPage {
    pub report: TrackerReport,
    /// Oldest first, ending with the reported batch.
    pub trend: Vec<TrendBatch>,
    /// Domains by the number of the batch's analysed answers citing them.
    pub leaderboard: Vec<DomainCount>,
    /// Per (prompt, model): the first answers (by run) that name a term.
    pub excerpts: BTreeMap<(i64, i64), Vec<AnswerExcerpt>>,
}

impl App {
    /// The page of tracker `which` (id or name) for `batch_key` (default: the latest batch).
    pub async fn tracker_page(
        &self,
        which: &str,
        batch_key: Option<&str>,
    ) -> AppResult<TrackerPage> {
        let tracker = self.tracker(which).await?.tracker;
        let id = tracker.id.to_string();
        let report = self
            .insights_report(Some(&id), batch_key)
            .await?
            .pop()
            .ok_or_else(|| AppError::Internal("a report without its tracker".into()))?;
        let Some(batch) = report.batch_key.clone() else {
            return Ok(TrackerPage {
                report,
                trend: Vec::new(),
                leaderboard: Vec::new(),
                excerpts: BTreeMap::new(),
            });
        };
        let terms: Vec<String> = tracker.terms.iter().map(|t| t.name.clone()).collect();
        let models = self.model_names().await?;
        let answers = self
            .store()
            .batch_analysed(tracker.id, tracker.version, &batch)
            .await?;

        let mut trend = vec![TrendBatch {
            batch_key: batch.clone(),
            models: report.models.clone(),
        }];
        let mut key = batch.clone();
        while trend.len() < TREND_BATCHES {
            let Some(earlier) = self.store().batch_answered_latest(Some(&key)).await? else {
                break;
            };
            let rows = self
                .store()
                .batch_analysed(tracker.id, tracker.version, &earlier)
                .await?;
            let cells = figures::cells(&terms, &rows, &[], false)
                .into_iter()
                .map(|cell| NamedCell {
                    prompt_text: None,
                    model_name: models.get(&cell.model_id).cloned(),
                    cell,
                })
                .collect();
            trend.push(TrendBatch {
                batch_key: earlier.clone(),
                models: cells,
            });
            key = earlier;
        }
        trend.reverse();

        let mut domains: HashMap<&str, u64> = HashMap::new();
        for answer in &answers {
            let mut seen: Vec<&str> = answer.domains.iter().map(String::as_str).collect();
            seen.sort_unstable();
            seen.dedup();
            for domain in seen {
                *domains.entry(domain).or_default() += 1;
            }
        }
        let mut leaderboard: Vec<DomainCount> = domains
            .into_iter()
            .map(|(domain, answers)| DomainCount {
                domain: domain.to_owned(),
                answers,
            })
            .collect();
        leaderboard.sort_by(|a, b| b.answers.cmp(&a.answers).then(a.domain.cmp(&b.domain)));
        leaderboard.truncate(LEADERBOARD);

        let excerpts = self.excerpts(&tracker.terms, &batch).await?;
        Ok(TrackerPage {
            report,
            trend,
            leaderboard,
            excerpts,
        })
    }

    /// The batch's answers that name a term, cut down to their mentions, per prompt × model.
    async fn excerpts(
        &self,
        terms: &[crate::insights::Term],
        batch: &str,
    ) -> AppResult<BTreeMap<(i64, i64), Vec<AnswerExcerpt>>> {
        let matcher = Matcher::new(terms).map_err(AppError::Internal)?;
        let mut export = self.export_responses(ResponseFilter {
            batch_key: Some(batch.to_owned()),
            ..Default::default()
        });
        let mut found: BTreeMap<(i64, i64), Vec<AnswerExcerpt>> = BTreeMap::new();
        while let Some(page) = export.next_page().await? {
            for r in page {
                let spans = matcher.spans(&r.text);
                if spans.is_empty() {
                    continue;
                }
                found
                    .entry((r.prompt_id, r.model_id))
                    .or_default()
                    .push(AnswerExcerpt {
                        response_id: r.id,
                        job_id: r.job_id,
                        run_index: r.run_index,
                        pieces: excerpt::excerpt(&r.text, &spans),
                    });
            }
        }
        for list in found.values_mut() {
            list.sort_by_key(|e| (e.run_index, e.response_id));
            list.truncate(EXCERPTS_PER_CELL);
        }
        Ok(found)
    }
}
