//! The user's actions (cancel, retry, claim by id), deactivation, and batched finishes.

use super::*;

pub(super) async fn cancel_and_retry_by_job_and_by_batch<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 4, 1).await;
    let now = t0();
    assert_eq!(
        store.jobs_cancel(&JobSelector::One(1), now).await.unwrap(),
        1
    );
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Skipped);
    assert!(job.error_message.unwrap().contains("cancelled"));
    // A processing job is not cancelled.
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .jobs_cancel(&JobSelector::One(c.job.id), now)
            .await
            .unwrap(),
        0
    );
    finish_all(
        &store,
        &[finish(
            c.job.id,
            c.attempt,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "400")),
        )],
    )
    .await
    .unwrap();
    let batch = JobSelector::Batch {
        batch_key: "2025-10-14".into(),
        status: None,
    };
    assert_eq!(store.jobs_cancel(&batch, now).await.unwrap(), 2);
    let failed_only = JobSelector::Batch {
        batch_key: "2025-10-14".into(),
        status: Some(JobStatus::Failed),
    };
    assert_eq!(store.jobs_retry(&failed_only, 3, now).await.unwrap(), 1);
    let retried = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.max_attempts, retried.attempt_count + 3);
    assert_eq!(retried.finished_at, None);
    // Retrying the whole batch brings back the skipped jobs too.
    assert_eq!(store.jobs_retry(&batch, 3, now).await.unwrap(), 3);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.queued, 4);
    // A queued job is not retried again, and an unknown job changes nothing.
    assert_eq!(
        store
            .jobs_retry(&JobSelector::One(1), 3, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .jobs_retry(&JobSelector::One(999), 3, now)
            .await
            .unwrap(),
        0
    );
}

pub(super) async fn deactivated_model_skips_its_queued_and_requeued_jobs<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p = prompt(&store, "q", None, 2).await;
    store
        .jobs_enqueue(&plan(&[p], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    let now = t0();
    // One job of m1 is running when m1 is deactivated; it comes back for a retry later.
    let running = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(running.model.id, m1);
    store
        .model_update(
            m1,
            &ModelPatch {
                active: Some(false),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(
        (summary.skipped, summary.processing, summary.queued),
        (1, 1, 2)
    );
    finish_all(
        &store,
        &[finish(
            running.job.id,
            1,
            now,
            Outcome::Retry {
                at: now,
                error: error(ErrorClass::Retryable, "503"),
                refund_attempt: false,
            },
        )],
    )
    .await
    .unwrap();
    let claimed = store
        .jobs_claim(10, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.model.id == m2));
    let job = store.job_get(running.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Skipped);
    assert!(job.error_message.unwrap().contains("deactivated"));

    // Deleting the prompt skips whatever is still queued of it.
    store
        .jobs_release(
            &claimed
                .iter()
                .map(|c| (c.job.id, c.attempt))
                .collect::<Vec<_>>(),
            now,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(store.prompt_delete(p, now).await.unwrap());
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.skipped, 4);
    assert!(store.prompt_get(p).await.unwrap().is_none());
}

pub(super) async fn claim_by_id_answers_each_case<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let now = t0();
    let lease = std::time::Duration::from_secs(30);
    match store.job_claim(1, now, lease).await.unwrap() {
        ClaimOne::Claimed(c) => {
            assert_eq!(c.job.id, 1);
            assert_eq!(c.attempt, 1);
            assert_eq!(c.prompt_text, "prompt 0");
        }
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(
        store.job_claim(1, now, lease).await.unwrap(),
        ClaimOne::NotClaimable(JobStatus::Processing)
    );
    assert_eq!(
        store.job_claim(12345, now, lease).await.unwrap(),
        ClaimOne::NotFound
    );
    store
        .prompt_update(
            2,
            &PromptPatch {
                active: Some(false),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    // Deactivation skipped the queued job already.
    assert_eq!(
        store.job_claim(2, now, lease).await.unwrap(),
        ClaimOne::NotClaimable(JobStatus::Skipped)
    );
}

pub(super) async fn concurrent_claims_of_one_job_let_exactly_one_through<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .job_claim(1, now, std::time::Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for task in tasks {
        match task.await.unwrap() {
            ClaimOne::Claimed(_) => claimed += 1,
            ClaimOne::NotClaimable(JobStatus::Processing) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1);
}

pub(super) async fn batched_finish_of_many_jobs_mixes_outcomes<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 6, 1).await;
    let now = t0();
    let c = store
        .jobs_claim(6, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let finishes = vec![
        finish(c[0].job.id, 1, now, success("a")),
        finish(c[1].job.id, 1, now, success("b")),
        finish(
            c[2].job.id,
            1,
            now,
            Outcome::Retry {
                at: now + Duration::seconds(5),
                error: error(ErrorClass::Retryable, "timeout"),
                refund_attempt: false,
            },
        ),
        finish(
            c[3].job.id,
            1,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "404 model not found")),
        ),
        finish(c[4].job.id, 9, now, success("stale")),
        finish(424242, 1, now, success("nobody")),
    ];
    let results = finish_all(&store, &finishes).await.unwrap();
    assert_eq!(results.len(), 6);
    let by_id = |id: i64| results.iter().find(|r| r.job_id == id).unwrap();
    assert!(by_id(c[0].job.id).applied && by_id(c[0].job.id).response_id.is_some());
    assert!(by_id(c[1].job.id).response_id.is_some());
    assert_ne!(
        by_id(c[0].job.id).response_id,
        by_id(c[1].job.id).response_id
    );
    assert_eq!(by_id(c[2].job.id).status, Some(JobStatus::Queued));
    assert_eq!(by_id(c[3].job.id).status, Some(JobStatus::Failed));
    assert!(!by_id(c[4].job.id).applied);
    assert_eq!(by_id(c[4].job.id).status, Some(JobStatus::Processing));
    assert!(!by_id(424242).applied);
    assert_eq!(by_id(424242).status, None);
    let responses = store
        .responses_list(&Default::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 2);
}
