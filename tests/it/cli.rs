//! The `promptq` binary as a user runs it: a real process on a fresh SQLite file (and once on
//! a throwaway PostgreSQL), judged by its exit code, its output and what it left in the
//! database. The environment is cleared for each run so that a developer's settings cannot
//! leak into a test.

mod commands;
mod database_errors;
mod export_pages;
mod fresh_machine;
mod interrupt;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support;

/// Two mock models, and prompts on one model, on every model, and on a named pair.
const CATALOG: &str = r#"
models:
  - name: fast
    provider: mock
    model: mock-fast-1
    params: { latencyMs: 1 }
  - name: steady
    provider: mock
    model: mock-steady-1
    params:
      latencyMs: 3
      failRate: 0
prompts:
  - text: What is the best CRM for a small business?
    models: [fast]
    runs: 2
  - text: |
      Recommend a password manager,
      for a "family".
  - text: Which cloud is cheapest?
    models: [fast, steady]
"#;

/// Jobs one batch of [`CATALOG`] creates: 1 model × 2 runs + 2 models + 2 models.
const CATALOG_JOBS: u64 = 6;

/// The binary on one database, with files in a temporary directory.
struct Promptq {
    dir: tempfile::TempDir,
    database_url: String,
}

impl Promptq {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite:{}", dir.path().join("x.db").display());
        Promptq { dir, database_url }
    }

    fn on(database_url: &str) -> Self {
        Promptq {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: database_url.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).expect("write a test file");
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::support::PROMPTQ);
        command
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .current_dir(self.dir.path());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run promptq")
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "promptq {args:?} failed ({:?}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}):\n{out}"))
    }

    /// Runs a command that must fail with exit code 1; its one-line error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "promptq {args:?}: {output:?}"
        );
        let stderr = String::from_utf8(output.stderr).expect("utf-8 errors");
        assert_one_line_error(&stderr);
        stderr
    }

    fn import(&self, file: &Path) -> String {
        let file = file.to_str().expect("utf-8 path");
        self.ok(&["models", "import", file]) + &self.ok(&["prompts", "import", file])
    }
}

fn assert_one_line_error(stderr: &str) {
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line:\n{stderr}");
    for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(word), "{stderr}");
    }
}

#[test]
fn the_demo_runs_to_completion() {
    let promptq = Promptq::sqlite();
    let out = promptq.ok(&["demo", "--file", "demo.db"]);
    assert!(out.contains("batch "), "{out}");
    assert!(
        out.contains("72 jobs"),
        "8 prompts × 3 models × 3 runs:\n{out}"
    );
    assert!(promptq.path("demo.db").exists());
    // Two batches, then the CRM tracker's report with its change and its movers.
    assert_eq!(out.matches("72 jobs").count(), 2, "{out}");
    assert!(out.contains("Tracker 'CRMs' (version 1), batch "), "{out}");
    let progress: Vec<&str> = out
        .split("analysed ")
        .nth(1)
        .and_then(|rest| rest.split(" answers").next())
        .map(|counts| counts.split(" of ").collect())
        .unwrap_or_default();
    assert!(
        progress.len() == 2 && progress[0] == progress[1],
        "every answer analysed: {out}"
    );
    assert!(out.contains("Biggest movers against "), "{out}");
    for brand in ["HubSpot", "Salesforce", "Pipedrive"] {
        assert!(out.contains(brand), "{brand}: {out}");
    }
    assert!(out.contains(" pts"), "a change from the first batch: {out}");
}

#[test]
fn importing_a_file_twice_changes_nothing() {
    let promptq = Promptq::sqlite();
    let file = promptq.write("catalog.yaml", CATALOG);
    let first = promptq.import(&file);
    assert!(first.contains("models: 2 created"), "{first}");
    assert!(first.contains("prompts: 3 created"), "{first}");

    let models = promptq.json(&["models", "list", "--json"]);
    let prompts = promptq.json(&["prompts", "list", "--json"]);
    let ids: Vec<i64> = models
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["id"].as_i64().expect("an id"))
        .collect();
    assert_eq!(
        models[1]["params"],
        serde_json::json!({"latencyMs": 3, "failRate": 0})
    );
    let prompts_list = prompts.as_array().expect("a list");
    assert_eq!(prompts_list.len(), 3);
    assert_eq!(prompts_list[0]["runs"], 2);
    assert_eq!(prompts_list[0]["modelIds"], serde_json::json!([ids[0]]));
    assert_eq!(
        prompts_list[1]["text"],
        "Recommend a password manager,\nfor a \"family\".\n"
    );
    assert_eq!(
        prompts_list[1]["modelIds"],
        serde_json::json!(ids),
        "every active model"
    );

    let second = promptq.import(&file);
    assert!(
        second.contains("models: 0 created, 0 updated, 2 unchanged"),
        "{second}"
    );
    assert!(
        second.contains("prompts: 0 created, 0 updated, 3 unchanged"),
        "{second}"
    );
    assert_eq!(promptq.json(&["models", "list", "--json"]), models);
    assert_eq!(promptq.json(&["prompts", "list", "--json"]), prompts);

    // The same catalog as JSON, named without an extension: sniffed, and still nothing to do.
    let catalog: Value = serde_json::json!({
        "models": [
            {"name": "fast", "provider": "mock", "model": "mock-fast-1", "params": {"latencyMs": 1}},
            {"name": "steady", "provider": "mock", "model": "mock-steady-1",
             "params": {"latencyMs": 3, "failRate": 0}}
        ],
        "prompts": [
            {"text": "What is the best CRM for a small business?", "models": ["fast"], "runs": 2},
            {"text": "Recommend a password manager,\nfor a \"family\".\n"},
            {"text": "Which cloud is cheapest?", "models": ["fast", "steady"]}
        ]
    });
    let json_file = promptq.write("catalog", &catalog.to_string());
    let third = promptq.ok(&["prompts", "import", json_file.to_str().expect("utf-8")]);
    assert!(
        third.contains("prompts: 0 created, 0 updated, 3 unchanged"),
        "{third}"
    );

    // A change in the file is an update in place, not a new prompt.
    let edited = promptq.write("edited.yaml", &CATALOG.replace("runs: 2", "runs: 4"));
    let fourth = promptq.ok(&["prompts", "import", edited.to_str().expect("utf-8")]);
    assert!(
        fourth.contains("prompts: 0 created, 1 updated, 2 unchanged"),
        "{fourth}"
    );
    assert_eq!(promptq.json(&["prompts", "list", "--json"])[0]["runs"], 4);
}

#[test]
fn an_invalid_file_is_refused_whole_with_each_place_named() {
    let promptq = Promptq::sqlite();
    let bad = CATALOG
        .replace(
            "provider: mock\n    model: mock-fast-1",
            "provider: anthropic\n    model: x",
        )
        .replace(
            "\n  - text: Which cloud",
            "\n    runs: 0\n  - text: Which cloud",
        );
    let file = promptq.write("bad.yml", &bad);
    let err = promptq.fails(&["prompts", "import", file.to_str().expect("utf-8")]);
    assert!(
        err.contains("models[0].provider: unknown provider 'anthropic'"),
        "{err}"
    );
    assert!(
        err.contains("prompts[1].runs: must be between 1 and 1000"),
        "{err}"
    );
    assert_eq!(
        promptq.json(&["models", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        promptq.json(&["prompts", "list", "--json"]),
        serde_json::json!([])
    );

    let twice = promptq.write(
        "twice.yaml",
        "models:\n  - {name: a, provider: mock, model: m}\n  - {name: a, provider: mock, model: n}\n\
         prompts:\n  - {text: hi, models: [a, ghost]}\n  - {text: hi}\n",
    );
    let err = promptq.fails(&["prompts", "import", twice.to_str().expect("utf-8")]);
    assert!(
        err.contains("models[1].name: 'a' is already used by models[0]"),
        "{err}"
    );
    assert!(
        err.contains("prompts[0].models[1]: no model named 'ghost'"),
        "{err}"
    );
    assert!(
        err.contains("prompts[1].text: the same text as prompts[0]"),
        "{err}"
    );
    assert_eq!(
        promptq.json(&["models", "list", "--json"]),
        serde_json::json!([])
    );

    let typo = promptq.write("typo.yaml", "prompts:\n  - txt: hello\n");
    let err = promptq.fails(&["prompts", "import", typo.to_str().expect("utf-8")]);
    assert!(err.contains("txt") && err.contains("line 2"), "{err}");
}

#[test]
fn errors_are_one_line_with_exit_1_and_usage_errors_stay_clap_s() {
    let promptq = Promptq::sqlite();
    let output = promptq
        .command(&[
            "models",
            "add",
            "--name",
            "x",
            "--provider",
            "anthropic",
            "--model",
            "y",
        ])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run promptq");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_one_line_error(&stderr);
    assert!(stderr.contains("unknown provider 'anthropic'"), "{stderr}");

    promptq.ok(&[
        "models",
        "add",
        "--name",
        "x",
        "--provider",
        "mock",
        "--model",
        "y",
    ]);
    let err = promptq.fails(&[
        "models",
        "add",
        "--name",
        "x",
        "--provider",
        "mock",
        "--model",
        "z",
    ]);
    assert!(err.contains("a model named 'x' already exists"), "{err}");
    let err = promptq.fails(&["models", "edit", "99", "--name", "z"]);
    assert!(err.contains("model 99 not found"), "{err}");

    let usage = promptq.run(&["status", "--limit", "many"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let usage = promptq.run(&["jobs", "retry"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

/// Imports [`CATALOG`], schedules and runs a batch, and checks status and both exports.
fn schedule_run_and_export(promptq: &Promptq) {
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    let cron = promptq.json(&["cron"]);
    assert_eq!(cron["jobsCreated"], CATALOG_JOBS);
    let batch = cron["batchKey"].as_str().expect("a batch key").to_owned();
    promptq.ok(&["run"]);

    let status = promptq.json(&["status", "--json", "--batch-key", &batch]);
    assert_eq!(status["success"], true);
    let summary = &status["summary"];
    for key in [
        "total",
        "queued",
        "processing",
        "succeeded",
        "failed",
        "skipped",
    ] {
        assert!(summary[key].is_i64(), "summary.{key} in {summary}");
    }
    assert_eq!(summary["succeeded"], CATALOG_JOBS);
    let job = &status["jobs"][0];
    for key in [
        "id",
        "promptId",
        "modelId",
        "runIndex",
        "batchKey",
        "status",
        "errorMessage",
        "attemptCount",
        "scheduledFor",
        "startedAt",
        "finishedAt",
        "createdAt",
        "promptVersion",
    ] {
        assert!(job.get(key).is_some(), "jobs[0].{key} in {job}");
    }
    assert_eq!(
        job["promptVersion"].as_str().map(str::len),
        Some(64),
        "{job}"
    );
    let table = promptq.ok(&["status", "--batch-key", &batch]);
    assert!(
        table.contains("6 jobs: 0 queued, 0 processing, 6 succeeded"),
        "{table}"
    );

    let csv_out = promptq.ok(&["export", "--format", "csv", "--batch-key", &batch]);
    let mut reader = csv::Reader::from_reader(csv_out.as_bytes());
    let header = reader.headers().expect("a header").clone();
    for column in [
        "id",
        "jobId",
        "promptId",
        "modelId",
        "modelName",
        "batchKey",
        "runIndex",
        "text",
        "promptTokens",
        "completionTokens",
        "totalTokens",
        "costUsd",
        "latencyMs",
        "servedModel",
        "finishReason",
        "createdAt",
        "promptVersion",
        "promptText",
    ] {
        assert!(header.iter().any(|h| h == column), "{column} in {header:?}");
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a valid row")).collect();
    assert_eq!(rows.len() as u64, CATALOG_JOBS, "one row per succeeded job");
    let name_at = header
        .iter()
        .position(|h| h == "modelName")
        .expect("modelName");
    assert!(
        rows.iter()
            .all(|row| ["fast", "steady"].contains(&&row[name_at]))
    );
    // Each answer names the prompt text it answers.
    let text_at = header
        .iter()
        .position(|h| h == "promptText")
        .expect("promptText");
    assert!(rows.iter().all(|row| !row[text_at].is_empty()), "{rows:?}");

    promptq.ok(&[
        "export",
        "--format",
        "jsonl",
        "--output",
        "answers.jsonl",
        "--from",
        "2000-01-01",
    ]);
    let lines = std::fs::read_to_string(promptq.path("answers.jsonl")).expect("the export file");
    let answers: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(answers.len() as u64, CATALOG_JOBS);
    assert!(
        answers
            .iter()
            .all(|a| a["text"].as_str().is_some_and(|t| !t.is_empty()))
    );
    assert!(answers.iter().all(|a| a["batchKey"] == batch.as_str()));
    assert!(!promptq.path("answers.jsonl.partial").exists());

    // Nothing stored in the far future: a header and no rows.
    let empty = promptq.ok(&["export", "--from", "2999-01-01"]);
    assert_eq!(empty.lines().count(), 1, "{empty}");
}

#[test]
fn cron_run_status_and_export_on_sqlite() {
    schedule_run_and_export(&Promptq::sqlite());
}

#[tokio::test]
async fn cron_run_status_and_export_on_postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    db.store.close().await;
    // The child processes block this test's thread; its runtime has nothing else to do.
    schedule_run_and_export(&Promptq::on(&db.url));
}

#[test]
fn jobs_are_cancelled_and_retried_by_batch_and_by_id() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write("catalog.yaml", CATALOG));
    let cron = promptq.json(&["cron"]);
    let batch = cron["batchKey"].as_str().expect("a batch key").to_owned();

    let out = promptq.ok(&["jobs", "cancel", "--batch-key", &batch]);
    assert_eq!(out.trim(), "6 jobs cancelled (skipped)");
    let status = promptq.json(&["status", "--json"]);
    assert_eq!(status["summary"]["skipped"], CATALOG_JOBS);

    let out = promptq.ok(&["jobs", "retry", "--batch-key", &batch, "--status", "failed"]);
    assert_eq!(out.trim(), "0 jobs queued again");
    let out = promptq.ok(&[
        "jobs",
        "retry",
        "--batch-key",
        &batch,
        "--status",
        "skipped",
    ]);
    assert_eq!(out.trim(), "6 jobs queued again");

    let first = promptq.json(&["status", "--json", "--limit", "1"])["jobs"][0]["id"]
        .as_i64()
        .expect("a job id")
        .to_string();
    let out = promptq.ok(&["jobs", "cancel", "--job-id", &first]);
    assert_eq!(out.trim(), "1 job cancelled (skipped)");
    let err = promptq.fails(&["jobs", "cancel", "--job-id", &first]);
    assert!(err.contains("cannot be cancelled"), "{err}");
    let err = promptq.fails(&["jobs", "retry", "--job-id", "999999"]);
    assert!(err.contains("job 999999 not found"), "{err}");
    promptq.ok(&["jobs", "retry", "--job-id", &first]);

    let status = promptq.json(&["status", "--json", "--status", "queued"]);
    assert_eq!(status["summary"]["total"], CATALOG_JOBS);
}
