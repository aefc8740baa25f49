//! What a model's calls leave in the figures, over real HTTP: retries in the per-model
//! attempts per success, finishes in `/metrics` under their model, and a pause as a gauge.

use reqwest::StatusCode;

use super::*;
use crate::support::server::{Options, start_with};
use crate::support::{TestDb, on_both};

on_both!(owned; retries_finishes_and_pauses_show_per_model);

async fn retries_finishes_and_pauses_show_per_model(db: TestDb) {
    let fake = Fake::start().await;
    let server = start_with(
        db,
        Options {
            args: vec![
                "--openai-base-url".into(),
                fake.base_url(),
                "--openai-api-key".into(),
                OPENAI_KEY.into(),
            ],
            ..Options::default()
        },
    )
    .await;
    for name in ["gpt", "gpt-b"] {
        let created = server
            .post(
                "/api/models",
                json!({"name": name, "provider": "openai", "model": "gpt-4o-mini"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    }
    let prompt = server.post("/api/prompts", json!({"text": "hello"})).await;
    assert_eq!(prompt.status, StatusCode::CREATED, "{prompt:?}");
    server.get("/api/cron").await.assert_ok();
    let status = server.get("/api/jobs/status").await;
    let jobs = status.assert_ok()["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let job_of = |model: i64| {
        jobs.iter()
            .find(|j| j["modelId"] == json!(model))
            .map(|j| j["id"].clone())
            .expect("a job per model")
    };

    // gpt: a 500 (retried), then a success: two attempts for one success.
    let process = |id: Value| {
        let server = &server;
        async move { server.post("/api/jobs/process", json!({"jobId": id})).await }
    };
    fake.reply(Reply::json(
        500,
        json!({"error": {"message": "overloaded"}}),
    ));
    let first = process(job_of(1)).await;
    assert_eq!(first.assert_ok()["status"], json!("queued"), "{first:?}");
    fake.reply(Reply::json(200, fake::completion_body("hi", "stop")));
    let second = process(job_of(1)).await;
    assert_eq!(
        second.assert_ok()["status"],
        json!("succeeded"),
        "{second:?}"
    );
    // gpt-b: a 401 pauses the endpoint; the job waits for it (a key can be fixed).
    fake.reply(Reply::json(
        401,
        error_body(
            "Invalid key",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
    ));
    let third = process(job_of(2)).await;
    assert_eq!(third.assert_ok()["status"], json!("queued"), "{third:?}");

    let status = server.get("/api/jobs/status").await;
    let body = status.assert_ok();
    let per_model = body["perModel"].as_array().cloned().unwrap_or_default();
    assert_eq!(per_model[0]["attempts"], json!(2), "{per_model:?}");
    assert_eq!(
        per_model[0]["attemptsPerSuccess"],
        json!(2.0),
        "{per_model:?}"
    );
    assert_eq!(
        per_model[1]["attemptsPerSuccess"],
        Value::Null,
        "{per_model:?}"
    );
    let scope = body["pauses"][0]["scope"]
        .as_str()
        .expect("the endpoint is paused")
        .to_owned();

    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .header("Authorization", crate::support::server::SECRET)
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("the exposition");
    for line in [
        "promptq_finishes_total{outcome=\"retry\",model=\"gpt\"} 1".to_owned(),
        "promptq_finishes_total{outcome=\"succeeded\",model=\"gpt\"} 1".to_owned(),
        "promptq_finishes_total{outcome=\"retry\",model=\"gpt-b\"} 1".to_owned(),
        format!("promptq_paused{{scope=\"{scope}\"}} 1"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}
