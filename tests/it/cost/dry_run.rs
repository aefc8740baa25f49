//! `promptq run --dry-run`: the jobs of the next run per model and their cost estimated from
//! recent answers' token counts, at the model's price (half for a `batch` model), with nothing
//! written: the rows of every table are the same before and after.

use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{fake_model, process_ok};
use crate::support::fake::{Fake, Reply};
use crate::support::on_both;
use crate::support::server::{self, Server};
use crate::support::{self, TestDb};

on_both!(owned; a_dry_run_estimates_from_recent_answers_and_writes_nothing);

/// $10 per million input tokens, $20 output: an answer of 100 in and 200 out costs $0.005.
fn price() -> Value {
    json!({"input": 10, "output": 20})
}

fn answer() -> Reply {
    super::answer_of(100, 200)
}

/// Rows of every table a run writes to, and the prompts' marks of their last batch.
async fn footprint(server: &Server) -> Value {
    let status = server.get("/api/jobs/status?limit=1").await;
    let responses = server.get("/api/responses?limit=1000").await;
    let prompts = server.get("/api/prompts").await;
    json!({
        "jobs": status.assert_ok()["summary"].clone(),
        "responses": responses.assert_ok()["responses"].as_array().map(Vec::len),
        "prompts": prompts.assert_ok()["prompts"].as_array().map(|list| list
            .iter()
            .map(|p| json!([p["id"], p["lastBatchKey"], p["lastRunAt"]]))
            .collect::<Vec<_>>()),
    })
}

fn dry_run(url: &str, args: &[&str]) -> Output {
    let output = Command::new(support::PROMPTQ)
        .args(args)
        .arg("--dry-run")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("CRON_SCHEDULE", "0 0 * * *")
        .env("TIMEZONE", "UTC")
        .output()
        .expect("run promptq with --dry-run");
    assert!(output.status.success(), "{output:?}");
    output
}

fn usd(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("a cost, not {value}"))
}

async fn a_dry_run_estimates_from_recent_answers_and_writes_nothing(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(answer());
    let server = server::start(db).await;
    let direct = fake_model(&server, &fake, "direct", json!({"price": price()})).await;
    // `batch` is read from the params as stored (the Batch API mode sets it).
    let batched = support::seed_model(
        &server.db.store,
        &support::openai_model(
            "batched",
            "fake-1",
            &fake.base_url(),
            json!({"price": price(), "batch": true}),
        ),
    )
    .await
    .id;
    server.prompt("answered before", 2).await;
    // An earlier batch answers the first prompt on both models.
    let backfilled = server.get("/api/cron?batchKey=2020-01-01").await;
    backfilled.assert_ok();
    for job in server.job_ids("2020-01-01").await {
        process_ok(&server, job).await;
    }
    server.prompt("never answered", 1).await;
    let fresh = fake_model(&server, &fake, "fresh", json!({"price": price()})).await;
    let before = footprint(&server).await;

    let output = dry_run(&server.db.url, &["run", "--json"]);
    let estimate: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    // `cron --dry-run` prints the same estimate.
    let from_cron = dry_run(&server.db.url, &["cron"]);
    let from_cron: Value = serde_json::from_slice(&from_cron.stdout).expect("JSON");
    assert_eq!(from_cron, estimate);
    assert_eq!(estimate["batchKey"], server.current_batch(), "{estimate}");
    assert_eq!(estimate["promptCount"], 2, "{estimate}");
    // The first prompt (2 runs) and the second (1 run) on each of the three models.
    assert_eq!(estimate["jobs"], 9, "{estimate}");
    let model = |id: i64| -> Value {
        estimate["models"]
            .as_array()
            .expect("models")
            .iter()
            .find(|m| m["modelId"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("model {id} in {estimate}"))
    };
    let direct = model(direct);
    assert_eq!(
        (
            &direct["fromSamePrompt"],
            &direct["fromModelAverage"],
            &direct["unknown"]
        ),
        (&json!(2), &json!(1), &json!(0)),
        "{direct}"
    );
    assert_eq!(direct["promptTokens"], 100.0);
    assert_eq!(direct["completionTokens"], 200.0);
    // 3 answers × (100 × $10 + 200 × $20) per million.
    assert!((usd(&direct["costUsd"]) - 0.015).abs() < 1e-9, "{direct}");
    let batched = model(batched);
    assert_eq!(batched["batch"], true);
    assert!(
        (usd(&batched["costUsd"]) - 0.0075).abs() < 1e-9,
        "{batched}"
    );
    let fresh = model(fresh);
    assert_eq!(fresh["unknown"], 3, "{fresh}");
    assert_eq!(fresh["costUsd"], Value::Null, "{fresh}");
    assert!(
        (usd(&estimate["costUsd"]) - 0.0225).abs() < 1e-9,
        "{estimate}"
    );
    assert_eq!(estimate["unknownJobs"], 3);

    let table = String::from_utf8_lossy(&dry_run(&server.db.url, &["run"]).stdout).into_owned();
    assert!(
        table.contains("would create 9 jobs for 2 prompts"),
        "{table}"
    );
    assert!(table.contains("$0.0075 (batch)"), "{table}");
    assert!(
        table.contains("total: at least $0.0225 (3 jobs of unknown cost"),
        "{table}"
    );

    assert_eq!(
        footprint(&server).await,
        before,
        "a dry run wrote something"
    );
    // The run it describes is still to come: the first pass after it creates the 9 jobs.
    let cron = server.get("/api/cron").await;
    assert_eq!(cron.assert_ok()["jobsCreated"], 9);
}
