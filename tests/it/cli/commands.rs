//! The commands a user of a job queue reaches for: `jobs show`, `batches`, `status` of one job,
//! counts in the right number, a cron pass that says what the batch already holds, `run`
//! leaving no WAL behind, and `status --json` answering exactly as the HTTP API.

use serde_json::Value;

use super::{CATALOG, CATALOG_JOBS, Promptq};
use crate::support::TestDb;
use crate::support::on_both;

/// One model that answers and one that always fails, one prompt on both.
const ONE_OK_ONE_FAILING: &str = r#"
models:
  - name: fast
    provider: mock
    model: mock-fast-1
    params: { latencyMs: 1 }
  - name: broken
    provider: mock
    model: mock-broken-1
    params: { latencyMs: 1, failRate: 1 }
prompts:
  - text: Which cloud is cheapest?
"#;

/// The id of the job of `model` (by name) in `status --json`.
fn job_on(promptq: &Promptq, model: &str) -> String {
    let models = promptq.json(&["models", "list", "--json"]);
    let model_id = models
        .as_array()
        .expect("a list")
        .iter()
        .find(|m| m["name"] == model)
        .expect("the model")["id"]
        .clone();
    let status = promptq.json(&["status", "--json"]);
    status["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|job| job["modelId"] == model_id)
        .expect("its job")["id"]
        .to_string()
}

#[test]
fn jobs_show_tells_attempts_error_class_tokens_cost_and_the_answer() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write("catalog.yaml", ONE_OK_ONE_FAILING));
    let run = promptq
        .command(&["run"])
        .env("MAX_ATTEMPTS", "1")
        .output()
        .expect("run promptq");
    assert_eq!(run.status.code(), Some(1), "a job failed: {run:?}");

    let ok = job_on(&promptq, "fast");
    let detail = promptq.json(&["jobs", "show", &ok, "--json"]);
    let answer = detail["response"]["text"].as_str().expect("an answer");
    let shown = promptq.ok(&["jobs", "show", &ok]);
    assert!(
        shown.starts_with(&format!("job {ok}: succeeded")),
        "{shown}"
    );
    assert!(shown.contains("Which cloud is cheapest?"), "{shown}");
    assert!(shown.contains("model "), "{shown}");
    let tokens = detail["response"]["totalTokens"].as_i64().expect("tokens");
    assert!(
        shown.contains(&format!("{tokens} total; cost: $0.000000")),
        "{shown}"
    );
    assert!(
        shown.contains(answer.trim_end()),
        "the answer whole:\n{shown}"
    );

    let failed = job_on(&promptq, "broken");
    let detail = promptq.json(&["jobs", "show", &failed, "--json"]);
    let class = detail["attempts"][0]["errorClass"]
        .as_str()
        .expect("an error class");
    let shown = promptq.ok(&["jobs", "show", &failed]);
    assert!(
        shown.starts_with(&format!("job {failed}: failed")),
        "{shown}"
    );
    assert!(shown.contains("mock simulated failure"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|line| line.trim_start().starts_with('1') && line.contains(class)),
        "attempt 1 with its class {class}:\n{shown}"
    );
    assert!(shown.contains("no answer stored"), "{shown}");

    let err = promptq.fails(&["jobs", "show", "999999"]);
    assert!(err.contains("job 999999 not found"), "{err}");
}

#[test]
fn batches_lists_the_newest_with_counts_tokens_and_cost() {
    let promptq = Promptq::sqlite();
    assert!(promptq.ok(&["batches"]).contains("no batches yet"));
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    let old = promptq.json(&["cron", "--batch-key", "2026-01-01"]);
    assert_eq!(old["jobsCreated"], CATALOG_JOBS);
    let out = promptq.ok(&["run"]);
    let batch = out
        .split_whitespace()
        .nth(1)
        .expect("batch KEY: …")
        .trim_end_matches(':')
        .to_owned();

    let listed = promptq.json(&["batches", "--json"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["batchKey"], batch.as_str(), "newest first");
    assert_eq!(listed[0]["summary"]["succeeded"], CATALOG_JOBS);
    assert!(listed[0]["tokens"]["total"].as_i64() > Some(0));
    assert_eq!(listed[0]["costUsd"], 0.0, "mock calls cost nothing");
    assert_eq!(listed[1]["batchKey"], "2026-01-01");

    let table = promptq.ok(&["batches", "--limit", "1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one batch:\n{table}");
    assert!(
        lines[0].contains("SUCCEEDED") && lines[0].contains("COST"),
        "{table}"
    );
    assert!(lines[1].starts_with(&batch), "{table}");
    assert!(lines[1].contains("$0.0000"), "{table}");
    let err = promptq.fails(&["batches", "--limit", "0"]);
    assert!(err.contains("limit must be between 1 and 1000"), "{err}");
}

#[test]
fn counts_are_in_the_right_number_and_an_unknown_job_exits_1() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write(
        "one.yaml",
        "models:\n  - {name: fast, provider: mock, model: m, params: {latencyMs: 1}}\nprompts:\n  - text: Hello?\n",
    ));
    let cron = promptq.json(&["cron"]);
    assert_eq!(cron["message"], "Enqueued 1 job for 1 prompt");
    let status = promptq.ok(&["status"]);
    assert!(status.starts_with("1 job: 1 queued"), "{status}");
    let id = promptq.json(&["status", "--json"])["jobs"][0]["id"].to_string();
    let one = promptq.ok(&["status", "--job-id", &id]);
    assert!(one.starts_with("1 job: "), "{one}");

    let err = promptq.fails(&["status", "--job-id", "999999"]);
    assert!(err.contains("job 999999 not found"), "{err}");
    let err = promptq.fails(&["status", "--job-id", "999999", "--json"]);
    assert!(err.contains("job 999999 not found"), "{err}");
}

#[test]
fn a_second_cron_pass_says_what_the_batch_already_holds() {
    let promptq = Promptq::sqlite();
    let empty = promptq.json(&["cron"]);
    let batch = empty["batchKey"].as_str().expect("a batch key").to_owned();
    assert_eq!(
        empty["message"],
        format!("0 new jobs; no prompt is due for batch {batch}")
    );
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    let first = promptq.json(&["cron"]);
    assert_eq!(first["message"], "Enqueued 6 jobs for 3 prompts");
    let again = promptq.json(&["cron"]);
    assert_eq!(
        again["message"],
        format!("0 new jobs; batch {batch} already holds 6 jobs for 3 prompts")
    );
    assert_eq!(again["jobsCreated"], 0);
    assert_eq!(again["promptCount"], 0);
    // `run` says the same before it drains.
    let run = promptq.command(&["run"]).output().expect("run promptq");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("already holds 6 jobs for 3 prompts"),
        "{stderr}"
    );
}

#[test]
fn run_checkpoints_the_sqlite_wal_like_the_other_commands() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    let out = promptq.ok(&["run"]);
    assert!(out.contains("6 jobs, 6 succeeded"), "{out}");
    let wal = promptq.path("x.db-wal");
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "{wal:?} still holds {left} bytes after run");
}

on_both!(owned; status_json_is_the_http_answer_of_api_jobs_status);

/// `status --json` prints what `GET /api/jobs/status` answers, field for field.
async fn status_json_is_the_http_answer_of_api_jobs_status(db: TestDb) {
    let promptq = Promptq::on(&db.url);
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    promptq.ok(&["run"]);
    let server = crate::support::server::start(db).await;
    for (args, query) in [
        (vec![], ""),
        (vec!["--limit", "2", "--offset", "1"], "?limit=2&offset=1"),
        (vec!["--status", "succeeded"], "?status=succeeded"),
    ] {
        let http = server.get(&format!("/api/jobs/status{query}")).await;
        let http: &Value = http.assert_ok();
        let cli = promptq.json(&[&["status", "--json"][..], &args].concat());
        assert_eq!(&cli, http, "status --json {args:?}");
        for field in ["perModel", "tokens", "costUsd", "latencyMs"] {
            assert!(cli.get(field).is_some(), "{field} in {cli}");
        }
    }
}
