//! Trackers and reports end to end, on both databases, over real HTTP: answers come from a
//! local OpenAI-compatible server (text and `url_citation` annotations chosen per answer), two
//! batches are processed through `/api/jobs/process`, the `promptq report` binary analyses
//! them, and the figures are read from `/api/insights/report` and from the binary's JSON and CSV.

use std::process::Command;

use serde_json::{Value, json};

use crate::http_api::operations::{assert_documented, assert_documented_exactly};
use crate::support::fake::{Fake, Reply};
use crate::support::server::{Server, start};
use crate::support::{PROMPTQ, TestDb, on_both};

on_both!(owned; trackers_report_mentions_citations_and_significant_changes);

const RUNS: usize = 4;

/// An answer as OpenRouter sends it: text, and optionally `url_citation` annotations.
pub(crate) fn answer(text: &str, cited: &[&str]) -> Reply {
    let annotations: Vec<Value> = cited
        .iter()
        .map(|url| json!({"type": "url_citation", "url_citation": {"url": url, "title": "t"}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": text});
    if !annotations.is_empty() {
        message["annotations"] = Value::Array(annotations);
    }
    Reply::json(
        200,
        json!({"id": "gen-1", "model": "fake-1", "choices": [{"index": 0, "message": message,
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 9,
            "total_tokens": 12}}),
    )
}

/// Runs every job of `batch`, answering the i-th with `replies[i]` (one job per reply).
pub(crate) async fn run_batch(server: &Server, fake: &Fake, batch: &str, replies: &[Reply]) {
    let cron = server.get(&format!("/api/cron?batchKey={batch}")).await;
    assert_eq!(
        cron.assert_ok()["jobsCreated"],
        replies.len() as i64,
        "{cron:?}"
    );
    let mut ids = server.job_ids(batch).await;
    ids.sort();
    assert_eq!(ids.len(), replies.len());
    for (id, reply) in ids.iter().zip(replies) {
        fake.reply(reply.clone());
        let done = server.post("/api/jobs/process", json!({"jobId": id})).await;
        assert_eq!(done.assert_ok()["status"], "succeeded", "{done:?}");
    }
}

/// `promptq ARGS` on the server's database; its standard output.
fn promptq(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(PROMPTQ)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run promptq");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn term<'a>(cell: &'a Value, name: &str) -> &'a Value {
    cell["terms"]
        .as_array()
        .expect("terms")
        .iter()
        .find(|t| t["term"] == name)
        .unwrap_or_else(|| panic!("no term {name} in {cell}"))
}

async fn trackers_report_mentions_citations_and_significant_changes(db: TestDb) {
    let server = start(db).await;
    let fake = Fake::start().await;
    let model = server
        .post(
            "/api/models",
            json!({"name": "fake", "provider": "openai-compatible", "model": "fake-1",
                   "params": {"baseUrl": fake.base_url()}}),
        )
        .await;
    assert_eq!(model.status, 201, "{model:?}");
    server
        .prompt("Which CRM is best for a small team?", RUNS as i32)
        .await;

    // A pattern that does not compile is refused, naming it; nothing is created.
    let bad = server
        .post(
            "/api/insights/trackers",
            json!({"name": "Bad", "terms": [{"name": "X", "patterns": ["/(unclosed/"]}]}),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.json["error"].as_str().unwrap().contains("(unclosed"),
        "{bad:?}"
    );
    let created = server
        .post(
            "/api/insights/trackers",
            json!({"name": "CRMs", "terms": [
                {"name": "HubSpot"},
                {"name": "Salesforce", "patterns": ["Salesforce", "/sales\\s+force/"]},
                {"name": "Pipedrive"}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let tracker = created.json["tracker"]["id"].as_i64().expect("tracker id");
    assert_eq!(created.json["tracker"]["version"], 1);

    // Batch 1: every run names Salesforce only.
    let before: Vec<Reply> = (0..RUNS)
        .map(|_| {
            answer(
                "I would pick SALES FORCE, see https://reviews.example.org/crm.",
                &[],
            )
        })
        .collect();
    run_batch(&server, &fake, "2025-10-14", &before).await;
    // Batch 2: every run lists HubSpot first, Salesforce second; one names HubSpot twice, one
    // cites through structured annotations; "pipedriver" is not Pipedrive.
    let list = "Here are my picks:\n\n1. HubSpot's free CRM\n2. Salesforce\n\nSee [G2](https://www.g2.com/crm).";
    let now = vec![
        answer(
            &format!("{list} HUBSPOT wins."),
            &["https://www.capterra.com/crm"],
        ),
        answer(list, &[]),
        answer(&format!("{list} Ask a pipedriver."), &[]),
        answer(list, &[]),
    ];
    run_batch(&server, &fake, "2025-10-15", &now).await;

    // Not analysed yet: the API says how far the analysis got.
    let view = server
        .get(&format!("/api/insights/trackers/{tracker}"))
        .await;
    assert_eq!(
        view.assert_ok()["tracker"]["progressText"],
        "analysed 0 of 8 answers"
    );

    // `promptq report` analyses everything, then reports; its JSON is the API's body.
    let cli: Value = serde_json::from_str(&promptq(&server.db, &["report", "--format", "json"]))
        .expect("report JSON");
    let api = server.get("/api/insights/report").await;
    assert_eq!(cli, api.json, "the CLI's JSON is the API's body");
    let report = &api.assert_ok()["reports"][0];
    assert_eq!(report["batchKey"], "2025-10-15");
    assert_eq!(report["previousBatchKey"], "2025-10-14");
    assert_eq!(report["progressText"], "analysed 8 of 8 answers");
    let cell = &report["prompts"][0];
    assert_eq!(cell["runs"], RUNS as i64);
    let hubspot = term(cell, "HubSpot");
    assert_eq!(
        (hubspot["mentioned"].as_i64(), hubspot["mentions"].as_i64()),
        (Some(4), Some(5))
    );
    assert_eq!(hubspot["mentionRate"], 1.0);
    assert_eq!(
        (hubspot["bestRank"].as_i64(), hubspot["avgRank"].as_f64()),
        (Some(1), Some(1.0))
    );
    assert_eq!(hubspot["bestListPosition"], 1);
    assert!(
        (hubspot["shareOfVoice"].as_f64().unwrap() - 5.0 / 9.0).abs() < 1e-9,
        "{hubspot}"
    );
    // 0 of 4 → 4 of 4: Fisher's exact test, p = 2/70.
    let change = &hubspot["change"];
    assert_eq!(change["test"], "fisher");
    assert!(
        (change["pValue"].as_f64().unwrap() - 2.0 / 70.0).abs() < 1e-6,
        "{change}"
    );
    assert_eq!(
        (change["delta"].as_f64(), change["significant"].as_bool()),
        (Some(1.0), Some(true))
    );
    let salesforce = term(cell, "Salesforce");
    assert_eq!(
        (
            salesforce["mentioned"].as_i64(),
            salesforce["bestRank"].as_i64()
        ),
        (Some(4), Some(2))
    );
    assert_eq!(salesforce["bestListPosition"], 2);
    assert_eq!(salesforce["change"]["significant"], false);
    assert_eq!(term(cell, "Pipedrive")["mentioned"], 0);
    // Domains: from the text (g2.com, 4 answers) and from the annotations (capterra.com, 1).
    assert_eq!(
        cell["topDomains"],
        json!([{"domain": "g2.com", "answers": 4}, {"domain": "capterra.com", "answers": 1}])
    );
    // Over prompts, per model: the same single prompt.
    assert_eq!(term(&report["models"][0], "HubSpot")["mentioned"], 4);
    // The previous batch, asked for by key: Salesforce from a regular expression, and a link.
    let first = server
        .get("/api/insights/report?tracker=CRMs&batchKey=2025-10-14")
        .await;
    let first = &first.assert_ok()["reports"][0]["prompts"][0];
    assert_eq!(term(first, "Salesforce")["mentioned"], 4);
    assert_eq!(first["topDomains"][0]["domain"], "reviews.example.org");

    // Drift: the one prompt × model shares no word pair with the previous batch, and now also
    // names HubSpot; the first batch has nothing to compare with.
    let drift = &report["drift"];
    assert_eq!(drift.as_array().map(Vec::len), Some(1), "{drift}");
    let moved = &drift[0];
    assert_eq!(
        (moved["runs"].as_i64(), moved["previousRuns"].as_i64()),
        (Some(RUNS as i64), Some(RUNS as i64))
    );
    assert_eq!(
        (moved["drift"].as_f64(), moved["similarity"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(
        (&moved["added"], &moved["dropped"]),
        (&json!(["HubSpot"]), &json!([]))
    );
    assert_eq!(moved["modelName"], "fake");
    let oldest = server
        .get("/api/insights/report?tracker=CRMs&batchKey=2025-10-14")
        .await;
    assert_eq!(oldest.assert_ok()["reports"][0]["drift"], json!([]));
    let table = promptq(&server.db, &["report", "--tracker", "CRMs"]);
    assert!(table.contains("Drift against 2025-10-14:"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("fake") && l.contains("1.00") && l.contains("HubSpot")),
        "{table}"
    );
    let md = promptq(&server.db, &["report", "--format", "md"]);
    assert!(md.contains("### Drift against 2025-10-14"), "{md}");

    // The OpenAPI document describes these answers.
    let document = server.get("/api/openapi.json").await.json;
    let trackers = server.get("/api/insights/trackers").await;
    assert_documented_exactly(&document, "Trackers", &trackers.json);
    assert_documented_exactly(&document, "Tracker", &trackers.json["trackers"][0]);
    assert_documented_exactly(
        &document,
        "Progress",
        &trackers.json["trackers"][0]["progress"],
    );
    assert_documented_exactly(&document, "Reports", &api.json);
    assert_documented_exactly(&document, "TrackerReport", report);
    assert_documented_exactly(&document, "ReportCell", cell);
    assert_documented(&document, "ReportCell", &report["models"][0]);
    assert_documented_exactly(&document, "TermFigures", hubspot);
    assert_documented_exactly(&document, "Change", change);
    assert_documented_exactly(&document, "DomainCount", &cell["topDomains"][0]);
    assert_documented_exactly(&document, "Drift", moved);

    // CSV: parses, one row per scope × cell × term.
    let csv_text = promptq(
        &server.db,
        &["report", "--format", "csv", "--tracker", "CRMs"],
    );
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(
        rows.len(),
        2 * 3 + 1,
        "two scopes × three terms, and one drift row"
    );
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let hub = rows
        .iter()
        .find(|r| &r[col("scope")] == "prompt" && &r[col("term")] == "HubSpot")
        .expect("HubSpot's row");
    assert_eq!(
        (&hub[col("mentioned")], &hub[col("significant")]),
        ("4", "true")
    );
    let drift_rows: Vec<_> = rows
        .iter()
        .filter(|r| &r[col("scope")] == "drift")
        .collect();
    assert_eq!(drift_rows.len(), 1);
    assert_eq!(
        (
            &drift_rows[0][col("drift")],
            &drift_rows[0][col("added_terms")],
            &drift_rows[0][col("dropped_terms")],
            &drift_rows[0][col("runs")],
        ),
        ("1", "HubSpot", "", "4")
    );

    // Exports carry each answer's mentions and citations: arrays in JSON Lines, compact
    // strings in CSV.
    let jsonl = promptq(
        &server.db,
        &["export", "--format", "jsonl", "--batch-key", "2025-10-15"],
    );
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), RUNS);
    let wins = |text: &str| text.contains("HUBSPOT wins");
    let first = lines
        .iter()
        .find(|r| r["text"].as_str().is_some_and(wins))
        .expect("the answer citing Capterra");
    assert_eq!(
        first["mentions"],
        json!([
            {"tracker": "CRMs", "term": "HubSpot", "count": 2, "rank": 1, "listPosition": 1},
            {"tracker": "CRMs", "term": "Salesforce", "count": 1, "rank": 2, "listPosition": 2}
        ])
    );
    assert_eq!(first["citedDomains"], json!(["capterra.com", "g2.com"]));
    assert_eq!(
        first["citations"],
        json!([
            {"url": "https://www.capterra.com/crm", "domain": "capterra.com", "structured": true},
            {"url": "https://www.g2.com/crm", "domain": "g2.com", "structured": false}
        ])
    );
    let old = promptq(
        &server.db,
        &["export", "--format", "csv", "--batch-key", "2025-10-14"],
    );
    let mut reader = csv::Reader::from_reader(old.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), RUNS);
    assert_eq!(
        (
            &rows[0][col("mentions")],
            &rows[0][col("citedDomains")],
            &rows[0][col("citations")]
        ),
        (
            "CRMs/Salesforce:1@1",
            "reviews.example.org",
            "https://reviews.example.org/crm"
        )
    );
    let csv_now = promptq(
        &server.db,
        &["export", "--format", "csv", "--batch-key", "2025-10-15"],
    );
    let mut reader = csv::Reader::from_reader(csv_now.as_bytes());
    let row = reader
        .records()
        .map(|r| r.expect("a CSV row"))
        .find(|r| wins(&r[col("text")]))
        .expect("the answer citing Capterra");
    assert_eq!(
        (
            &row[col("mentions")],
            &row[col("citedDomains")],
            &row[col("citations")]
        ),
        (
            "CRMs/HubSpot:2@1#1;CRMs/Salesforce:1@2#2",
            "capterra.com;g2.com",
            "https://www.capterra.com/crm https://www.g2.com/crm"
        )
    );

    // An edit of the terms bumps the version: past answers are analysed again.
    let edited = server
        .patch(
            &format!("/api/insights/trackers/{tracker}"),
            json!({"terms": [{"name": "HubSpot"}, {"name": "Salesforce"},
                             {"name": "Pipedrive", "patterns": ["/pipedrive\\w*/"]}]}),
        )
        .await;
    assert_eq!(edited.assert_ok()["tracker"]["version"], 2);
    assert_eq!(
        edited.json["tracker"]["progressText"],
        "analysed 0 of 8 answers"
    );
    let stale = server.get("/api/insights/report?tracker=CRMs").await;
    assert_eq!(
        stale.assert_ok()["reports"][0]["prompts"],
        json!([]),
        "old rows do not count"
    );
    promptq(&server.db, &["report"]);
    let fresh = server
        .get(&format!("/api/insights/report?tracker={tracker}"))
        .await;
    let fresh = &fresh.assert_ok()["reports"][0];
    assert_eq!(fresh["progressText"], "analysed 8 of 8 answers");
    assert_eq!(term(&fresh["prompts"][0], "Pipedrive")["mentioned"], 1);
    // "SALES FORCE" matched only the old regular expression.
    assert_eq!(
        term(&fresh["prompts"][0], "Salesforce")["change"]["previousMentioned"],
        0
    );

    // A rename keeps the version; delete removes the tracker.
    let renamed = server
        .patch(
            &format!("/api/insights/trackers/{tracker}"),
            json!({"name": "CRM vendors"}),
        )
        .await;
    assert_eq!(renamed.assert_ok()["tracker"]["version"], 2);
    let gone = server
        .delete(&format!("/api/insights/trackers/{tracker}"))
        .await;
    gone.assert_ok();
    let missing = server
        .get(&format!("/api/insights/trackers/{tracker}"))
        .await;
    assert_eq!(missing.status, 404);

    // Other bad input: clear errors, never a 5xx.
    let body = json!({"name": "Dup", "terms": [{"name": "A"}]});
    assert_eq!(
        server
            .post("/api/insights/trackers", body.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        server.post("/api/insights/trackers", body).await.status,
        409
    );
    let unknown = server.get("/api/insights/report?tracker=nope").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let long = "9".repeat(100);
    assert_eq!(
        server
            .get(&format!("/api/insights/report?batchKey={long}"))
            .await
            .status,
        400
    );
    let typo = json!({"name": "T", "terms": [{"name": "A", "pattern": ["a"]}]});
    assert_eq!(
        server.post("/api/insights/trackers", typo).await.status,
        400
    );
    let empty = json!({"name": "T", "terms": []});
    assert_eq!(
        server.post("/api/insights/trackers", empty).await.status,
        400
    );
}

/// `promptq ARGS` on `url`; the whole output.
fn promptq_at(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(PROMPTQ)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", url)
        .output()
        .expect("run promptq")
}

fn ok_at(url: &str, args: &[&str]) -> String {
    let out = promptq_at(url, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The CLI: trackers imported from YAML (created, unchanged, updated), refused with a one-line
/// error, and analysed in the background by a running `promptq worker`.
#[test]
fn trackers_cli_import_and_background_analysis() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    ok_at(
        &url,
        &[
            "models",
            "add",
            "--name",
            "a",
            "--provider",
            "mock",
            "--model",
            "m1",
        ],
    );
    ok_at(&url, &["prompts", "add", "Which CRM?", "--runs", "3"]);
    ok_at(&url, &["run", "--batch-key", "2025-01-01"]);

    let file = dir.path().join("trackers.yaml");
    let yaml = "trackers:\n  - name: Answers\n    terms:\n      - name: Mock\n      - name: HubSpot\n        patterns: [HubSpot, '/hub\\s?spot/']\n";
    std::fs::write(&file, yaml).expect("write");
    let file = file.to_str().expect("utf-8 path");
    assert!(ok_at(&url, &["trackers", "import", file]).contains("1 created"));
    assert!(ok_at(&url, &["trackers", "import", file]).contains("1 unchanged"));
    std::fs::write(file, yaml.replace("HubSpot, ", "")).expect("write");
    assert!(ok_at(&url, &["trackers", "import", file]).contains("1 updated"));
    std::fs::write(file, yaml.replace("hub\\s?spot", "(hub")).expect("write");
    let refused = promptq_at(&url, &["trackers", "import", file]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("trackers[0]") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    let shown: Value =
        serde_json::from_str(&ok_at(&url, &["trackers", "show", "Answers"])).unwrap();
    assert_eq!(
        (shown["version"].as_i64(), shown["progressText"].as_str()),
        (Some(2), Some("analysed 0 of 3 answers"))
    );

    // A worker analyses in the background, without being asked.
    let mut worker = crate::support::spawn_worker(&url, &[("WORKER_CONCURRENCY", "0")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list: Value =
            serde_json::from_str(&ok_at(&url, &["trackers", "list", "--json"])).unwrap();
        if list[0]["progress"]["analysed"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not analysed in time: {list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    crate::support::terminate(&mut worker, std::time::Duration::from_secs(20));
    let md = ok_at(&url, &["report", "--format", "md"]);
    assert!(md.contains("| Mock | 3 of 3 | 100% |"), "{md}");
}
