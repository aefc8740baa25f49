//! Finds a tracker's terms in one answer: how often each is named, in which order, and at which
//! position of a numbered or bulleted list.
//!
//! A pattern is a literal alias, or a regular expression written between slashes (`/hub ?spot/`).
//! Both match case-insensitively (Unicode case folding: "MÜLLER" finds "Müller") and only as
//! whole words: the characters just before and after a match must not be letters, digits or
//! `_`, so "HubSpot's" names HubSpot and "hubspotter" does not. The check is made around each
//! match rather than with `\b`, so that aliases that begin or end with punctuation ("C++",
//! ".NET") work too. Regular expressions are compiled by the `regex` crate (linear time, no
//! backtracking) under a size limit, so a user's pattern costs bounded time and memory; a
//! pattern that does not compile, or is too large, is refused with the reason.

use regex::{Regex, RegexBuilder};

use super::{Mention, Term};

/// The most terms a tracker may have, patterns a term may have, and characters a pattern may have.
pub const MAX_TERMS: usize = 200;
pub const MAX_PATTERNS: usize = 50;
pub const MAX_PATTERN_CHARS: usize = 300;
/// The compiled size a term's patterns may take (the `regex` crate's own limit is 10 MiB).
const COMPILED_LIMIT: usize = 1 << 20;

/// A tracker's terms, compiled.
#[derive(Debug, Clone)]
pub struct Matcher {
    terms: Vec<(String, Regex)>,
}

/// Checks a tracker's name and terms; the message names the offending term and pattern.
pub fn check(name: &str, terms: &[Term]) -> Result<Matcher, String> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err("a tracker needs a name of 1 to 100 characters".to_owned());
    }
    Matcher::new(terms)
}

impl Matcher {
    pub fn new(terms: &[Term]) -> Result<Matcher, String> {
        if terms.is_empty() {
            return Err("a tracker needs at least one term".to_owned());
        }
        if terms.len() > MAX_TERMS {
            return Err(format!("a tracker may have at most {MAX_TERMS} terms"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut compiled = Vec::with_capacity(terms.len());
        for (i, term) in terms.iter().enumerate() {
            let name = term.name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                return Err(format!(
                    "terms[{i}]: a term needs a name of 1 to 100 characters"
                ));
            }
            if !seen.insert(name.to_lowercase()) {
                return Err(format!("terms[{i}]: the term '{name}' is listed twice"));
            }
            compiled.push((
                name.to_owned(),
                compile(name, &term.patterns).map_err(|e| format!("terms[{i}] ('{name}'): {e}"))?,
            ));
        }
        Ok(Matcher { terms: compiled })
    }

    /// The terms named in `text`, in order of first appearance (that order is the rank).
    pub fn mentions(&self, text: &str) -> Vec<Mention> {
        let items = list_items(text);
        let mut found: Vec<(usize, usize, Mention)> = Vec::new();
        for (order, (name, regex)) in self.terms.iter().enumerate() {
            let spans = word_matches(regex, text);
            let Some(&(first, _)) = spans.first() else {
                continue;
            };
            let list_position = spans.iter().find_map(|&(start, _)| {
                items
                    .iter()
                    .position(|&(s, e)| s <= start && start < e)
                    .map(|i| i as i64 + 1)
            });
            found.push((
                first,
                order,
                Mention {
                    term: name.clone(),
                    count: spans.len() as i64,
                    rank: 0,
                    list_position,
                },
            ));
        }
        found.sort_by_key(|&(first, order, _)| (first, order));
        found
            .into_iter()
            .enumerate()
            .map(|(i, (_, _, mut mention))| {
                mention.rank = i as i64 + 1;
                mention
            })
            .collect()
    }
}

impl Matcher {
    /// Every whole-word mention in `text` as `(start, end, term)` byte spans, in order; where
    /// two terms' matches overlap, the earlier (then the longer) one is kept.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize, &str)> {
        let mut all: Vec<(usize, usize, &str)> = self
            .terms
            .iter()
            .flat_map(|(name, regex)| {
                word_matches(regex, text)
                    .into_iter()
                    .map(move |(s, e)| (s, e, name.as_str()))
            })
            .collect();
        all.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        let mut kept: Vec<(usize, usize, &str)> = Vec::with_capacity(all.len());
        for span in all {
            if kept.last().is_none_or(|last| span.0 >= last.1) {
                kept.push(span);
            }
        }
        kept
    }
}

/// One regular expression for all of a term's patterns (the name alone when there are none).
fn compile(name: &str, patterns: &[String]) -> Result<Regex, String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} patterns a term"));
    }
    let own = [name.to_owned()];
    let patterns = if patterns.is_empty() {
        &own[..]
    } else {
        patterns
    };
    let mut parts = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        if pattern.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "a pattern may have at most {MAX_PATTERN_CHARS} characters"
            ));
        }
        let part = match regex_body(pattern) {
            Some(body) => {
                // Compiled alone first, so that the error names this pattern.
                build(body).map_err(|e| format!("pattern {pattern}: {e}"))?;
                body.to_owned()
            }
            None if pattern.trim().is_empty() => return Err("a pattern is empty".to_owned()),
            None => regex::escape(pattern.trim()),
        };
        parts.push(format!("(?:{part})"));
    }
    build(&parts.join("|"))
}

/// `/body/` → `body`: a pattern between slashes is a regular expression.
fn regex_body(pattern: &str) -> Option<&str> {
    let p = pattern.trim();
    (p.len() > 2 && p.starts_with('/') && p.ends_with('/')).then(|| &p[1..p.len() - 1])
}

fn build(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(COMPILED_LIMIT)
        .dfa_size_limit(COMPILED_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
            // The syntax error's own text points at the place (multi-line); keep it on one.
            other => other
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The matches of `regex` that stand as whole words, as byte spans. A candidate inside a
/// longer word is skipped and the search resumes one character later, so that an overlapping
/// whole-word match is still found.
fn word_matches(regex: &Regex, text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at <= text.len() {
        let Some(m) = regex.find_at(text, at) else {
            break;
        };
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        let standalone =
            m.end() > m.start() && !before.is_some_and(is_word) && !after.is_some_and(is_word);
        if standalone {
            spans.push((m.start(), m.end()));
            at = m.end();
        } else {
            // Skip one character (not one byte: the next search must start on a boundary).
            at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        }
    }
    spans
}

/// The byte spans of the answer's list items: lines that start with `1.`, `1)`, `-`, `*`, `+`
/// or `•`, each running until the next item, a blank line or the end.
fn list_items(text: &str) -> Vec<(usize, usize)> {
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if is_item(line) {
            if let Some(s) = open.take() {
                items.push((s, start));
            }
            open = Some(start);
        } else if line.trim().is_empty()
            && let Some(s) = open.take()
        {
            items.push((s, start));
        }
    }
    if let Some(s) = open {
        items.push((s, text.len()));
    }
    items
}

fn is_item(line: &str) -> bool {
    let line = line.trim_start();
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    let rest = if (1..=3).contains(&digits) {
        match line[digits..].strip_prefix(['.', ')']) {
            Some(rest) => rest,
            None => return false,
        }
    } else if let Some(rest) = line.strip_prefix(['-', '*', '+', '•']) {
        rest
    } else {
        return false;
    };
    rest.starts_with([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(name: &str, patterns: &[&str]) -> Term {
        Term {
            name: name.to_owned(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn counts(matcher: &Matcher, text: &str) -> Vec<(String, i64)> {
        matcher
            .mentions(text)
            .into_iter()
            .map(|m| (m.term, m.count))
            .collect()
    }

    #[test]
    fn whole_words_any_case_with_possessives() {
        let m = Matcher::new(&[term("HubSpot", &[])]).unwrap();
        assert_eq!(
            counts(&m, "HubSpot's CRM; HUBSPOT again"),
            vec![("HubSpot".into(), 2)]
        );
        assert!(m.mentions("a hubspotter and prehubspot").is_empty());
        assert!(m.mentions("hub_spot hubspot_x").is_empty());
    }

    #[test]
    fn unicode_words_and_case() {
        let m = Matcher::new(&[term("Müller", &[])]).unwrap();
        assert_eq!(counts(&m, "MÜLLER und müller"), vec![("Müller".into(), 2)]);
        assert!(m.mentions("Müllerei").is_empty());
        // A letter outside ASCII next to the match makes it part of a longer word.
        let m = Matcher::new(&[term("Zoho", &[])]).unwrap();
        assert!(m.mentions("éZoho").is_empty());
    }

    #[test]
    fn aliases_and_regular_expressions() {
        let m = Matcher::new(&[
            term("HubSpot", &["HubSpot", "/hub\\s+spot/"]),
            term("C++", &[]),
        ])
        .unwrap();
        assert_eq!(
            counts(&m, "Hub  Spot, hubspot and C++."),
            vec![("HubSpot".into(), 2), ("C++".into(), 1)]
        );
        // An overlapping candidate inside a word does not hide a whole word that follows.
        let m = Matcher::new(&[term("ab", &["/a+b/"])]).unwrap();
        assert_eq!(counts(&m, "xaab"), vec![]);
        assert_eq!(counts(&m, "aab!"), vec![("ab".into(), 1)]);
    }

    #[test]
    fn spans_are_ordered_and_do_not_overlap() {
        let m =
            Matcher::new(&[term("Sales", &[]), term("Salesforce", &["/sales ?force/"])]).unwrap();
        let text = "Sales force and Salesforce; sales.";
        let spans = m.spans(text);
        let found: Vec<(&str, &str)> = spans.iter().map(|&(s, e, t)| (&text[s..e], t)).collect();
        assert_eq!(
            found,
            [
                ("Sales force", "Salesforce"),
                ("Salesforce", "Salesforce"),
                ("sales", "Sales")
            ]
        );
    }

    #[test]
    fn ranks_follow_first_appearance() {
        let m = Matcher::new(&[
            term("A", &["alpha"]),
            term("B", &["beta"]),
            term("C", &["gamma"]),
        ])
        .unwrap();
        let found = m.mentions("gamma first, then alpha, gamma, no beta-less? beta");
        let ranks: Vec<(&str, i64)> = found.iter().map(|f| (f.term.as_str(), f.rank)).collect();
        assert_eq!(ranks, vec![("C", 1), ("A", 2), ("B", 3)]);
    }

    #[test]
    fn list_positions_count_items_in_order() {
        let m = Matcher::new(&[
            term("A", &["alpha"]),
            term("B", &["beta"]),
            term("C", &["gamma"]),
        ])
        .unwrap();
        let text = "Intro naming gamma.\n\n1. Beta is good\n   and long\n2) Something\n- alpha here\n\nAfter: gamma";
        let found = m.mentions(text);
        let pos: Vec<(&str, Option<i64>)> = found
            .iter()
            .map(|f| (f.term.as_str(), f.list_position))
            .collect();
        assert_eq!(pos, vec![("C", None), ("B", Some(1)), ("A", Some(3))]);
        assert!(!is_item("2024. was a year"));
        assert!(!is_item("-dash"));
        assert!(is_item("  • bullet"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        let err = Matcher::new(&[term("X", &["/(unclosed/"])]).unwrap_err();
        assert!(
            err.contains("terms[0]") && err.contains("(unclosed"),
            "{err}"
        );
        let err = Matcher::new(&[term("X", &["/a{1000}{1000}/"])]).unwrap_err();
        assert!(
            err.contains("too large") || err.contains("repetition"),
            "{err}"
        );
        assert!(Matcher::new(&[]).is_err());
        assert!(
            Matcher::new(&[term("X", &[]), term("x", &[])])
                .unwrap_err()
                .contains("twice")
        );
        assert!(Matcher::new(&[term("X", &["  "])]).is_err());
        assert!(check(" ", &[term("X", &[])]).is_err());
    }
}
