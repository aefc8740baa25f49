//! The dashboard's HTML toolkit: the page frame, and the small pieces every page shares
//! (status badges, progress bars, times, truncation).
//!
//! Pages are [`maud`] templates, checked when the crate compiles. Escaping is by type, not by
//! habit: a `String` or `&str` spliced into a template (`(text)`) is always escaped, in element
//! content and in (always double-quoted) attributes alike; only a [`Markup`] goes in as is, and
//! a `Markup` can only come from another template or from [`PreEscaped`], which this crate uses
//! for constants alone (the style sheet, the doctype). A strict Content-Security-Policy (no scripts at all, see
//! `super::security_headers`) is the second line of defence.

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use crate::domain::{JobStatus, Summary};

/// What a page needs besides its body.
pub struct Frame<'a> {
    pub title: &'a str,
    /// Reload every few seconds (a batch or job is still running).
    pub refresh: bool,
    /// Show the links to the pages (not on the login form, where they would only lead back).
    pub nav: bool,
    /// Show the logout button (only when the dashboard has a secret to log in with).
    pub logout: bool,
}

/// Seconds between reloads of a page whose batch or job is still running.
pub const REFRESH_SECS: u32 = 5;

/// The whole document around `body`.
pub fn document(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        // maud's DOCTYPE is upper-case; the lower-case one is the same to every browser.
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if frame.refresh {
                    // No script: the browser reloads by itself while work is in flight.
                    meta http-equiv="refresh" content=(REFRESH_SECS);
                }
                title { (frame.title) " · promptq" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a.brand href="/" { "promptq" }
                    nav {
                        @if frame.nav {
                            a href="/" { "Overview" }
                            a href="/batches" { "Batches" }
                            a href="/failed" { "Failed jobs" }
                            a href="/trackers" { "Trackers" }
                        }
                        @if frame.logout {
                            form.inline method="post" action="/logout" {
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @if frame.refresh {
                        p.live { "Work in progress: this page reloads every " (REFRESH_SECS) " s." }
                    }
                    (body)
                }
            }
        }
    }
}

/// Light and readable; no external resources (the CSP allows none). Nothing is wider than the
/// screen: tables and the chart scroll inside their own box ([`scroll`]) so that a phone never
/// scrolls the page sideways, and long words (URLs, ids in errors) break.
const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{display:flex;flex-wrap:wrap;gap:.4em 1.5em;align-items:center;padding:.6em 1.5em;background:#fff;border-bottom:1px solid #e1e4ea}
header nav{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center}
a{color:#2150a8;text-decoration:none}a:hover{text-decoration:underline}
.brand{font-weight:700;color:#1d2330}
main{padding:1em 1.5em;max-width:1200px;box-sizing:border-box}
h1{font-size:1.4em;margin:.4em 0;overflow-wrap:anywhere}h2{font-size:1.1em;margin:1.4em 0 .5em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e8eaef;vertical-align:top;overflow-wrap:break-word}
th{font-weight:600;color:#555;font-size:.9em}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.nw{white-space:nowrap}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e1e4ea;padding:.8em;max-height:40em;overflow:auto}
.st{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em}
.st-queued{background:#e8ecf3}.st-processing{background:#d6e4ff}.st-submitted{background:#e6dcfa}.st-succeeded{background:#d5f0dc}
.st-failed{background:#fadadb}.st-skipped{background:#eee;color:#666}
.bar{display:flex;height:.9em;width:14em;max-width:100%;background:#eef0f4;border-radius:.3em;overflow:hidden}
.summary .bar{display:inline-flex;vertical-align:middle}
.summary,.actions{margin:.6em 0}.actions form{margin-right:.6em}
.bar span{display:block;height:100%}
.c-succeeded{background:#3aa55d}.c-failed{background:#d64545}.c-skipped{background:#aaa}
.c-processing{background:#4d7fe0}.c-submitted{background:#8a63d2}.c-queued{background:#c9d3e6}
.muted{color:#777}.err{color:#a12a2a}.live{color:#2150a8;font-size:.9em}
form.inline{display:inline;margin:0}
button{font:inherit;padding:.2em .8em;border:1px solid #b8c0cf;border-radius:.3em;background:#fff;cursor:pointer}
button.primary{background:#2150a8;border-color:#2150a8;color:#fff}
button.link{border:none;background:none;color:#2150a8;padding:0}
.filters a{margin-right:.8em;display:inline-block}.filters a.on{font-weight:700}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2em 1em}dt{color:#555}dd{margin:0;overflow-wrap:anywhere}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #e1e4ea}
.login input{width:100%;box-sizing:border-box;padding:.4em;margin:.4em 0 .8em;font:inherit}
svg text{font:13px system-ui,sans-serif;fill:#1d2330}
svg.chart{display:block;width:100%;max-width:625px;height:auto}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,22em),1fr));gap:1em}
.answers section{background:#fff;border:1px solid #e1e4ea;padding:.6em .8em;min-width:0}
.answers h3{font-size:1em;margin:0 0 .4em}
mark{background:#ffe58a;padding:0 .1em}.excerpt{margin:0 0 .5em;overflow-wrap:anywhere}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,24em),1fr));gap:1em}.answers pre{border:none;padding:0;margin:.4em 0 0}
@media (max-width:600px){header,main{padding-left:.7em;padding-right:.7em}th,td{padding:.3em .35em}.bar{width:5em}}
";

/// `inner` in a box that scrolls sideways by itself when it is wider than the screen.
pub fn scroll(inner: Markup) -> Markup {
    html! { div.scroll { (inner) } }
}

/// A status as a coloured badge.
pub fn badge(status: JobStatus) -> Markup {
    html! { span class={ "st st-" (status.to_string()) } { (status.to_string()) } }
}

/// The statuses in the order a progress bar stacks them.
const BAR_ORDER: [JobStatus; 6] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Skipped,
    JobStatus::Submitted,
    JobStatus::Processing,
    JobStatus::Queued,
];

/// How many of `summary`'s jobs are in `status`.
pub fn count(summary: &Summary, status: JobStatus) -> i64 {
    match status {
        JobStatus::Queued => summary.queued,
        JobStatus::Processing => summary.processing,
        JobStatus::Submitted => summary.submitted,
        JobStatus::Succeeded => summary.succeeded,
        JobStatus::Failed => summary.failed,
        JobStatus::Skipped => summary.skipped,
    }
}

/// Whether jobs of `summary` may still move (the page should refresh itself).
pub fn running(summary: &Summary) -> bool {
    summary.queued + summary.in_flight() > 0
}

/// A stacked bar of a batch's jobs by status, finished ones first.
pub fn progress_bar(summary: &Summary) -> Markup {
    let done = summary.succeeded + summary.failed + summary.skipped;
    let parts = BAR_ORDER
        .into_iter()
        .map(|status| (status, count(summary, status)))
        .filter(|(_, n)| summary.total > 0 && *n > 0);
    html! {
        div.bar role="img" aria-label={ (done) " of " (summary.total) " finished" } {
            @for (status, n) in parts {
                span class={ "c-" (status.to_string()) }
                    style={ "width:" (format!("{:.2}", 100.0 * n as f64 / summary.total as f64)) "%" }
                    title={ (n) " " (status.to_string()) } {}
            }
        }
    }
}

/// A time for people: UTC to the second.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt_time(at: Option<DateTime<Utc>>) -> String {
    at.map(time).unwrap_or_else(|| "—".to_owned())
}

/// A latency in milliseconds, in the unit that reads best.
pub fn millis(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// At most `max` characters of `text`, with an ellipsis when something was cut. Not escaped.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("héllo wörld", 5), "héllo…");
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("☃☃☃", 2), "☃☃…");
    }

    #[test]
    fn progress_bar_widths_follow_the_counts() {
        let mut summary = Summary::default();
        summary.add(JobStatus::Succeeded, 3);
        summary.add(JobStatus::Failed, 1);
        let bar = progress_bar(&summary).into_string();
        assert!(bar.contains("width:75.00%"), "{bar}");
        assert!(bar.contains("width:25.00%"), "{bar}");
        assert!(bar.contains("4 of 4 finished"), "{bar}");
        assert!(!running(&summary));
    }

    #[test]
    fn the_document_refreshes_only_when_asked() {
        let frame = |refresh| Frame {
            title: "<t>",
            refresh,
            nav: true,
            logout: false,
        };
        let empty = || html! {};
        assert!(
            document(&frame(true), empty())
                .into_string()
                .contains("http-equiv=\"refresh\"")
        );
        let still = document(&frame(false), empty()).into_string();
        assert!(!still.contains("http-equiv"));
        assert!(still.contains("<title>&lt;t&gt; · promptq</title>"));
        assert!(!still.contains("/logout"));
    }
}
