//! Drift: how different a batch's answers are from the previous batch's, per prompt × model,
//! as a text similarity and as the change in the set of tracked terms named; biggest movers
//! first.
//!
//! Text: an answer is lower-cased and cut into Unicode words (runs of letters and digits in
//! any script); its features are its word bigrams, counted (a one-word answer counts that
//! word). Each answer's count vector is scaled to length 1 and the runs of a cell are
//! averaged, so every run weighs the same whatever its length; the similarity of two batches'
//! cells is the cosine of those averages, and `drift = 1 − similarity`: 0 for the same texts,
//! 1 when no bigram is shared. Averaging the runs before comparing (instead of comparing every
//! run with every run) keeps the cost linear in the text and does not count as drift the
//! differences between the runs of one batch that are only sampling.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::AnalysedAnswer;

/// One stored answer's text and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunText<'a> {
    pub prompt_id: i64,
    pub model_id: i64,
    pub text: &'a str,
}

/// A prompt × model's text similarity between two batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextDrift {
    pub runs: u64,
    pub previous_runs: u64,
    pub similarity: f64,
}

/// One prompt × model that has answers in both batches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub prompt_id: i64,
    pub model_id: i64,
    pub runs: u64,
    pub previous_runs: u64,
    /// Cosine similarity of the two batches' word bigrams, 0 to 1.
    pub similarity: f64,
    /// `1 − similarity`.
    pub drift: f64,
    /// Terms named by some run now and by none before, in the tracker's order.
    pub added: Vec<String>,
    /// Terms named by some run before and by none now.
    pub dropped: Vec<String>,
}

/// Lower-cased Unicode words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

type Vector = HashMap<String, f64>;

/// An answer's bigram counts, scaled to length 1 (empty for an answer without words).
fn features(text: &str) -> Vector {
    let words = words(text);
    let mut counts: Vector = HashMap::new();
    if words.len() == 1 {
        counts.insert(words[0].clone(), 1.0);
    }
    for pair in words.windows(2) {
        *counts
            .entry(format!("{} {}", pair[0], pair[1]))
            .or_default() += 1.0;
    }
    let norm = counts.values().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        counts.values_mut().for_each(|v| *v /= norm);
    }
    counts
}

/// The average of the runs' unit vectors.
fn profile<'a>(texts: impl Iterator<Item = &'a str>) -> Vector {
    let mut sum: Vector = HashMap::new();
    let mut runs = 0.0;
    for text in texts {
        runs += 1.0;
        for (k, v) in features(text) {
            *sum.entry(k).or_default() += v;
        }
    }
    if runs > 0.0 {
        sum.values_mut().for_each(|v| *v /= runs);
    }
    sum
}

fn cosine(a: &Vector, b: &Vector) -> f64 {
    let norm = |v: &Vector| v.values().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 && nb == 0.0 {
        return 1.0; // two batches of empty answers did not change
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let dot: f64 = small
        .iter()
        .filter_map(|(k, v)| large.get(k).map(|w| v * w))
        .sum();
    (dot / (na * nb)).clamp(0.0, 1.0)
}

/// The text similarity of every prompt × model with answers in both batches.
pub fn text_drift(now: &[RunText], before: &[RunText]) -> BTreeMap<(i64, i64), TextDrift> {
    fn group<'a>(runs: &[RunText<'a>]) -> BTreeMap<(i64, i64), Vec<&'a str>> {
        let mut cells: BTreeMap<(i64, i64), Vec<&'a str>> = BTreeMap::new();
        for r in runs {
            cells
                .entry((r.prompt_id, r.model_id))
                .or_default()
                .push(r.text);
        }
        cells
    }
    let previous = group(before);
    group(now)
        .into_iter()
        .filter_map(|(key, texts)| {
            let old = previous.get(&key)?;
            let similarity = cosine(
                &profile(texts.iter().copied()),
                &profile(old.iter().copied()),
            );
            Some((
                key,
                TextDrift {
                    runs: texts.len() as u64,
                    previous_runs: old.len() as u64,
                    similarity,
                },
            ))
        })
        .collect()
}

fn named(answers: &[AnalysedAnswer]) -> HashMap<(i64, i64), BTreeSet<&str>> {
    let mut cells: HashMap<(i64, i64), BTreeSet<&str>> = HashMap::new();
    for a in answers {
        let cell = cells.entry((a.prompt_id, a.model_id)).or_default();
        cell.extend(a.mentions.iter().map(|m| m.term.as_str()));
    }
    cells
}

/// The movers: each cell of `text` with the terms added and dropped between the analysed
/// answers `before` and `now`, ordered by drift, then by how many terms changed, largest
/// first (then by prompt and model).
pub fn movers(
    text: &BTreeMap<(i64, i64), TextDrift>,
    terms: &[String],
    now: &[AnalysedAnswer],
    before: &[AnalysedAnswer],
) -> Vec<Drift> {
    let (now, before) = (named(now), named(before));
    let empty = BTreeSet::new();
    let mut rows: Vec<Drift> = text
        .iter()
        .map(|(&(prompt_id, model_id), t)| {
            let a = now.get(&(prompt_id, model_id)).unwrap_or(&empty);
            let b = before.get(&(prompt_id, model_id)).unwrap_or(&empty);
            let pick = |from: &BTreeSet<&str>, not: &BTreeSet<&str>| -> Vec<String> {
                terms
                    .iter()
                    .filter(|t| from.contains(t.as_str()) && !not.contains(t.as_str()))
                    .cloned()
                    .collect()
            };
            Drift {
                prompt_id,
                model_id,
                runs: t.runs,
                previous_runs: t.previous_runs,
                similarity: t.similarity,
                drift: 1.0 - t.similarity,
                added: pick(a, b),
                dropped: pick(b, a),
            }
        })
        .collect();
    rows.sort_by(|x, y| {
        y.drift
            .total_cmp(&x.drift)
            .then_with(|| (y.added.len() + y.dropped.len()).cmp(&(x.added.len() + x.dropped.len())))
            .then_with(|| (x.prompt_id, x.model_id).cmp(&(y.prompt_id, y.model_id)))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::Mention;

    fn run(prompt_id: i64, model_id: i64, text: &str) -> RunText<'_> {
        RunText {
            prompt_id,
            model_id,
            text,
        }
    }

    fn sim(a: &[&str], b: &[&str]) -> f64 {
        let now: Vec<_> = a.iter().map(|t| run(1, 1, t)).collect();
        let before: Vec<_> = b.iter().map(|t| run(1, 1, t)).collect();
        text_drift(&now, &before)[&(1, 1)].similarity
    }

    #[test]
    fn words_are_lower_cased_unicode_words() {
        assert_eq!(
            words("Grüße, MÜLLER's CRM-Tool: 42 € 東京!"),
            ["grüße", "müller", "s", "crm", "tool", "42", "東京"]
        );
    }

    #[test]
    fn identical_texts_do_not_drift_and_disjoint_ones_drift_fully() {
        let a = "HubSpot is the best CRM for a small team.";
        assert!((sim(&[a, a], &[a]) - 1.0).abs() < 1e-12);
        // Case and punctuation are not drift.
        assert!((sim(&["hubspot IS the best crm, for a small team"], &[a]) - 1.0).abs() < 1e-12);
        assert_eq!(sim(&["Salesforce wins outright"], &[a]), 0.0);
        // The same words in another order share few bigrams.
        let shuffled = sim(&["small team a for CRM best the is HubSpot"], &[a]);
        assert!(shuffled < 0.2, "{shuffled}");
        // One word, empty answers.
        assert_eq!(sim(&["Yes"], &["yes."]), 1.0);
        assert_eq!(sim(&[""], &["  "]), 1.0);
        assert_eq!(sim(&[""], &[a]), 0.0);
    }

    #[test]
    fn every_run_weighs_the_same() {
        // Half the runs unchanged, half new: about half similar, whatever the lengths.
        let old = "pick hubspot for small teams";
        let new = "pipedrive suits sales teams better";
        let s = sim(&[old, new], &[old, old]);
        assert!((s - 1.0 / 2f64.sqrt()).abs() < 1e-9, "{s}");
        let long_new = format!("{new} {new} {new} {new}");
        let s2 = sim(&[old, &long_new], &[old]);
        assert!((s2 - s).abs() < 0.05, "{s2} against {s}");
    }

    fn analysed(prompt_id: i64, model_id: i64, terms: &[&str]) -> AnalysedAnswer {
        AnalysedAnswer {
            response_id: 0,
            prompt_id,
            model_id,
            mentions: terms
                .iter()
                .enumerate()
                .map(|(i, t)| Mention {
                    term: (*t).to_owned(),
                    count: 1,
                    rank: i as i64 + 1,
                    list_position: None,
                })
                .collect(),
            domains: Vec::new(),
        }
    }

    #[test]
    fn movers_come_first_with_the_terms_added_and_dropped() {
        let same = "HubSpot then Salesforce, see the docs";
        let now = [
            run(1, 1, same),
            run(2, 1, "Pipedrive only, nothing else at all"),
            run(3, 1, same),
            run(4, 1, "new prompt, no previous batch"),
            run(1, 2, "HubSpot then Salesforce, read the docs"),
        ];
        let before = [
            run(1, 1, same),
            run(2, 1, same),
            run(3, 1, same),
            run(1, 2, same),
        ];
        let text = text_drift(&now, &before);
        assert_eq!(text.len(), 4, "prompt 4 has nothing to compare with");
        let terms: Vec<String> = ["HubSpot", "Salesforce", "Pipedrive"]
            .map(String::from)
            .into();
        let now_a = [
            analysed(1, 1, &["HubSpot", "Salesforce"]),
            analysed(2, 1, &["Pipedrive"]),
            analysed(3, 1, &["Salesforce"]),
            analysed(1, 2, &["HubSpot", "Salesforce"]),
        ];
        let before_a = [
            analysed(1, 1, &["HubSpot", "Salesforce"]),
            analysed(2, 1, &["Salesforce", "HubSpot"]),
            analysed(3, 1, &["HubSpot", "Salesforce"]),
            analysed(1, 2, &["HubSpot", "Salesforce"]),
        ];
        let rows = movers(&text, &terms, &now_a, &before_a);
        let order: Vec<(i64, i64)> = rows.iter().map(|r| (r.prompt_id, r.model_id)).collect();
        // Prompt 2 changed wholly; model 2 changed one word; prompts 1 and 3 have the same
        // text, and prompt 3 dropped a term, so it comes before prompt 1.
        assert_eq!(order, [(2, 1), (1, 2), (3, 1), (1, 1)]);
        assert_eq!(rows[0].drift, 1.0);
        assert_eq!(rows[0].added, ["Pipedrive"]);
        assert_eq!(rows[0].dropped, ["HubSpot", "Salesforce"]);
        assert!(rows[1].drift > 0.0 && rows[1].drift < 1.0, "{:?}", rows[1]);
        assert_eq!(rows[2].dropped, ["HubSpot"]);
        assert!(rows[2].added.is_empty());
        assert_eq!((rows[3].drift, rows[3].similarity), (0.0, 1.0));
        assert!(rows[3].added.is_empty() && rows[3].dropped.is_empty());
    }
}
