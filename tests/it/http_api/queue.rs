//! The queue's routes: the original three with their exact shapes, job detail, retry, cancel,
//! responses, and the HTTP fan-out.

use serde_json::json;

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{Options, set, start, start_with};

on_both!(
    owned;
    cron_creates_each_batch_once_with_the_original_shape,
    cron_backfills_a_named_batch_from_query_or_body,
    status_has_the_original_shape_and_richer_figures,
    status_filters_and_pages,
    process_runs_a_job_and_detail_shows_it,
    failed_attempts_answer_200_with_queued_then_failed,
    retry_and_cancel_by_job_and_by_batch,
    responses_are_listed_with_filters,
    http_dispatch_fans_out_every_due_job,
);

const JOB_KEYS: [&str; 12] = [
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
];

pub async fn cron_creates_each_batch_once_with_the_original_shape(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;

    let before = server.current_batch();
    let first = server.get("/api/cron").await;
    let after = server.current_batch();
    let body = first.assert_ok();
    assert_eq!(
        first.keys(),
        set(&[
            "success",
            "message",
            "promptCount",
            "jobsCreated",
            "batchKey"
        ])
    );
    assert_eq!(body["message"], json!("Enqueued 20 jobs for 2 prompts"));
    assert_eq!(body["promptCount"], json!(2));
    assert_eq!(body["jobsCreated"], json!(20));
    // The batch of the global schedule's current slot (tomorrow's within minutes of midnight).
    let today = body["batchKey"].as_str().unwrap().to_owned();
    assert!(
        today == before || today == after,
        "{today} not {before}/{after}"
    );

    let again = server
        .send(server.request(reqwest::Method::POST, "/api/cron"))
        .await;
    assert_eq!(again.assert_ok()["jobsCreated"], json!(0));
    assert_eq!(
        again.json["message"],
        json!(format!(
            "0 new jobs; batch {today} already holds 20 jobs for 2 prompts"
        ))
    );
    assert_eq!(again.json["batchKey"], json!(today));
}

pub async fn cron_backfills_a_named_batch_from_query_or_body(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;

    let by_query = server.get("/api/cron?batchKey=2025-10-13").await;
    assert_eq!(by_query.assert_ok()["jobsCreated"], json!(20));
    assert_eq!(by_query.json["batchKey"], json!("2025-10-13"));

    let by_body = server
        .post("/api/cron", json!({"batchKey": "2025-10-14"}))
        .await;
    assert_eq!(by_body.assert_ok()["jobsCreated"], json!(20));
    assert_eq!(by_body.json["batchKey"], json!("2025-10-14"));

    let both_agree = server
        .post(
            "/api/cron?batchKey=2025-10-14",
            json!({"batchKey": "2025-10-14"}),
        )
        .await;
    assert_eq!(both_agree.assert_ok()["jobsCreated"], json!(0));

    server
        .post(
            "/api/cron?batchKey=2025-10-14",
            json!({"batchKey": "2025-10-15"}),
        )
        .await
        .assert_error(400);

    // A backfill does not count as the current batch: today's pass still creates its jobs.
    assert_eq!(
        server.get("/api/cron").await.assert_ok()["jobsCreated"],
        json!(20)
    );
}

pub async fn status_has_the_original_shape_and_richer_figures(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let batch = server.cron().await;
    let ids = server.job_ids(&batch).await;
    let processed = server
        .post("/api/jobs/process", json!({"jobId": ids[0]}))
        .await;
    processed.assert_ok();

    let status = server
        .get(&format!("/api/jobs/status?batchKey={batch}"))
        .await;
    let body = status.assert_ok();
    let original = set(&["success", "summary", "jobs"]);
    assert!(status.keys().is_superset(&original), "{:?}", status.keys());
    assert_eq!(
        status.keys(),
        set(&[
            "success",
            "summary",
            "jobs",
            "expiredLeases",
            "pauses",
            "blocked",
            "workers",
            "spentToday",
            "providerBatches",
            "perModel",
            "tokens",
            "costUsd",
            "latencyMs"
        ])
    );
    assert_eq!(
        crate::support::server::keys(&body["summary"]),
        set(&[
            "total",
            "queued",
            "processing",
            "submitted",
            "succeeded",
            "failed",
            "skipped"
        ])
    );
    assert_eq!(
        body["summary"],
        json!({"total": 20, "queued": 19, "processing": 0, "submitted": 0, "succeeded": 1, "failed": 0, "skipped": 0})
    );
    let jobs = body["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 20);
    for job in jobs {
        let keys = crate::support::server::keys(job);
        for key in JOB_KEYS {
            assert!(keys.contains(key), "job lacks {key}: {job}");
        }
    }
    let queued = jobs
        .iter()
        .find(|job| job["status"] == json!("queued"))
        .expect("a queued job");
    // Unset fields are null, not omitted.
    assert!(queued["errorMessage"].is_null());
    assert!(queued["startedAt"].is_null());
    assert!(queued["finishedAt"].is_null());
    let done = &jobs[0];
    assert_eq!(done["status"], json!("succeeded"));
    assert_eq!(done["attemptCount"], json!(1));
    // RFC 3339 UTC timestamps.
    for field in ["scheduledFor", "startedAt", "finishedAt", "createdAt"] {
        let text = done[field].as_str().expect("a timestamp");
        let parsed = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0, "{field}: {text}");
    }

    let per_model = body["perModel"].as_array().expect("perModel");
    assert_eq!(per_model.len(), 2);
    assert_eq!(per_model[0]["modelName"], json!("alpha"));
    assert_eq!(per_model[0]["total"], json!(10));
    assert_eq!(
        per_model[0]["succeeded"].as_i64().unwrap() + per_model[1]["succeeded"].as_i64().unwrap(),
        1
    );
    assert!(body["tokens"]["total"].as_i64().unwrap() > 0);
    assert_eq!(body["latencyMs"]["count"], json!(1));
    assert!(body["latencyMs"]["p50"].is_i64());
    assert_eq!(body["expiredLeases"], json!(0));
}

pub async fn status_filters_and_pages(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let batch = server.cron().await;
    let ids = server.job_ids(&batch).await;

    let page = server
        .get(&format!(
            "/api/jobs/status?batchKey={batch}&limit=5&offset=5"
        ))
        .await;
    let body = page.assert_ok();
    assert_eq!(
        body["summary"]["total"],
        json!(20),
        "the summary counts all"
    );
    let page_ids: Vec<i64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page_ids, ids[5..10].to_vec());

    let one = server
        .get(&format!("/api/jobs/status?jobId={}", ids[3]))
        .await;
    assert_eq!(one.assert_ok()["summary"]["total"], json!(1));
    assert_eq!(one.json["jobs"][0]["id"], json!(ids[3]));

    let none = server.get("/api/jobs/status?status=failed").await;
    assert_eq!(none.assert_ok()["summary"]["total"], json!(0));
    assert_eq!(none.json["jobs"], json!([]));
    assert!(none.json["costUsd"].is_null());
    assert!(none.json["latencyMs"]["p50"].is_null());

    // Empty parameters read as absent, as forms send them.
    let empty = server
        .get(&format!(
            "/api/jobs/status?jobId=&promptId=&status=&batchKey={batch}"
        ))
        .await;
    assert_eq!(empty.assert_ok()["summary"]["total"], json!(20));
}

pub async fn process_runs_a_job_and_detail_shows_it(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let batch = server.cron().await;
    let job = server.job_ids(&batch).await[0];

    let processed = server
        .post("/api/jobs/process", json!({"jobId": job}))
        .await;
    let body = processed.assert_ok();
    assert_eq!(
        processed.keys(),
        set(&["success", "jobId", "status", "entityId"])
    );
    assert_eq!(body["jobId"], json!(job));
    assert_eq!(body["status"], json!("succeeded"));
    let entity = body["entityId"].as_i64().expect("entityId");

    server
        .post("/api/jobs/process", json!({"jobId": job}))
        .await
        .assert_error(409);
    server
        .post("/api/jobs/process", json!({"jobId": 999_999}))
        .await
        .assert_error(404);

    let detail = server.get(&format!("/api/jobs/{job}")).await;
    let body = detail.assert_ok();
    assert_eq!(
        detail.keys(),
        set(&["success", "job", "attempts", "response", "providerBatch"])
    );
    assert_eq!(body["job"]["status"], json!("succeeded"));
    assert_eq!(body["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(body["attempts"][0]["outcome"], json!("succeeded"));
    assert_eq!(body["response"]["id"], json!(entity));
    assert_eq!(body["response"]["jobId"], json!(job));
    assert!(!body["response"]["text"].as_str().unwrap().is_empty());

    server.get("/api/jobs/999999").await.assert_error(404);
}

pub async fn failed_attempts_answer_200_with_queued_then_failed(db: TestDb) {
    let server = start(db).await;
    server.model("flaky", json!({"failRate": 1.0})).await;
    server.prompt("Always fails", 1).await;
    let batch = server.cron().await;
    let job = server.job_ids(&batch).await[0];

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let processed = server
            .post("/api/jobs/process", json!({"jobId": job}))
            .await;
        let body = processed.assert_ok();
        assert!(
            body["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("mock")),
            "{body}"
        );
        assert!(body.get("entityId").is_none_or(|id| id.is_null()));
        statuses.push(body["status"].as_str().unwrap().to_owned());
    }
    // MAX_ATTEMPTS is 3: two retries, then failed for good.
    assert_eq!(statuses, ["queued", "queued", "failed"]);
    server
        .post("/api/jobs/process", json!({"jobId": job}))
        .await
        .assert_error(409);
    let detail = server.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(detail.assert_ok()["attempts"].as_array().unwrap().len(), 3);
    assert!(detail.json["response"].is_null());
}

pub async fn retry_and_cancel_by_job_and_by_batch(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let batch = server.cron().await;
    let ids = server.job_ids(&batch).await;

    let cancelled = server
        .post("/api/jobs/cancel", json!({"jobId": ids[0]}))
        .await;
    assert_eq!(cancelled.assert_ok()["count"], json!(1));
    assert_eq!(cancelled.keys(), set(&["success", "count"]));
    server
        .post("/api/jobs/cancel", json!({"jobId": ids[0]}))
        .await
        .assert_error(409);
    server
        .post("/api/jobs/retry", json!({"jobId": ids[1]}))
        .await
        .assert_error(409);
    server
        .post("/api/jobs/retry", json!({"jobId": 999_999}))
        .await
        .assert_error(404);

    let retried = server
        .post("/api/jobs/retry", json!({"jobId": ids[0]}))
        .await;
    assert_eq!(retried.assert_ok()["count"], json!(1));

    let batch_cancel = server
        .post(
            "/api/jobs/cancel",
            json!({"batchKey": batch, "status": "queued"}),
        )
        .await;
    assert_eq!(batch_cancel.assert_ok()["count"], json!(20));
    let batch_retry = server
        .post("/api/jobs/retry", json!({"batchKey": batch}))
        .await;
    assert_eq!(batch_retry.assert_ok()["count"], json!(20));
    let status = server
        .get(&format!("/api/jobs/status?batchKey={batch}"))
        .await;
    assert_eq!(status.assert_ok()["summary"]["queued"], json!(20));
}

pub async fn responses_are_listed_with_filters(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let batch = server.cron().await;
    let ids = server.job_ids(&batch).await;
    for id in &ids[..3] {
        server
            .post("/api/jobs/process", json!({"jobId": id}))
            .await
            .assert_ok();
    }

    let all = server
        .get(&format!("/api/responses?batchKey={batch}"))
        .await;
    assert_eq!(all.keys(), set(&["success", "responses"]));
    let responses = all.assert_ok()["responses"].as_array().unwrap().clone();
    assert_eq!(responses.len(), 3);
    let first = &responses[0];
    for key in [
        "id",
        "jobId",
        "text",
        "promptTokens",
        "completionTokens",
        "totalTokens",
        "costUsd",
        "latencyMs",
        "servedModel",
    ] {
        assert!(first.get(key).is_some(), "response lacks {key}: {first}");
    }

    let one = server
        .get(&format!("/api/responses?jobId={}&limit=1", ids[1]))
        .await;
    assert_eq!(one.assert_ok()["responses"].as_array().unwrap().len(), 1);
    assert_eq!(one.json["responses"][0]["jobId"], json!(ids[1]));

    let paged = server.get("/api/responses?limit=2&offset=2").await;
    assert_eq!(paged.assert_ok()["responses"].as_array().unwrap().len(), 1);
    let other = server.get("/api/responses?batchKey=2000-01-01").await;
    assert_eq!(other.assert_ok()["responses"], json!([]));
}

pub async fn http_dispatch_fans_out_every_due_job(db: TestDb) {
    let server = start_with(
        db,
        Options {
            http_dispatch: true,
            ..Options::default()
        },
    )
    .await;
    server.seed_original().await;
    let cron = server.get("/api/cron").await;
    let body = cron.assert_ok();
    assert_eq!(body["jobsCreated"], json!(20));
    assert_eq!(body["dispatch"]["sent"], json!(20), "{body}");
    assert_eq!(body["dispatch"]["accepted"], json!(20), "{body}");
    let status = server
        .get(&format!(
            "/api/jobs/status?batchKey={}",
            body["batchKey"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status.assert_ok()["summary"]["succeeded"], json!(20));
}
