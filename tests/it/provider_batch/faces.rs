//! Batch mode as users see it: `batch` refused where the provider has no Batch API, a job
//! waiting in a provider batch shown in its detail, the status, the CLI and the dashboard, and
//! cancelling such jobs, down to the provider batch itself.

use std::time::Duration;

use serde_json::json;

use super::FAST;
use crate::support::batch_api::BatchApi;
use crate::support::{
    TestDb, all_jobs, all_responses, on_both, openai_model, seed_model, seed_prompts, summary,
    wait_until, wait_until_done,
};

/// `batch` is refused where the provider has no Batch API, with a message saying so.
async fn batch_is_refused_without_a_batch_api(db: TestDb) {
    let server = crate::support::server::start(db).await;
    for provider in ["openrouter", "mock"] {
        let answer = server
            .post(
                "/api/models",
                json!({"name": format!("b-{provider}"), "provider": provider,
                    "model": "m", "params": {"batch": true}}),
            )
            .await;
        answer.assert_error(400);
        let message = answer.json["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains("params.batch") && message.contains(provider),
            "{message}"
        );
    }
    let ok = server
        .post(
            "/api/models",
            json!({"name": "b-openai", "provider": "openai", "model": "gpt-4o-mini",
                "params": {"batch": true}}),
        )
        .await;
    assert!(ok.status.is_success(), "{ok:?}");
}

/// While its batch is at the provider, a job is `submitted` and says in which provider batch:
/// in the status (counted, listed, filtered), the job's detail, the CLI, the metrics and the
/// dashboard; once answered, it succeeded and no open batch is left.
async fn jobs_in_a_provider_batch_show_it(db: TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    let model = openai_model(
        "batched",
        "gpt-4o-mini",
        &api.base_url(),
        json!({"batch": true}),
    );
    let model = seed_model(&db.store, &model).await;
    seed_prompts(&db.store, 5, 1, Some(&[model.id])).await;
    let mut dash = crate::dashboard::web::start(db, &[]).await;
    dash.login().await;
    let server = &dash.server;
    let pool = crate::support::RunningPool::start(&server.db.store, &server.db.url, &FAST).await;
    wait_until(
        "a batch at the provider",
        Duration::from_secs(30),
        async || api.statuses() == ["in_progress"],
    )
    .await;
    // The provider's id is recorded a moment after the provider answered.
    wait_until(
        "the jobs to be submitted",
        Duration::from_secs(30),
        async || summary(&server.db.store).await.submitted == 5,
    )
    .await;
    let status = server.get("/api/jobs/status").await;
    let status = status.assert_ok();
    assert_eq!(status["summary"]["submitted"], 5, "{status}");
    assert_eq!(status["summary"]["processing"], 0, "{status}");
    assert_eq!(status["summary"]["total"], 5, "{status}");
    for job in status["jobs"].as_array().expect("jobs") {
        assert_eq!(job["status"], "submitted", "{job}");
        assert_eq!(job["providerBatchId"], "batch_1", "{job}");
    }
    let only = server.get("/api/jobs/status?status=submitted").await;
    let only = only.assert_ok();
    assert_eq!(only["jobs"].as_array().map(Vec::len), Some(5), "{only}");
    let none = server.get("/api/jobs/status?status=processing").await;
    assert_eq!(none.assert_ok()["summary"]["total"], 0);
    let metrics = server.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("promptq_jobs{status=\"submitted\"} 5"),
        "{}",
        metrics.text
    );
    let batches = status["providerBatches"]
        .as_array()
        .expect("providerBatches");
    assert_eq!(batches.len(), 1, "{status}");
    assert_eq!(batches[0]["providerBatchId"], "batch_1", "{status}");
    assert_eq!(batches[0]["state"], "submitted", "{status}");
    let job = status["jobs"][0]["id"].as_i64().expect("a job id");
    let batch_key = status["jobs"][0]["batchKey"]
        .as_str()
        .expect("a batch key")
        .to_owned();
    let detail = server.get(&format!("/api/jobs/{job}")).await;
    let detail = detail.assert_ok();
    assert_eq!(detail["job"]["status"], "submitted", "{detail}");
    assert_eq!(detail["job"]["providerBatchId"], "batch_1", "{detail}");
    assert_eq!(
        detail["providerBatch"]["providerBatchId"], "batch_1",
        "{detail}"
    );
    assert_eq!(detail["providerBatch"]["requestCount"], 5, "{detail}");
    // The CLI says the same.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::PROMPTQ)
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &server.db.url)
            .output()
            .expect("run promptq");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let shown = cli(&["jobs", "show", &job.to_string()]);
    assert!(
        shown.contains(&format!("job {job}: submitted in provider batch batch_1")),
        "{shown}"
    );
    assert!(
        shown.contains("provider batch 1 (5 jobs of model"),
        "{shown}"
    );
    assert!(
        shown.contains("submitted, batch_1 at the provider (in_progress)"),
        "{shown}"
    );
    let status = cli(&["status"]);
    assert!(
        status.contains("submitted, batch_1 at the provider"),
        "{status}"
    );
    assert!(
        status.contains(
            "5 jobs: 0 queued, 0 processing, 5 submitted (in a provider batch), 0 succeeded"
        ),
        "{status}"
    );
    assert!(status.contains("submitted (batch_1)"), "{status}");
    let batches = cli(&["batches"]);
    let columns: Vec<Vec<&str>> = batches
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(columns[0].get(4), Some(&"SUBMITTED"), "{batches}");
    assert_eq!(columns[1].get(4), Some(&"5"), "{batches}");
    let page = dash.get(&format!("/jobs/{job}")).await;
    let html = page.assert_html(200);
    let shown = html
        .split("id=\"provider-batch\"")
        .nth(1)
        .expect("the provider batch");
    assert!(
        shown.contains("submitted") && shown.contains("batch_1"),
        "{html}"
    );
    assert!(
        html.contains("id=\"cancel\""),
        "a job in a batch can be cancelled: {html}"
    );
    let page = dash.get(&format!("/batches/{batch_key}")).await;
    let html = page.assert_html(200);
    assert!(html.contains("submitted (5)"), "{html}");
    assert!(html.contains("5 submitted (in a provider batch)"), "{html}");
    let page = dash
        .get(&format!("/batches/{batch_key}?status=submitted"))
        .await;
    let html = page.assert_html(200);
    assert!(html.contains("batch_1</code>"), "{html}");

    api.stall(false);
    wait_until_done(&server.db.store, Duration::from_secs(30)).await;
    // The batch closes just after its last answer is stored.
    wait_until(
        "the provider batch to close",
        Duration::from_secs(30),
        async || {
            let batches = server.db.store.provider_batches_recent(10).await.unwrap();
            batches.iter().all(|b| b.state.is_closed())
        },
    )
    .await;
    pool.stop().await;
    let status = server.get("/api/jobs/status").await;
    let status = status.assert_ok();
    assert_eq!(status["summary"]["succeeded"], 5, "{status}");
    assert_eq!(status["providerBatches"], json!([]), "{status}");
    let detail = server.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(detail.assert_ok()["providerBatch"], json!(null));
}

/// A job waiting in a provider batch can be cancelled; cancelling the batch's last pending job
/// cancels the batch at the provider, and nothing of it is stored.
async fn cancelling_the_last_job_cancels_the_provider_batch(db: TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    let model = openai_model(
        "batched",
        "gpt-4o-mini",
        &api.base_url(),
        json!({"batch": true}),
    );
    let model = seed_model(&db.store, &model).await;
    seed_prompts(&db.store, 3, 1, Some(&[model.id])).await;
    let server = crate::support::server::start(db).await;
    let pool = crate::support::RunningPool::start(&server.db.store, &server.db.url, &FAST).await;
    wait_until(
        "a batch at the provider",
        Duration::from_secs(30),
        async || api.statuses() == ["in_progress"],
    )
    .await;
    let jobs: Vec<i64> = all_jobs(&server.db.store)
        .await
        .iter()
        .map(|j| j.id)
        .collect();
    for (n, job) in jobs.iter().enumerate() {
        let answer = server.post("/api/jobs/cancel", json!({"jobId": job})).await;
        assert_eq!(answer.assert_ok()["count"], 1, "{answer:?}");
        // Only the last one cancels the batch at the provider.
        let expected = usize::from(n + 1 == jobs.len());
        assert_eq!(api.counts().cancels, expected, "after {} cancels", n + 1);
    }
    // A cancelled job is not cancelled twice.
    server
        .post("/api/jobs/cancel", json!({"jobId": jobs[0]}))
        .await
        .assert_error(409);
    api.stall(false);
    wait_until(
        "the provider batch to close",
        Duration::from_secs(30),
        async || {
            let batches = server.db.store.provider_batches_recent(10).await.unwrap();
            batches.iter().all(|b| b.state.is_closed())
        },
    )
    .await;
    pool.stop().await;
    assert_eq!(api.statuses(), ["cancelled"]);
    let summary = summary(&server.db.store).await;
    assert_eq!((summary.skipped, summary.total), (3, 3), "{summary:?}");
    assert!(all_responses(&server.db.store).await.is_empty());
}

on_both!(owned;
    batch_is_refused_without_a_batch_api,
    jobs_in_a_provider_batch_show_it,
    cancelling_the_last_job_cancels_the_provider_batch,
);
