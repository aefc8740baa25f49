//! Excerpts of an answer around its mentions, for showing: a window of context on each side of
//! each mention, overlapping windows merged, the mentions marked. Plain pieces of text: whoever
//! renders them escapes them (answers are untrusted input).

/// Characters of context shown on each side of a mention.
pub const CONTEXT_CHARS: usize = 60;
/// Windows shown per answer; the rest of the answer is left out.
pub const MAX_WINDOWS: usize = 4;

/// A mention's byte span and its term.
type Span<'a> = (usize, usize, &'a str);

/// A piece of an excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A mention: the text as written, and the term it names.
    Mark(String, String),
    /// Text left out.
    Gap,
}

/// The byte offset `chars` characters before `at` (or 0).
fn back(text: &str, at: usize, chars: usize) -> usize {
    text[..at]
        .char_indices()
        .rev()
        .nth(chars.saturating_sub(1))
        .map_or(0, |(i, _)| i)
}

/// The byte offset `chars` characters after `at` (or the end).
fn ahead(text: &str, at: usize, chars: usize) -> usize {
    text[at..]
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| at + i)
}

/// The excerpts of `text` around `spans` (byte spans on character boundaries, ordered and
/// not overlapping, as [`super::matcher::Matcher::spans`] gives them).
pub fn excerpt(text: &str, spans: &[(usize, usize, &str)]) -> Vec<Piece> {
    let valid = |&&(s, e, _): &&(usize, usize, &str)| {
        s < e && e <= text.len() && text.is_char_boundary(s) && text.is_char_boundary(e)
    };
    // Windows of context, merged when they touch.
    let mut windows: Vec<(usize, usize, Vec<Span>)> = Vec::new();
    for &(s, e, term) in spans.iter().filter(valid) {
        let (from, to) = (back(text, s, CONTEXT_CHARS), ahead(text, e, CONTEXT_CHARS));
        match windows.last_mut() {
            Some(last) if from <= last.1 && s >= last.2.last().map_or(0, |m| m.1) => {
                last.1 = last.1.max(to);
                last.2.push((s, e, term));
            }
            _ => {
                if windows.len() == MAX_WINDOWS {
                    break;
                }
                windows.push((from, to, vec![(s, e, term)]));
            }
        }
    }
    let mut pieces = Vec::new();
    let mut shown_to = 0;
    for (from, to, marks) in windows {
        if from > shown_to {
            pieces.push(Piece::Gap);
        }
        let mut at = from.max(shown_to);
        for (s, e, term) in marks {
            if s > at {
                pieces.push(Piece::Text(text[at..s].to_owned()));
            }
            pieces.push(Piece::Mark(text[s..e].to_owned(), term.to_owned()));
            at = e;
        }
        if to > at {
            pieces.push(Piece::Text(text[at..to].to_owned()));
        }
        shown_to = to;
    }
    if shown_to < text.len() && !pieces.is_empty() {
        pieces.push(Piece::Gap);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Mark(t, term) => format!("[{t}|{term}]"),
                Piece::Gap => "…".to_owned(),
            })
            .collect()
    }

    fn spans<'a>(text: &str, words: &[(&str, &'a str)]) -> Vec<(usize, usize, &'a str)> {
        words
            .iter()
            .map(|(w, term)| {
                let s = text.find(w).unwrap();
                (s, s + w.len(), *term)
            })
            .collect()
    }

    #[test]
    fn a_short_answer_is_shown_whole_with_its_mentions_marked() {
        let text = "Try HubSpot, then Salesforce.";
        let got = excerpt(
            text,
            &spans(text, &[("HubSpot", "HubSpot"), ("Salesforce", "SF")]),
        );
        assert_eq!(render(&got), "Try [HubSpot|HubSpot], then [Salesforce|SF].");
    }

    #[test]
    fn long_answers_are_cut_around_the_mentions_on_character_boundaries() {
        let pad = "é".repeat(200);
        let text = format!("{pad} HubSpot {pad} Zoho {pad}");
        let got = render(&excerpt(
            &text,
            &spans(&text, &[("HubSpot", "H"), ("Zoho", "Z")]),
        ));
        let context = "é".repeat(CONTEXT_CHARS - 1);
        assert_eq!(
            got,
            format!("…{context} [HubSpot|H] {context}…{context} [Zoho|Z] {context}…")
        );
    }

    #[test]
    fn no_mentions_no_excerpt_and_windows_are_capped() {
        assert!(excerpt("nothing here", &[]).is_empty());
        let text = "x ".repeat(1000);
        let many: Vec<(usize, usize, &str)> =
            (0..10).map(|i| (i * 200, i * 200 + 1, "X")).collect();
        let marks = excerpt(&text, &many)
            .iter()
            .filter(|p| matches!(p, Piece::Mark(..)))
            .count();
        assert_eq!(marks, MAX_WINDOWS);
        // Spans that do not fit the text are ignored, not a panic.
        assert!(excerpt("short", &[(3, 99, "X")]).is_empty());
    }
}
