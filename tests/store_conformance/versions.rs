//! One batch answers one version of each prompt; the database's clock dates what a finish
//! writes. Scenarios of the conformance suite (run on both backends by its macro).

use chrono::Duration;
use promptq::domain::{ErrorClass, JobStatus, Outcome};
use promptq::store::{ModelPatch, Page, PromptPatch, ResponseFilter, prompt_version_hash};

use super::{error, finish, finish_all, model, opts, plan, prompt, status_of, success, t0};

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn edit_mid_batch_keeps_the_batch_on_its_prompt_version<D: super::Backend>(
    db: &super::Db<D>,
) {
    let store = db.store.clone();
    let m = model(&store, "m").await;
    store
        .model_update(
            m,
            &ModelPatch {
                params: Some(serde_json::json!({"latencyMs": 0, "temperature": 0.2})),
                ..ModelPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let p = prompt(&store, "old text", Some(vec![m]), 3).await;
    store
        .jobs_enqueue(&plan(&[p], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    let first = store.jobs_claim(1, t0(), LEASE).await.unwrap();
    assert_eq!(first[0].prompt_text, "old text");

    // Edited while the batch runs: text and generation params.
    store
        .prompt_update(
            p,
            &PromptPatch {
                text: Some("new text".into()),
                ..PromptPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    store
        .model_update(
            m,
            &ModelPatch {
                params: Some(serde_json::json!({"latencyMs": 0, "temperature": 0.9})),
                ..ModelPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let rest = store.jobs_claim(10, t0(), LEASE).await.unwrap();
    assert_eq!(rest.len(), 2);
    let old = prompt_version_hash("old text");
    for claimed in first.iter().chain(&rest) {
        assert_eq!(
            claimed.prompt_text, "old text",
            "the batch answers its own version"
        );
        assert_eq!(
            claimed.model.params["temperature"], 0.2,
            "params of the enqueue"
        );
        assert_eq!(claimed.job.prompt_version.as_deref(), Some(old.as_str()));
    }
    let finishes: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|c| finish(c.job.id, c.attempt, t0(), success("answer")))
        .collect();
    finish_all(&store, &finishes).await.unwrap();
    let responses = store
        .responses_list(&ResponseFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 3);
    for response in &responses {
        assert_eq!(response.prompt_version.as_deref(), Some(old.as_str()));
        assert_eq!(response.prompt_text.as_deref(), Some("old text"));
    }
    let job = store.job_get(rest[0].job.id).await.unwrap().unwrap();
    assert_eq!(job.prompt_version.as_deref(), Some(old.as_str()));

    // The next batch answers the new version.
    store
        .jobs_enqueue(&plan(&[p], "2025-10-15"), opts(t0()))
        .await
        .unwrap();
    let next = store.jobs_claim(10, t0(), LEASE).await.unwrap();
    assert_eq!(next.len(), 3);
    let new = prompt_version_hash("new text");
    for claimed in &next {
        assert_eq!(claimed.prompt_text, "new text");
        assert_eq!(claimed.model.params["temperature"], 0.9);
        assert_eq!(claimed.job.prompt_version.as_deref(), Some(new.as_str()));
    }
    // Limits and the mock's knobs are not snapshotted: they are read as they are now.
    assert_eq!(next[0].model.params["latencyMs"], 0);
}

pub async fn unlinking_a_model_skips_its_queued_jobs<D: super::Backend>(db: &super::Db<D>) {
    let store = db.store.clone();
    let kept = model(&store, "kept").await;
    let dropped = model(&store, "dropped").await;
    let p = prompt(&store, "question", Some(vec![kept, dropped]), 2).await;
    store
        .jobs_enqueue(&plan(&[p], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    store
        .prompt_update(
            p,
            &PromptPatch {
                model_ids: Some(vec![kept]),
                ..PromptPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let claimed = store.jobs_claim(10, t0(), LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.model.id == kept));
    for job in super::all_jobs(&store).await {
        if job.model_id == dropped {
            assert_eq!(job.status, JobStatus::Skipped);
            assert!(job.error_message.unwrap().contains("skipped"));
        }
    }
}

/// A finish is dated by the store's clock; a retry keeps the worker's delay from it, however
/// far the worker's own clock is off.
pub async fn finish_dates_rows_by_the_store_clock<D: super::Backend>(db: &super::Db<D>) {
    let store = db.store.clone();
    let m = model(&store, "m").await;
    let p = prompt(&store, "q", Some(vec![m]), 2).await;
    store
        .jobs_enqueue(&plan(&[p], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    let claimed = store.jobs_claim(2, t0(), LEASE).await.unwrap();
    // The worker's clock is a day behind the store's.
    let skewed = t0() - Duration::days(1);
    let retry = finish(
        claimed[0].job.id,
        claimed[0].attempt,
        skewed,
        Outcome::Retry {
            at: skewed + Duration::seconds(10),
            error: error(ErrorClass::Retryable, "busy"),
            refund_attempt: false,
        },
    );
    let done = finish(claimed[1].job.id, claimed[1].attempt, skewed, success("x"));
    store.jobs_finish(&[retry, done], t0()).await.unwrap();
    let retried = store.job_get(claimed[0].job.id).await.unwrap().unwrap();
    assert_eq!(retried.next_attempt_at, t0() + Duration::seconds(10));
    let finished = store.job_get(claimed[1].job.id).await.unwrap().unwrap();
    assert_eq!(finished.finished_at, Some(t0()));
    assert_eq!(
        status_of(&store, claimed[1].job.id).await,
        JobStatus::Succeeded
    );
}

/// With [`Clock::Database`] the statements read the database's clock: a lease taken now is
/// not expired now, and is expired once its length has passed on that clock.
pub async fn database_clock_decides_leases<D: super::Backend>(db: &super::Db<D>) {
    use promptq::store::Clock;
    let store = db.store.clone();
    let m = model(&store, "m").await;
    let p = prompt(&store, "q", Some(vec![m]), 1).await;
    store
        .jobs_enqueue(
            &plan(&[p], "2025-10-14"),
            promptq::store::EnqueueOptions {
                now: Clock::Database,
                max_attempts: 3,
                mark_prompts: true,
            },
        )
        .await
        .unwrap();
    let db_now = store.clock_now().await.unwrap();
    let claimed = store.jobs_claim(1, Clock::Database, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "a job enqueued now is due now");
    let lease = claimed[0].job.lease_expires_at.unwrap();
    assert!((lease - db_now - Duration::seconds(30)).num_seconds().abs() <= 5);
    assert!(
        store
            .jobs_rescue_expired(Clock::Database)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .jobs_count_expired(lease - Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .jobs_count_expired(lease + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
}
