//! Every page's HTML is well nested: a small checker of the nesting rules that browsers repair
//! silently (and so hide), run over each page the dashboard serves.
//!
//! The pages are generated, so they close every element they open; what can go wrong is
//! *where* an element sits. Checked: every end tag closes the element open at that point; no
//! block (`div`, `table`, `form`, a heading…) inside a `p` or inside phrasing content (`span`,
//! `button`, a heading…) — the parser would end the `p` early and leave a stray `</p>`; no
//! `a` inside an `a`, `form` inside a `form`, `button` inside a `button`; table rows and cells,
//! list items and `dt`/`dd` only in their containers.

use serde_json::json;

use super::web::{ONE_ATTEMPT, seed_finished_batch, start};
use crate::support::TestDb;
use crate::support::on_both;

on_both!(
    threads = 2; owned;
    every_page_nests_its_elements_validly,
);

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];
/// Elements that end an open `p` and may not sit in phrasing content.
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "details",
    "dialog",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
];
/// Elements whose content is phrasing content only.
const PHRASING_ONLY: &[&str] = &[
    "p", "span", "button", "label", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code",
    "small", "b", "i", "title",
];

/// The nesting errors of `html`, empty when there are none.
pub fn nesting_errors(html: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("<!") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
            continue;
        }
        let Some(end) = tag_end(rest) else {
            errors.push("an unterminated tag".to_owned());
            break;
        };
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            match open.pop() {
                Some(top) if top == name => {}
                top => errors.push(format!(
                    "</{name}> closes {top:?} (open: {})",
                    open.join(">")
                )),
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let context = open.join(">");
        let inside = |names: &[&str]| open.iter().any(|o| names.contains(&o.as_str()));
        let parent = open.last().map(String::as_str).unwrap_or("");
        if BLOCK.contains(&name.as_str()) && inside(PHRASING_ONLY) {
            errors.push(format!("<{name}> inside phrasing content: {context}"));
        }
        for (nested, what) in [("a", "a"), ("form", "form"), ("button", "button")] {
            if name == nested && inside(&[what]) {
                errors.push(format!("<{name}> inside <{what}>: {context}"));
            }
        }
        let allowed: Option<&[&str]> = match name.as_str() {
            "tr" => Some(&["table", "thead", "tbody", "tfoot"]),
            "td" | "th" => Some(&["tr"]),
            "li" => Some(&["ul", "ol", "menu"]),
            "dt" | "dd" => Some(&["dl", "div"]),
            _ => None,
        };
        if let Some(allowed) = allowed
            && !allowed.contains(&parent)
        {
            errors.push(format!("<{name}> in <{parent}>: {context}"));
        }
        let self_closed = tag.trim_end().ends_with('/');
        if VOID.contains(&name.as_str()) || self_closed {
            continue;
        }
        if name == "style" || name == "script" {
            // Raw text up to the end tag.
            let close = format!("</{name}>");
            rest = rest.find(&close).map_or("", |at| &rest[at + close.len()..]);
            continue;
        }
        open.push(name);
    }
    if !open.is_empty() {
        errors.push(format!("left open: {}", open.join(">")));
    }
    errors
}

/// The index of the `>` that ends the tag at the start of `text`, skipping quoted values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

#[test]
fn the_checker_finds_what_browsers_would_repair() {
    let ok = "<!doctype html><html><head><style>p>a{}</style></head><body>\
              <p>a <a href=\"x>y\">b</a><br></p><table><tr><td>1</td></tr></table></body></html>";
    assert_eq!(nesting_errors(ok), Vec::<String>::new());
    for bad in [
        "<p><div></div></p>",
        "<p><span class=\"x\"><table></table></span></p>",
        "<a href=\"/\"><a href=\"/\">x</a></a>",
        "<form><form></form></form>",
        "<div><td>x</td></div>",
        "<div><span></div></span>",
        "<h1><div>x</div></h1>",
        "<div>",
    ] {
        assert!(!nesting_errors(bad).is_empty(), "{bad} passed");
    }
}

pub async fn every_page_nests_its_elements_validly(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    let login = dash.get("/login").await;
    let mut pages = vec![("/login".to_owned(), login)];
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    // A second batch still waiting: its pages show the cancel buttons.
    dash.server.get("/api/cron?batchKey=2025-10-13").await;
    let queued = dash.server.job_ids("2025-10-13").await[0];
    let prompt = dash.server.get("/api/prompts").await.json["prompts"][0]["id"].clone();
    assert_ne!(prompt, json!(null));
    let key = &seeded.batch_key;
    for path in [
        "/".to_owned(),
        "/batches".to_owned(),
        format!("/batches/{key}"),
        format!("/batches/{key}?status=failed"),
        "/batches/2025-10-13".to_owned(),
        format!("/batches/{key}/prompts/{prompt}"),
        "/failed".to_owned(),
        format!("/failed?batch={key}"),
        format!("/jobs/{}", seeded.failed[0]),
        format!("/jobs/{}", seeded.succeeded[0]),
        format!("/jobs/{queued}"),
        "/jobs/999999".to_owned(),
        "/batches/not-a-key".to_owned(),
    ] {
        let page = dash.get(&path).await;
        pages.push((path, page));
    }
    for (path, page) in &pages {
        assert!(page.text.starts_with("<!doctype html>"), "{path}: {page:?}");
        let errors = nesting_errors(&page.text);
        assert!(errors.is_empty(), "{path}: {errors:#?}\n{}", page.text);
    }
}
