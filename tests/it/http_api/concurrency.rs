//! Duplicate triggers and duplicate claims over HTTP: the queue's guarantees hold when the
//! calls race.

use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::start;

on_both!(
    owned;
    concurrent_crons_create_each_job_once,
    concurrent_process_calls_run_the_model_once,
);

pub async fn concurrent_crons_create_each_job_once(db: TestDb) {
    let server = Arc::new(start(db).await);
    server.seed_original().await;
    let calls = (0..20).map(|i| {
        let server = server.clone();
        async move {
            // Both methods, as Vercel Cron (GET) and scripts (POST) would race.
            if i % 2 == 0 {
                server.get("/api/cron").await
            } else {
                server.post("/api/cron", json!({})).await
            }
        }
    });
    let answers = join_all(calls).await;
    let mut created = 0;
    for answer in &answers {
        created += answer.assert_ok()["jobsCreated"].as_i64().unwrap();
    }
    assert_eq!(created, 20, "each job is created exactly once");
    let batch = answers[0].json["batchKey"].as_str().unwrap();
    assert_eq!(server.job_ids(batch).await.len(), 20);
}

pub async fn concurrent_process_calls_run_the_model_once(db: TestDb) {
    let server = Arc::new(start(db).await);
    // Slow enough that all ten calls overlap the one that claimed the job.
    server.model("slow", json!({"latencyMs": 200})).await;
    server.prompt("Only once", 1).await;
    let batch = server.cron().await;
    let job = server.job_ids(&batch).await[0];

    let calls = (0..10).map(|_| {
        let server = server.clone();
        async move {
            server
                .post("/api/jobs/process", json!({"jobId": job}))
                .await
        }
    });
    let answers = join_all(calls).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    let conflicts = answers.iter().filter(|a| a.status == 409).count();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert_eq!(conflicts, 9, "{answers:?}");
    assert_eq!(ok[0].json["status"], json!("succeeded"));
    for answer in answers.iter().filter(|a| a.status == 409) {
        answer.assert_error(409);
    }

    // One model call: one attempt, one stored response.
    let detail = server.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(detail.assert_ok()["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(detail.json["job"]["attemptCount"], json!(1));
    let responses = server.get(&format!("/api/responses?jobId={job}")).await;
    assert_eq!(
        responses.assert_ok()["responses"].as_array().unwrap().len(),
        1
    );
}
