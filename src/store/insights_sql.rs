//! The insights' SQL that both dialects share (both bind `$n`), and the rows that decode the
//! same way on both. Each backend writes only what differs: how a list of ids is bound
//! (`json_each` on SQLite, `= ANY` on PostgreSQL) and its write transactions.

use std::collections::HashMap;

use super::sql::Time;
use crate::insights::{AnalysedAnswer, Mention, Term, Tracker};

pub(crate) const TRACKER_COLUMNS: &str = "id, name, terms, version, created_at, updated_at";

/// The derived tables, each keyed by `(tracker_id, response_id, …)`.
pub(crate) const DERIVED_TABLES: [&str; 3] =
    ["insight_answers", "insight_mentions", "insight_citations"];

/// A rename alone keeps the version; new terms bump it. `$3` is the terms' canonical JSON.
pub(crate) fn update_sql() -> String {
    format!(
        "UPDATE trackers SET name = $2, \
         version = version + CASE WHEN terms = $3 THEN 0 ELSE 1 END, terms = $3, updated_at = $4 \
         WHERE id = $1 RETURNING {TRACKER_COLUMNS}"
    )
}

// `a.response_id > $3` repeats what `r.id = a.response_id` implies, so that PostgreSQL's
// anti-join reads only the analysed answers above the page's start (none, mostly) instead of
// every analysed answer at each page, which made a year's analysis quadratic.
pub(crate) const UNANALYSED: &str = "SELECT r.id, r.text, r.citations FROM responses r \
    WHERE r.id > $3 AND NOT EXISTS (SELECT 1 FROM insight_answers a \
        WHERE a.tracker_id = $1 AND a.version = $2 AND a.response_id > $3 \
            AND a.response_id = r.id) \
    ORDER BY r.id LIMIT $4";

pub(crate) const PROGRESS: &str = "SELECT \
    (SELECT count(*) FROM insight_answers WHERE tracker_id = $1 AND version = $2), \
    (SELECT count(*) FROM responses)";

// The latest batches with answers, read from the job key (which starts with the batch key)
// backwards: on PostgreSQL answers carry only a BRIN range index on their batch key, which
// finds a batch's answers but cannot give the highest key. A succeeded job is one with its
// answer.
pub(crate) const LATEST: &str = "SELECT max(batch_key) FROM prompt_jobs WHERE status = 'succeeded'";
pub(crate) const LATEST_BEFORE: &str =
    "SELECT max(batch_key) FROM prompt_jobs WHERE status = 'succeeded' AND batch_key < $1";

// Each batch query starts from the batch's answers (the batch-key index) and looks their rows
// up by key: written as a join, SQLite's planner (without ANALYZE statistics) would start from
// the tracker's rows instead, every row of every batch.
pub(crate) const BATCH_ANSWERS: &str = "SELECT r.id, r.prompt_id, r.model_id FROM responses r \
    WHERE r.batch_key = $3 AND EXISTS (SELECT 1 FROM insight_answers a \
        WHERE a.tracker_id = $1 AND a.response_id = r.id AND a.version = $2) ORDER BY r.id";

pub(crate) const BATCH_MENTIONS: &str = "SELECT m.response_id, m.term, m.count, m.rank, \
    m.list_position FROM insight_mentions m WHERE m.tracker_id = $1 \
    AND m.response_id IN (SELECT id FROM responses WHERE batch_key = $2) \
    ORDER BY m.response_id, m.rank";

pub(crate) const BATCH_DOMAINS: &str = "SELECT c.response_id, c.domain FROM insight_citations c \
    WHERE c.tracker_id = $1 AND c.response_id IN (SELECT id FROM responses WHERE batch_key = $2) \
    ORDER BY c.response_id, c.url";

/// The highest answer id analysed under a version (the pass's starting point).
pub(crate) const WATERMARK: &str =
    "SELECT max(response_id) FROM insight_answers WHERE tracker_id = $1 AND version = $2";

#[derive(sqlx::FromRow)]
pub(crate) struct TrackerRow {
    id: i64,
    name: String,
    terms: String,
    version: i64,
    created_at: Time,
    updated_at: Time,
}

impl TryFrom<TrackerRow> for Tracker {
    type Error = sqlx::Error;

    fn try_from(row: TrackerRow) -> Result<Self, Self::Error> {
        let terms: Vec<Term> =
            serde_json::from_str(&row.terms).map_err(|e| sqlx::Error::ColumnDecode {
                index: "terms".to_owned(),
                source: Box::new(e),
            })?;
        Ok(Tracker {
            id: row.id,
            name: row.name,
            terms,
            version: row.version,
            created_at: row.created_at.into(),
            updated_at: row.updated_at.into(),
        })
    }
}

pub(crate) fn trackers(rows: Vec<TrackerRow>) -> Result<Vec<Tracker>, sqlx::Error> {
    rows.into_iter().map(Tracker::try_from).collect()
}

/// The terms as stored: canonical JSON, so that equal terms compare equal as text.
pub(crate) fn terms_json(terms: &[Term]) -> String {
    serde_json::to_string(terms).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) type MentionRow = (i64, String, i64, i64, Option<i64>);

/// A batch's answers with their mentions and domains; rows of answers not in `answers`
/// (analysed under another version) are dropped.
pub(crate) fn assemble(
    answers: Vec<(i64, i64, i64)>,
    mentions: Vec<MentionRow>,
    domains: Vec<(i64, String)>,
) -> Vec<AnalysedAnswer> {
    let mut out: Vec<AnalysedAnswer> = answers
        .into_iter()
        .map(|(response_id, prompt_id, model_id)| AnalysedAnswer {
            response_id,
            prompt_id,
            model_id,
            mentions: Vec::new(),
            domains: Vec::new(),
        })
        .collect();
    let index: HashMap<i64, usize> = out
        .iter()
        .enumerate()
        .map(|(i, a)| (a.response_id, i))
        .collect();
    for (response_id, term, count, rank, list_position) in mentions {
        if let Some(&i) = index.get(&response_id) {
            out[i].mentions.push(Mention {
                term,
                count,
                rank,
                list_position,
            });
        }
    }
    for (response_id, domain) in domains {
        if let Some(&i) = index.get(&response_id) {
            out[i].domains.push(domain);
        }
    }
    out
}

/// Rows per multi-row INSERT: six binds a row stays far below either database's bind limit.
pub(crate) const INSERT_CHUNK: usize = 1000;
