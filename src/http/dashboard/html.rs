//! The dashboard's HTML toolkit: escaping, the page frame, and the small pieces every page
//! shares (status badges, progress bars, times, truncation).
//!
//! Pages are written with `write!` into a `String`. The one rule that keeps them safe: every
//! value that did not come from this source file (prompt text, model names, error messages,
//! responses, batch keys, anything from the database or the request) goes through [`Esc`],
//! and attributes are always double-quoted. A strict Content-Security-Policy (no scripts at all,
//! see `super::security_headers`) is the second line of defence should that rule ever slip.

use std::fmt::{self, Display, Write as _};

use chrono::{DateTime, Utc};

use crate::domain::{JobStatus, Summary};

/// Text made safe for HTML element content and double- or single-quoted attribute values
/// (and so for SVG text, which follows the same rules).
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut clean_from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            // The escaped bytes are ASCII, so these slice bounds are character boundaries.
            f.write_str(&text[clean_from..at])?;
            f.write_str(entity)?;
            clean_from = at + 1;
        }
        f.write_str(&text[clean_from..])
    }
}

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
pub fn document(frame: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if frame.refresh {
        // No script: the browser reloads by itself while work is in flight.
        let _ = write!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        );
    }
    let _ = write!(out, "<title>{} · promptq</title>", Esc(frame.title));
    out.push_str(STYLE);
    out.push_str("</head><body><header><a class=\"brand\" href=\"/\">promptq</a><nav>");
    if frame.nav {
        out.push_str("<a href=\"/\">Overview</a><a href=\"/failed\">Failed jobs</a>");
    }
    if frame.logout {
        out.push_str(
            "<form method=\"post\" action=\"/logout\" class=\"inline\">\
             <button type=\"submit\" class=\"link\">Log out</button></form>",
        );
    }
    out.push_str("</nav></header><main>");
    if frame.refresh {
        let _ = write!(
            out,
            "<p class=\"live\">Work in progress: this page reloads every {REFRESH_SECS} s.</p>"
        );
    }
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// Light and readable; no external resources (the CSP allows none).
const STYLE: &str = "<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.5em;background:#fff;border-bottom:1px solid #e1e4ea}
header nav{display:flex;gap:1em;align-items:center}
a{color:#2150a8;text-decoration:none}a:hover{text-decoration:underline}
.brand{font-weight:700;color:#1d2330}
main{padding:1em 1.5em;max-width:1200px}
h1{font-size:1.4em;margin:.4em 0}h2{font-size:1.1em;margin:1.4em 0 .5em}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e8eaef;vertical-align:top}
th{font-weight:600;color:#555;font-size:.9em}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}td.nw{white-space:nowrap}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e1e4ea;padding:.8em;max-height:40em;overflow:auto}
.st{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em}
.st-queued{background:#e8ecf3}.st-processing{background:#d6e4ff}.st-succeeded{background:#d5f0dc}
.st-failed{background:#fadadb}.st-skipped{background:#eee;color:#666}
.bar{display:flex;height:.9em;width:14em;background:#eef0f4;border-radius:.3em;overflow:hidden}
.bar span{display:block;height:100%}
.c-succeeded{background:#3aa55d}.c-failed{background:#d64545}.c-skipped{background:#aaa}
.c-processing{background:#4d7fe0}.c-queued{background:#c9d3e6}
.muted{color:#777}.err{color:#a12a2a}.live{color:#2150a8;font-size:.9em}
form.inline{display:inline;margin:0}
button{font:inherit;padding:.2em .8em;border:1px solid #b8c0cf;border-radius:.3em;background:#fff;cursor:pointer}
button.primary{background:#2150a8;border-color:#2150a8;color:#fff}
button.link{border:none;background:none;color:#2150a8;padding:0}
.filters a{margin-right:.8em}.filters a.on{font-weight:700}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{color:#555}dd{margin:0}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #e1e4ea}
.login input{width:100%;box-sizing:border-box;padding:.4em;margin:.4em 0 .8em;font:inherit}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
</style>";

/// A status as a coloured badge.
pub fn badge(status: JobStatus) -> String {
    format!("<span class=\"st st-{status}\">{status}</span>")
}

/// The statuses in the order a progress bar stacks them.
const BAR_ORDER: [JobStatus; 5] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Skipped,
    JobStatus::Processing,
    JobStatus::Queued,
];

/// How many of `summary`'s jobs are in `status`.
pub fn count(summary: &Summary, status: JobStatus) -> i64 {
    match status {
        JobStatus::Queued => summary.queued,
        JobStatus::Processing => summary.processing,
        JobStatus::Succeeded => summary.succeeded,
        JobStatus::Failed => summary.failed,
        JobStatus::Skipped => summary.skipped,
    }
}

/// Whether jobs of `summary` may still move (the page should refresh itself).
pub fn running(summary: &Summary) -> bool {
    summary.queued + summary.processing > 0
}

/// A stacked bar of a batch's jobs by status, finished ones first.
pub fn progress_bar(summary: &Summary) -> String {
    let mut out = String::from("<div class=\"bar\" role=\"img\" aria-label=\"");
    let done = summary.succeeded + summary.failed + summary.skipped;
    let _ = write!(out, "{done} of {} finished\">", summary.total);
    if summary.total > 0 {
        for status in BAR_ORDER {
            let n = count(summary, status);
            if n > 0 {
                let width = 100.0 * n as f64 / summary.total as f64;
                let _ = write!(
                    out,
                    "<span class=\"c-{status}\" style=\"width:{width:.2}%\" title=\"{n} {status}\"></span>"
                );
            }
        }
    }
    out.push_str("</div>");
    out
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
    fn escapes_every_markup_character() {
        assert_eq!(
            Esc("<script>alert(\"x\" & 'y')</script>").to_string(),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(Esc("plain é ☃").to_string(), "plain é ☃");
        assert_eq!(Esc("").to_string(), "");
        assert_eq!(Esc("é<ü>").to_string(), "é&lt;ü&gt;");
    }

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
        let bar = progress_bar(&summary);
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
        assert!(document(&frame(true), "").contains("http-equiv=\"refresh\""));
        let still = document(&frame(false), "");
        assert!(!still.contains("http-equiv"));
        assert!(still.contains("<title>&lt;t&gt; · promptq</title>"));
        assert!(!still.contains("/logout"));
    }
}
