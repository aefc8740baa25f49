//! Prices and budgets over real HTTP, on both databases: the cost of each answer computed from
//! the model's `params.price` and the tokens the provider reported (cached tokens at their own
//! price), OpenRouter's reported cost believed over it, and daily budgets that stop a model's
//! calls (jobs stay queued, no attempt spent, the reason in `/api/jobs/status`) until the
//! next day. The provider is the local OpenAI-compatible server of `support::fake`.

mod budgets;
mod dry_run;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::fake::{Fake, Reply};
use crate::support::on_both;
use crate::support::server::{self, Options, Server};

on_both!(
    owned;
    an_answer_costs_its_tokens_at_the_model_price,
    openrouter_reported_cost_wins_over_the_price,
);

/// $2 per million input tokens, $0.5 cached, $8 output.
fn price() -> Value {
    json!({"input": 2, "cachedInput": 0.5, "output": 8})
}

/// 1,000 prompt tokens of which 400 cached, 500 completion tokens: at [`price`],
/// 600 × 2 + 400 × 0.5 + 500 × 8 = 5,400 per million = $0.0054.
fn usage_body(extra_usage: Value) -> Value {
    let mut usage = json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 400}});
    for (key, value) in extra_usage.as_object().into_iter().flatten() {
        usage[key] = value.clone();
    }
    json!({"id": "chatcmpl-1", "model": "fake-1",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "an answer"}}],
        "usage": usage})
}

/// An answer of `prompt` input and `completion` output tokens.
pub(crate) fn answer_of(prompt: i64, completion: i64) -> Reply {
    Reply::json(
        200,
        json!({"id": "chatcmpl-1", "model": "fake-1",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "an answer"}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}}),
    )
}

/// Creates a model through the API and returns its id.
pub(crate) async fn create_model(server: &Server, body: Value) -> i64 {
    let created = server.post("/api/models", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    created.json["model"]["id"].as_i64().expect("model id")
}

/// An `openai-compatible` model at `fake` with `params` beside its `baseUrl`.
pub(crate) async fn fake_model(server: &Server, fake: &Fake, name: &str, params: Value) -> i64 {
    let mut full = json!({"baseUrl": fake.base_url()});
    for (key, value) in params.as_object().into_iter().flatten() {
        full[key] = value.clone();
    }
    create_model(
        server,
        json!({"name": name, "provider": "openai-compatible", "model": "fake-1", "params": full}),
    )
    .await
}

/// Runs the job through `/api/jobs/process` and expects it to succeed.
pub(crate) async fn process_ok(server: &Server, job_id: i64) {
    let processed = server
        .post("/api/jobs/process", json!({"jobId": job_id}))
        .await;
    assert_eq!(
        processed.assert_ok()["status"],
        "succeeded",
        "{processed:?}"
    );
}

/// The one stored answer's `costUsd`.
async fn only_cost(server: &Server) -> Value {
    let responses = server.get("/api/responses").await;
    let list = responses.assert_ok()["responses"]
        .as_array()
        .expect("responses")
        .clone();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]["costUsd"].clone()
}

fn assert_usd(value: &Value, expected: f64) {
    let usd = value
        .as_f64()
        .unwrap_or_else(|| panic!("a cost, not {value}"));
    assert!((usd - expected).abs() < 1e-9, "{usd} != {expected}");
}

async fn one_job(server: &Server) -> i64 {
    server.prompt("Which CRM is best?", 1).await;
    let batch = server.cron().await;
    let ids = server.job_ids(&batch).await;
    assert_eq!(ids.len(), 1);
    ids[0]
}

async fn an_answer_costs_its_tokens_at_the_model_price(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(Reply::json(200, usage_body(json!({}))));
    let server = server::start(db).await;
    let priced = fake_model(&server, &fake, "priced", json!({"price": price()})).await;
    fake_model(&server, &fake, "unpriced", json!({})).await;
    server.prompt("Which CRM is best?", 1).await;
    let batch = server.cron().await;
    for job in server.job_ids(&batch).await {
        process_ok(&server, job).await;
    }
    let responses = server.get("/api/responses").await;
    for answer in responses.assert_ok()["responses"]
        .as_array()
        .expect("responses")
    {
        if answer["modelId"] == priced {
            assert_usd(&answer["costUsd"], 0.0054);
        } else {
            // Without a price the cost is unknown, never 0.
            assert_eq!(answer["costUsd"], Value::Null, "{answer}");
        }
    }
    // The batch's and the status' cost add up the known costs.
    let status = server.get("/api/jobs/status").await;
    assert_usd(&status.assert_ok()["costUsd"], 0.0054);
    let batches = server.app.batch_figures(5).await.expect("batch figures");
    assert_usd(&json!(batches[0].cost_usd), 0.0054);
}

async fn openrouter_reported_cost_wins_over_the_price(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(Reply::json(200, usage_body(json!({"cost": 0.125}))));
    let options = Options {
        args: vec![
            "--openrouter-api-key".into(),
            "sk-or-test-0123456789".into(),
            "--openrouter-base-url".into(),
            fake.base_url(),
        ],
        ..Options::default()
    };
    let server = server::start_with(db, options).await;
    create_model(
        &server,
        json!({"name": "routed", "provider": "openrouter", "model": "openai/gpt-x",
               "params": {"price": price()}}),
    )
    .await;
    let job = one_job(&server).await;
    process_ok(&server, job).await;
    assert_usd(&only_cost(&server).await, 0.125);
}

#[tokio::test]
async fn bad_prices_are_refused_naming_the_field() {
    let server = server::start(crate::support::sqlite().await).await;
    for (params, field) in [
        (
            json!({"price": {"input": -1, "output": 2}}),
            "params.price.input",
        ),
        (
            json!({"price": {"input": 1, "output": "lots"}}),
            "params.price.output",
        ),
        (json!({"price": 2}), "params.price"),
        (json!({"budgetUsdPerDay": -3}), "params.budgetUsdPerDay"),
    ] {
        let refused = server
            .post(
                "/api/models",
                json!({"name": "m", "provider": "mock", "model": "m", "params": params}),
            )
            .await;
        refused.assert_error(400);
        let message = refused.json["error"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{message} should name {field}");
    }
}

#[test]
fn a_negative_daily_budget_is_refused_at_start() {
    let output = std::process::Command::new(crate::support::PROMPTQ)
        .args(["status"])
        .env_clear()
        .env("DATABASE_URL", "sqlite:/nonexistent/never-opened.db")
        .env("BUDGET_USD_PER_DAY", "-5")
        .output()
        .expect("run promptq");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BUDGET_USD_PER_DAY must be a number"),
        "{stderr}"
    );
}
