//! Insights: what tracked terms and cited sources the stored answers contain, and how that
//! changes from batch to batch. Pure code, no I/O: the store keeps the derived rows and the
//! use cases (`app::insights`) run the analysis pass and build reports from these parts.
//!
//! A [`Tracker`] is a named group of [`Term`]s (e.g. "CRMs": HubSpot, Salesforce, …), each with
//! patterns (aliases), literal or `/regular expression/`. [`matcher`] finds the terms in one
//! answer (how often, in which order, at which list position); [`links`] finds the URLs it
//! cites, from the provider's structured citations and from the text; [`signif`] decides
//! whether a change of a mention rate between two batches exceeds sampling noise; [`figures`]
//! turns the per-answer rows of a batch into the report's figures; [`drift`] measures how much
//! a prompt's answers changed from one batch to the next; [`excerpt`] cuts an answer down to
//! its mentions for showing.

pub mod drift;
pub mod excerpt;
pub mod figures;
pub mod links;
pub mod matcher;
pub mod signif;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Identifier of a row in `trackers`.
pub type TrackerId = i64;

/// A tracked term: a brand and the patterns that name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Term {
    /// What the reports call it (e.g. "HubSpot").
    pub name: String,
    /// Literal aliases, or regular expressions written `/…/`; empty means the name itself.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// A stored tracker group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracker {
    pub id: TrackerId,
    pub name: String,
    pub terms: Vec<Term>,
    /// Bumped by every change of the terms: answers analysed under an older version are
    /// analysed again.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tracker to create, or the new content of one (name and terms are replaced whole).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTracker {
    pub name: String,
    pub terms: Vec<Term>,
}

/// An answer the analysis pass reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerText {
    pub response_id: i64,
    pub text: String,
    /// The provider's structured citations as stored (JSON text), if any.
    pub citations: Option<String>,
}

/// One term found in one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mention {
    pub term: String,
    /// Occurrences in the answer.
    pub count: i64,
    /// 1 for the term named first among the group's terms in this answer, 2 for the next, …
    pub rank: i64,
    /// The list item (1-based, in order of the answer's list items) where the term first
    /// appears, when it appears in one.
    pub list_position: Option<i64>,
}

/// One URL an answer cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    pub url: String,
    /// The host without a leading `www.`, lower case.
    pub domain: String,
    /// From the provider's structured citations (else found in the text).
    pub structured: bool,
}

/// What the analysis found in one answer for one tracker.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub response_id: i64,
    pub mentions: Vec<Mention>,
    pub citations: Vec<Citation>,
}

/// How far a tracker's current version has analysed the stored answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub analysed: i64,
    pub total: i64,
}

impl Progress {
    pub fn done(&self) -> bool {
        self.analysed >= self.total
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "analysed {} of {} answers",
            thousands(self.analysed),
            thousands(self.total)
        )
    }
}

/// 12000 → "12,000".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// One analysed answer of a batch, where it came from, with its rows (the report's input).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysedAnswer {
    pub response_id: i64,
    pub prompt_id: i64,
    pub model_id: i64,
    pub mentions: Vec<Mention>,
    pub domains: Vec<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_reads_like_a_sentence() {
        let p = super::Progress {
            analysed: 12000,
            total: 40000,
        };
        assert_eq!(p.to_string(), "analysed 12,000 of 40,000 answers");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
