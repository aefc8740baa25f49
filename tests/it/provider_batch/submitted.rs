//! The `submitted` state: a job in a provider batch the provider accepted. No lease sweep or
//! rescue touches it; a batch that expires hands its unanswered jobs back to `queued`, and
//! the answered ones end as a direct call's would. Only the batch loop runs here (no worker
//! pool), so that a job handed back stays `queued` for the test to see.

use std::time::Duration;

use chrono::Utc;
use promptq::domain::JobStatus;
use promptq::store::Clock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{seed_batch, wait_until_batches_close};
use crate::support::batch_api::BatchApi;
use crate::support::{TestDb, all_jobs, on_both, summary, wait_until};

/// Starts the batch loop of `app` alone; cancel the token to stop it.
fn batch_loop(app: &promptq::app::App) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let handle = tokio::spawn(promptq::engine::batch::run(
        app.runtime().clone(),
        stop.clone(),
    ));
    (stop, handle)
}

/// Waits until the provider holds a batch and its `jobs` jobs are `submitted`.
async fn wait_until_submitted(db: &TestDb, api: &BatchApi, jobs: i64) {
    wait_until(
        "the jobs to be submitted",
        Duration::from_secs(30),
        async || api.statuses() == ["in_progress"] && summary(&db.store).await.submitted == jobs,
    )
    .await;
}

/// Submitted jobs hold no lease: a lease sweep and a dead-worker rescue, run long past the
/// provider's window, leave them alone; they carry the provider's batch id.
async fn rescues_never_touch_submitted_jobs(db: &TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    let app = seed_batch(db, &api, 3, 1).await;
    let (stop, handle) = batch_loop(&app);
    wait_until_submitted(db, &api, 3).await;
    stop.cancel();
    handle.await.expect("the batch loop");

    // A hundred days on: every lease of the batch's time would have run out.
    let later = Clock::At(Utc::now() + chrono::Duration::days(100));
    let rescued = db.store.jobs_rescue_expired(later).await.expect("rescue");
    assert!(rescued.is_empty(), "{rescued:?}");
    // Judged by a registered worker: on PostgreSQL only a process with a worker lock judges.
    let judge = promptq::store::workers::NewWorker {
        host: "judge".into(),
        pid: 1,
        concurrency: 1,
    };
    db.store
        .worker_register(&judge, Clock::Database)
        .await
        .expect("register a worker");
    let orphaned = db
        .store
        .jobs_rescue_orphaned(later)
        .await
        .expect("dead-worker rescue");
    assert!(orphaned.is_empty(), "{orphaned:?}");
    assert_eq!(db.store.jobs_count_expired(later).await.expect("count"), 0);
    let jobs = all_jobs(&db.store).await;
    assert!(
        jobs.iter()
            .all(|j| j.status == JobStatus::Submitted && j.lease_expires_at.is_none()),
        "{jobs:?}"
    );
    let status = app
        .status(&promptq::app::StatusQuery::default())
        .await
        .expect("status");
    assert!(
        status
            .jobs
            .iter()
            .all(|j| j.provider_batch_id.as_deref() == Some("batch_1")),
        "{:?}",
        status.jobs
    );
}

/// A batch that expires at the provider: its answered lines succeed, and its other jobs go
/// from `submitted` back to `queued` without spending an attempt.
async fn an_expired_batch_hands_its_jobs_back_to_the_queue(db: &TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    api.expire_next(1);
    let app = seed_batch(db, &api, 4, 1).await;
    let (stop, handle) = batch_loop(&app);
    wait_until_submitted(db, &api, 4).await;
    // Out of batch mode, so that the loop opens no new batch for the jobs handed back (the
    // open one is still carried on).
    let model = all_jobs(&db.store).await[0].model_id;
    let direct = promptq::store::ModelPatch {
        params: Some(json!({"baseUrl": api.base_url(), "batch": false})),
        ..Default::default()
    };
    db.store
        .model_update(model, &direct, Utc::now())
        .await
        .expect("leave batch mode");
    // Past the second for which a process keeps its read of the models.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.stall(false);
    wait_until_batches_close(db).await;
    stop.cancel();
    handle.await.expect("the batch loop");

    assert_eq!(api.statuses(), ["expired"]);
    let s = summary(&db.store).await;
    assert_eq!((s.submitted, s.processing, s.failed), (0, 0, 0), "{s:?}");
    assert!(s.succeeded >= 1 && s.queued >= 1, "{s:?}");
    assert_eq!(s.succeeded + s.queued, 4, "{s:?}");
    for job in all_jobs(&db.store).await {
        if job.status == JobStatus::Queued {
            assert_eq!(job.attempt_count, 0, "no attempt spent: {job:?}");
            assert!(job.lease_expires_at.is_none(), "{job:?}");
        }
    }
}

/// A submitted job cannot be retried (its answer is on its way), and the refusal says why; the
/// submitted jobs of a batch key can be cancelled together, down to the provider batch.
async fn a_submitted_job_is_cancelled_not_retried(db: &TestDb) {
    let api = BatchApi::start().await;
    api.stall(true);
    let app = seed_batch(db, &api, 1, 1).await;
    let (stop, handle) = batch_loop(&app);
    wait_until_submitted(db, &api, 1).await;
    stop.cancel();
    handle.await.expect("the batch loop");
    let job = all_jobs(&db.store).await[0].id;
    let refused = app
        .retry(&promptq::app::JobSelector::One(job))
        .await
        .expect_err("a submitted job is not retried");
    let message = refused.to_string();
    assert!(
        message.contains("submitted") && message.contains("batch_1"),
        "{message}"
    );
    assert!(
        matches!(refused, promptq::app::AppError::Conflict(_)),
        "{refused:?}"
    );
    let batch_key = all_jobs(&db.store).await[0].batch_key.clone();
    let cancelled = app
        .cancel(&promptq::app::JobSelector::Batch {
            batch_key,
            status: Some(JobStatus::Submitted),
        })
        .await
        .expect("cancel the batch's submitted jobs");
    assert_eq!(cancelled, 1);
    assert_eq!(api.counts().cancels, 1, "the provider batch is cancelled");
    let s = summary(&db.store).await;
    assert_eq!((s.skipped, s.submitted), (1, 0), "{s:?}");
}

on_both!(
    rescues_never_touch_submitted_jobs,
    an_expired_batch_hands_its_jobs_back_to_the_queue,
    a_submitted_job_is_cancelled_not_retried,
);
