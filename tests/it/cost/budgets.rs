//! Daily budgets: a model's `params.budgetUsdPerDay` and `BUDGET_USD_PER_DAY` stop new calls
//! once the day's answers cost that much. The stopped jobs stay `queued` with no attempt spent,
//! `/api/jobs/status` says why, and a worker whose day is the next one runs them. The day is
//! the database's: on SQLite the machine's (a worker under `faketime +1d` is in the next day),
//! on PostgreSQL the server's (a worker whose own clock says tomorrow is still in today).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::{fake_model, process_ok};
use crate::support::fake::{Fake, Reply};
use crate::support::on_both;
use crate::support::server::{self, Server};
use crate::support::{self, TestDb};
use promptq::store::Store;

on_both!(
    owned;
    a_model_budget_stops_its_calls_and_leaves_the_others,
    the_global_budget_stops_every_model,
    calls_resume_the_next_day,
);

/// $10 per million tokens both ways; each answer of [`answer`] (1,000 tokens) costs $0.01.
fn price() -> Value {
    json!({"input": 10, "output": 10})
}

fn answer() -> Reply {
    super::answer_of(500, 500)
}

/// The batch's jobs of `model`, as `/api/jobs/status` lists them.
async fn jobs_of(server: &Server, model: i64) -> Vec<Value> {
    let status = server
        .get(&format!("/api/jobs/status?modelId={model}&limit=1000"))
        .await;
    status.assert_ok()["jobs"].as_array().expect("jobs").clone()
}

/// Whether `/api/jobs/status` lists `model` as blocked by a budget, with its queued jobs.
async fn blocked_by_budget(server: &Server, model: i64) -> Option<(String, i64)> {
    let status = server.get("/api/jobs/status").await;
    status.assert_ok()["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .find(|b| b["modelId"] == model)
        .map(|b| {
            (
                b["reason"].as_str().unwrap_or_default().to_owned(),
                b["queued"].as_i64().unwrap_or(-1),
            )
        })
}

/// Asserts that processing `job` is refused for the budget and leaves it queued, unspent.
async fn refused_for_budget(server: &Server, job: &Value) {
    let id = job["id"].as_i64().expect("job id");
    let refused = server.post("/api/jobs/process", json!({"jobId": id})).await;
    refused.assert_error(409);
    assert!(
        refused.text.contains("daily budget reached"),
        "{}",
        refused.text
    );
    let after = server.get(&format!("/api/jobs/status?jobId={id}")).await;
    let after = &after.assert_ok()["jobs"][0];
    assert_eq!(after["status"], "queued", "{after}");
    assert_eq!(after["attemptCount"], 0, "{after}");
}

/// Three prompts of one run on every model, and the batch's key.
async fn three_prompts(server: &Server) -> String {
    for p in 0..3 {
        server.prompt(&format!("question {p}"), 1).await;
    }
    server.cron().await
}

async fn a_model_budget_stops_its_calls_and_leaves_the_others(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(answer());
    let server = server::start(db).await;
    let capped = fake_model(
        &server,
        &fake,
        "capped",
        json!({"price": price(), "budgetUsdPerDay": 0.015}),
    )
    .await;
    let free = fake_model(&server, &fake, "free", json!({"price": price()})).await;
    three_prompts(&server).await;
    let capped_jobs = jobs_of(&server, capped).await;
    // $0.01, then $0.02: the second answer crosses $0.015.
    process_ok(&server, capped_jobs[0]["id"].as_i64().unwrap()).await;
    assert_eq!(blocked_by_budget(&server, capped).await, None);
    process_ok(&server, capped_jobs[1]["id"].as_i64().unwrap()).await;
    refused_for_budget(&server, &capped_jobs[2]).await;
    let (reason, queued) = blocked_by_budget(&server, capped)
        .await
        .expect("the capped model is listed as blocked");
    assert!(
        reason.contains("params.budgetUsdPerDay $0.0150"),
        "{reason}"
    );
    assert!(reason.contains("$0.0200 spent today"), "{reason}");
    assert_eq!(queued, 1);
    let status = server.get("/api/jobs/status").await;
    let spent = &status.assert_ok()["spentToday"];
    let capped_spend = spent["perModel"]
        .as_array()
        .expect("perModel")
        .iter()
        .find(|m| m["modelId"] == capped)
        .and_then(|m| m["costUsd"].as_f64());
    assert!(
        capped_spend.is_some_and(|usd| (usd - 0.02).abs() < 1e-9),
        "{spent}"
    );
    // The other model has no budget of its own and runs on.
    assert_eq!(blocked_by_budget(&server, free).await, None);
    for job in jobs_of(&server, free).await {
        process_ok(&server, job["id"].as_i64().unwrap()).await;
    }
}

async fn the_global_budget_stops_every_model(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(answer());
    let mut dash = crate::dashboard::web::start(db, &["--budget-usd-per-day", "0.01"]).await;
    dash.login().await;
    let server = &dash.server;
    let a = fake_model(server, &fake, "a", json!({"price": price()})).await;
    let b = fake_model(server, &fake, "b", json!({"price": price()})).await;
    let batch = three_prompts(server).await;
    process_ok(server, jobs_of(server, a).await[0]["id"].as_i64().unwrap()).await;
    for model in [a, b] {
        let (reason, _) = blocked_by_budget(server, model)
            .await
            .expect("every model is blocked");
        assert!(reason.contains("BUDGET_USD_PER_DAY $0.0100"), "{reason}");
        refused_for_budget(server, &jobs_of(server, model).await[1]).await;
    }
    // The dashboard's overview says what was spent and why the models wait.
    let overview = dash.get("/").await;
    let html = overview.assert_html(200);
    assert!(
        html.contains("Spent today: </strong>$0.0100 of a daily budget of $0.0100"),
        "{html}"
    );
    assert_eq!(
        html.matches("<strong>Stopped: </strong>").count(),
        2,
        "{html}"
    );
    assert!(html.contains("daily budget reached"), "{html}");
    // The batch's page gives each model's cost: known for one, none yet for the other.
    let page = dash.get(&format!("/batches/{batch}")).await;
    let html = page.assert_html(200);
    assert!(html.contains("<th class=\"n\">Cost</th>"), "{html}");
    assert!(html.contains("$0.0100"), "{html}");
}

async fn calls_resume_the_next_day(db: TestDb) {
    let Some(faketime) = faketime() else { return };
    let fake = Fake::start().await;
    fake.reply(answer());
    let server = server::start(db).await;
    let capped = fake_model(
        &server,
        &fake,
        "capped",
        json!({"price": price(), "budgetUsdPerDay": 0.01}),
    )
    .await;
    three_prompts(&server).await;
    let jobs = jobs_of(&server, capped).await;
    process_ok(&server, jobs[0]["id"].as_i64().unwrap()).await;
    refused_for_budget(&server, &jobs[1]).await;
    assert_eq!(blocked_in_status(&server.db.url, None), vec![capped]);
    let tomorrow = match &server.db.store {
        // The machine's clock is the database's: a process whose clock says tomorrow is there.
        Store::Sqlite(_) => {
            assert!(blocked_in_status(&server.db.url, Some(faketime)).is_empty());
            Some(faketime)
        }
        // The server's clock is: the same process is still in today, until the server's day
        // changes (here, today's answers are moved to yesterday).
        Store::Postgres(pg) => {
            assert_eq!(
                blocked_in_status(&server.db.url, Some(faketime)),
                vec![capped]
            );
            sqlx::query("UPDATE responses SET created_at = created_at - interval '1 day'")
                .execute(pg.pool())
                .await
                .unwrap();
            assert!(blocked_in_status(&server.db.url, None).is_empty());
            None
        }
    };
    // A worker of the next day finds nothing spent today and runs the rest.
    let mut worker = match tomorrow {
        Some(faketime) => {
            let mut c = std::process::Command::new(faketime);
            c.args(["-f", "+1d", support::PROMPTQ]);
            c
        }
        None => std::process::Command::new(support::PROMPTQ),
    };
    worker
        .arg("worker")
        .env_clear()
        .env("DATABASE_URL", &server.db.url)
        .env("CRON_SCHEDULE", "off")
        .env("WORKER_CONCURRENCY", "2")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = worker.spawn().expect("start a worker of the next day");
    support::wait_until(
        "the worker of the next day",
        Duration::from_secs(30),
        async || support::summary(&server.db.store).await.succeeded == 3,
    )
    .await;
    // faketime runs the worker as its child and does not pass signals on: stop the worker
    // itself, or it outlives the test.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap_or_default();
    for pid in children.split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
    for job in jobs_of(&server, capped).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

/// The models `promptq status --json` lists as blocked, run under `faketime +1d` if given.
fn blocked_in_status(url: &str, faketime: Option<&str>) -> Vec<i64> {
    let mut command = match faketime {
        Some(faketime) => {
            let mut c = std::process::Command::new(faketime);
            c.args(["-f", "+1d", support::PROMPTQ]);
            c
        }
        None => std::process::Command::new(support::PROMPTQ),
    };
    let output = command
        .args(["status", "--json"])
        .env_clear()
        .env("DATABASE_URL", url)
        .env("CRON_SCHEDULE", "off")
        .output()
        .expect("run promptq status");
    assert!(output.status.success(), "{output:?}");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    status["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .map(|b| b["modelId"].as_i64().expect("model id"))
        .collect()
}

fn faketime() -> Option<&'static str> {
    const PATH: &str = "/usr/bin/faketime";
    if std::path::Path::new(PATH).exists() {
        return Some(PATH);
    }
    if std::env::var("PROMPTQ_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("faketime is required in CI: apt-get install -y faketime");
    }
    eprintln!("\n!!! SKIPPING the next-day budget test: faketime is not installed\n");
    None
}
