//! A batch's figures from its analysed answers: per prompt × model (or per model over every
//! prompt) and per term, the mention rate, share of voice, ranks, the spread over runs, the top
//! cited domains, and the change from the previous batch with its significance.
//!
//! Every answer of a cell counts as one run (N); a term's mention rate is k/N, where k is the
//! number of runs that name it, so "k of N runs" is the spread. Its share of voice is its
//! occurrences over the occurrences of all the group's terms in the cell. Ranks and list
//! positions are averaged over the runs that name the term. A domain counts once per answer
//! that cites it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::AnalysedAnswer;
use super::signif::{self, Test};

/// How many domains a cell lists.
pub const TOP_DOMAINS: usize = 5;

/// One prompt × model (or, with `promptId` absent, one model over every prompt) of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<i64>,
    pub model_id: i64,
    /// Answers (runs) analysed in this cell.
    pub runs: u64,
    pub terms: Vec<TermFigures>,
    pub top_domains: Vec<DomainCount>,
}

/// A term's figures in a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TermFigures {
    pub term: String,
    /// Runs that name the term (k of `runs`).
    pub mentioned: u64,
    pub mention_rate: f64,
    /// Occurrences over all runs.
    pub mentions: u64,
    pub share_of_voice: f64,
    pub avg_rank: Option<f64>,
    pub best_rank: Option<i64>,
    pub avg_list_position: Option<f64>,
    pub best_list_position: Option<i64>,
    /// The same cell in the previous batch, when it had runs.
    pub change: Option<Change>,
}

/// The change of a term's mention rate from the previous batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub previous_runs: u64,
    pub previous_mentioned: u64,
    pub previous_rate: f64,
    /// This batch's rate minus the previous one's.
    pub delta: f64,
    pub p_value: f64,
    pub test: Test,
    /// `p_value < 0.05`: the change exceeds sampling noise.
    pub significant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainCount {
    pub domain: String,
    /// Answers citing it.
    pub answers: u64,
}

#[derive(Default)]
struct Tally {
    runs: u64,
    /// Per term: runs naming it, occurrences, ranks, list positions.
    terms: HashMap<String, (u64, u64, Vec<i64>, Vec<i64>)>,
    domains: HashMap<String, u64>,
}

type Key = (Option<i64>, i64);

fn tally(answers: &[AnalysedAnswer], by_prompt: bool) -> BTreeMap<Key, Tally> {
    let mut cells: BTreeMap<Key, Tally> = BTreeMap::new();
    for answer in answers {
        let key = (by_prompt.then_some(answer.prompt_id), answer.model_id);
        let cell = cells.entry(key).or_default();
        cell.runs += 1;
        for m in &answer.mentions {
            let t = cell.terms.entry(m.term.clone()).or_default();
            t.0 += 1;
            t.1 += m.count.max(0) as u64;
            t.2.push(m.rank);
            t.3.extend(m.list_position);
        }
        let mut seen: Vec<&String> = answer.domains.iter().collect();
        seen.sort();
        seen.dedup();
        for domain in seen {
            *cell.domains.entry(domain.clone()).or_default() += 1;
        }
    }
    cells
}

fn mean(values: &[i64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<i64>() as f64 / values.len() as f64)
}

/// The cells of `now`, with the change from `before`, for the tracker's `terms` in order.
pub fn cells(
    terms: &[String],
    now: &[AnalysedAnswer],
    before: &[AnalysedAnswer],
    by_prompt: bool,
) -> Vec<Cell> {
    let previous = tally(before, by_prompt);
    tally(now, by_prompt)
        .into_iter()
        .map(|(key, cell)| {
            let voice: u64 = cell.terms.values().map(|t| t.1).sum();
            let prior = previous.get(&key);
            let terms = terms
                .iter()
                .map(|term| {
                    let empty = (0, 0, Vec::new(), Vec::new());
                    let (k, mentions, ranks, positions) = cell.terms.get(term).unwrap_or(&empty);
                    let change = prior.filter(|p| p.runs > 0).and_then(|p| {
                        let k0 = p.terms.get(term).map_or(0, |t| t.0);
                        let verdict = signif::compare(k0, p.runs, *k, cell.runs)?;
                        let previous_rate = k0 as f64 / p.runs as f64;
                        Some(Change {
                            previous_runs: p.runs,
                            previous_mentioned: k0,
                            previous_rate,
                            delta: *k as f64 / cell.runs as f64 - previous_rate,
                            p_value: verdict.p_value,
                            test: verdict.test,
                            significant: verdict.significant,
                        })
                    });
                    TermFigures {
                        term: term.clone(),
                        mentioned: *k,
                        mention_rate: *k as f64 / cell.runs.max(1) as f64,
                        mentions: *mentions,
                        share_of_voice: if voice == 0 {
                            0.0
                        } else {
                            *mentions as f64 / voice as f64
                        },
                        avg_rank: mean(ranks),
                        best_rank: ranks.iter().min().copied(),
                        avg_list_position: mean(positions),
                        best_list_position: positions.iter().min().copied(),
                        change,
                    }
                })
                .collect();
            let mut top_domains: Vec<DomainCount> = cell
                .domains
                .into_iter()
                .map(|(domain, answers)| DomainCount { domain, answers })
                .collect();
            top_domains.sort_by(|a, b| {
                b.answers
                    .cmp(&a.answers)
                    .then_with(|| a.domain.cmp(&b.domain))
            });
            top_domains.truncate(TOP_DOMAINS);
            Cell {
                prompt_id: key.0,
                model_id: key.1,
                runs: cell.runs,
                terms,
                top_domains,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::Mention;

    fn answer(
        prompt: i64,
        model: i64,
        mentions: &[(&str, i64, i64, Option<i64>)],
        domains: &[&str],
    ) -> AnalysedAnswer {
        AnalysedAnswer {
            response_id: 0,
            prompt_id: prompt,
            model_id: model,
            mentions: mentions
                .iter()
                .map(|&(term, count, rank, list_position)| Mention {
                    term: term.to_owned(),
                    count,
                    rank,
                    list_position,
                })
                .collect(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn rates_share_ranks_domains_and_change() {
        let terms = vec!["A".to_owned(), "B".to_owned()];
        let now = vec![
            answer(
                1,
                7,
                &[("A", 3, 1, Some(1)), ("B", 1, 2, Some(2))],
                &["x.com", "x.com", "y.com"],
            ),
            answer(1, 7, &[("B", 1, 1, None)], &["y.com"]),
            answer(1, 7, &[], &[]),
            answer(2, 7, &[("A", 1, 2, None)], &[]),
        ];
        let before = vec![
            answer(1, 7, &[], &[]),
            answer(1, 7, &[], &[]),
            answer(1, 7, &[], &[]),
        ];
        let cells = cells(&terms, &now, &before, true);
        assert_eq!(cells.len(), 2);
        let c = &cells[0];
        assert_eq!((c.prompt_id, c.model_id, c.runs), (Some(1), 7, 3));
        let a = &c.terms[0];
        assert_eq!(
            (a.mentioned, a.mentions, a.best_rank, a.best_list_position),
            (1, 3, Some(1), Some(1))
        );
        assert!((a.mention_rate - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.share_of_voice - 0.6).abs() < 1e-9);
        let b = &c.terms[1];
        assert_eq!(b.avg_rank, Some(1.5));
        let change = b.change.as_ref().unwrap();
        assert_eq!((change.previous_runs, change.previous_mentioned), (3, 0));
        assert!((change.delta - 2.0 / 3.0).abs() < 1e-9);
        assert!(
            !change.significant,
            "2 of 3 against 0 of 3 is noise: {change:?}"
        );
        assert_eq!(
            c.top_domains,
            vec![
                DomainCount {
                    domain: "y.com".into(),
                    answers: 2
                },
                DomainCount {
                    domain: "x.com".into(),
                    answers: 1
                }
            ]
        );
        // Prompt 2 has no previous batch: no change.
        assert!(cells[1].terms[0].change.is_none());
        // Over prompts: one cell per model, four runs.
        let overview = super::cells(&terms, &now, &before, false);
        assert_eq!(
            (
                overview.len(),
                overview[0].runs,
                overview[0].terms[0].mentioned
            ),
            (1, 4, 2)
        );
    }
}
