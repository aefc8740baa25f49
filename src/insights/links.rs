//! Finds the URLs an answer cites: in the provider's structured citations (as stored in the
//! answer's `citations` column) and in the text (markdown links and bare URLs).
//!
//! Structured citations come in the shapes providers return and the OpenAI client stores:
//! OpenAI's and OpenRouter's `annotations` (`{"type": "url_citation", "url_citation": {"url":
//! …}}`, or the URL directly on the annotation), a top-level `citations` array of URL strings,
//! or both (`{"citations": […], "annotations": […]}`). Every `url` field and every string in an
//! array that is an http(s) URL counts. A URL found in both places counts once, as structured.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Citation;

/// The most URLs kept of one answer (an answer listing thousands of links is noise).
const MAX_URLS: usize = 100;

/// The cited URLs of an answer, structured ones first, each once.
pub fn citations(text: &str, structured: Option<&str>) -> Vec<Citation> {
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut add = |url: String, structured: bool, found: &mut BTreeMap<String, bool>| {
        if found.len() >= MAX_URLS {
            return;
        }
        match found.get_mut(&url) {
            Some(seen) => *seen |= structured,
            None => {
                found.insert(url.clone(), structured);
                order.push(url);
            }
        }
    };
    if let Some(json) = structured.and_then(|s| serde_json::from_str::<Value>(s).ok()) {
        let mut urls = Vec::new();
        structured_urls(&json, false, &mut urls);
        for url in urls {
            add(url, true, &mut found);
        }
    }
    for url in text_urls(text) {
        add(url, false, &mut found);
    }
    order
        .into_iter()
        .filter_map(|url| {
            let domain = domain(&url)?;
            let structured = found.get(&url).copied().unwrap_or(false);
            Some(Citation {
                url,
                domain,
                structured,
            })
        })
        .collect()
}

/// Every `url` field, and every URL string in an array, anywhere in the JSON.
fn structured_urls(value: &Value, in_array: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) if in_array && is_http(s) => out.push(s.trim().to_owned()),
        Value::Array(items) => items.iter().for_each(|v| structured_urls(v, true, out)),
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key == "url" && is_http(s) => out.push(s.trim().to_owned()),
                    other => structured_urls(other, false, out),
                }
            }
        }
        _ => {}
    }
}

fn is_http(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("http://") || s.starts_with("https://")
}

/// Markdown links' targets and bare URLs, in order of appearance.
fn text_urls(text: &str) -> Vec<String> {
    let mut urls = Vec::new();
    let mut rest = text;
    while let Some(i) = find_scheme(rest) {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || "<>\"'`()[]{}|\\^".contains(c))
            .unwrap_or(tail.len());
        // A sentence's own punctuation after a URL is not part of it.
        let url = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_']);
        if url.len() > "https://".len() {
            urls.push(url.to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    urls
}

fn find_scheme(s: &str) -> Option<usize> {
    match (s.find("http://"), s.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `https://www.Example.com/x` → `example.com`; `None` for what is not a URL with a host.
pub fn domain(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_lowercase();
    Some(host.strip_prefix("www.").unwrap_or(&host).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(found: &[Citation]) -> Vec<(&str, &str, bool)> {
        found
            .iter()
            .map(|c| (c.url.as_str(), c.domain.as_str(), c.structured))
            .collect()
    }

    #[test]
    fn markdown_links_and_bare_urls() {
        let text = "See [the docs](https://www.HubSpot.com/crm?x=1). Also https://example.org/a, \
                    and (https://news.site.io/p). Not ftp://x.y nor http:// alone.";
        assert_eq!(
            urls(&citations(text, None)),
            vec![
                ("https://www.HubSpot.com/crm?x=1", "hubspot.com", false),
                ("https://example.org/a", "example.org", false),
                ("https://news.site.io/p", "news.site.io", false),
            ]
        );
    }

    #[test]
    fn openrouter_and_openai_annotations() {
        let annotations = r#"[{"type":"url_citation","url_citation":{"url":"https://g2.com/crm","title":"G2"}},
                               {"type":"url_citation","url":"https://capterra.com/x"}]"#;
        let found = citations("text cites https://g2.com/crm too", Some(annotations));
        assert_eq!(
            urls(&found),
            vec![
                ("https://g2.com/crm", "g2.com", true),
                ("https://capterra.com/x", "capterra.com", true),
            ]
        );
        let both = r#"{"citations":["https://a.com/1"],"annotations":[{"type":"url_citation","url_citation":{"url":"https://b.com/2"}}]}"#;
        assert_eq!(
            urls(&citations("", Some(both))),
            vec![
                ("https://b.com/2", "b.com", true),
                ("https://a.com/1", "a.com", true)
            ]
        );
        // Broken JSON is ignored, not an error: the text still counts.
        assert_eq!(citations("https://c.com", Some("{oops")).len(), 1);
    }
}
