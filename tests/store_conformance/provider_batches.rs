//! Provider batches: opening one claims one model's jobs of one batch key and links them in
//! one transaction; a batch is taken by one process at a time until its hold runs out; steps
//! are fenced by state; closing hands back what is still pending, atomically.

use std::time::Duration as StdDuration;

use promptq::domain::provider_batch::{LineOutcome, ProviderBatchPatch, ProviderBatchState};

use super::*;

const LEASE: StdDuration = StdDuration::from_secs(48 * 3600);
const HOLD: StdDuration = StdDuration::from_secs(60);

pub(super) async fn provider_batch_open_claims_one_model_and_one_key<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m0 = model(&store, "m0").await;
    let m1 = model(&store, "m1").await;
    let mut ids = Vec::new();
    for p in 0..3 {
        ids.push(prompt(&store, &format!("prompt {p}"), None, 1).await);
    }
    store
        .jobs_enqueue(&plan(&ids, "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    store
        .jobs_enqueue(&plan(&ids, "2025-10-15"), opts(t0()))
        .await
        .unwrap();
    let now = t0() + Duration::seconds(1);

    let (batch, jobs) = store
        .provider_batch_open(m0, 100, now, LEASE, HOLD, "tok-1")
        .await
        .unwrap()
        .expect("jobs to batch");
    assert_eq!(batch.state, ProviderBatchState::Preparing);
    assert_eq!(
        (batch.model_id, batch.batch_key.as_str()),
        (m0, "2025-10-14")
    );
    assert_eq!((batch.request_count, batch.token.as_str()), (3, "tok-1"));
    assert_eq!(batch.next_poll_at, now + Duration::seconds(60));
    assert_eq!(jobs.len(), 3);
    for job in &jobs {
        assert_eq!(
            (job.job.model_id, job.job.batch_key.as_str()),
            (m0, "2025-10-14")
        );
        assert_eq!(job.attempt, 1);
        assert!(job.prompt_text.starts_with("prompt "));
        assert_eq!(status_of(&store, job.job.id).await, JobStatus::Processing);
        let leased = store
            .job_get(job.job.id)
            .await
            .unwrap()
            .unwrap()
            .lease_expires_at;
        assert_eq!(leased, Some(now + Duration::hours(48)));
        let of_job = store.provider_batch_of_job(job.job.id).await.unwrap();
        assert_eq!(of_job.map(|b| b.id), Some(batch.id));
    }
    let mut pending = store.provider_batch_pending(batch.id).await.unwrap();
    pending.sort();
    let mut claimed: Vec<_> = jobs.iter().map(|j| (j.job.id, j.attempt)).collect();
    claimed.sort();
    assert_eq!(pending, claimed);

    // The other key makes the next batch; then nothing is left of this model.
    let (next, _) = store
        .provider_batch_open(m0, 100, now, LEASE, HOLD, "tok-2")
        .await
        .unwrap()
        .expect("the second key");
    assert_eq!(next.batch_key, "2025-10-15");
    assert!(
        store
            .provider_batch_open(m0, 100, now, LEASE, HOLD, "t")
            .await
            .unwrap()
            .is_none()
    );
    // The other model's jobs were never touched; a limit cuts a batch.
    let (cut, jobs) = store
        .provider_batch_open(m1, 2, now, LEASE, HOLD, "tok-3")
        .await
        .unwrap()
        .expect("the other model");
    assert_eq!((cut.request_count, jobs.len()), (2, 2));
    let recent = store.provider_batches_recent(10).await.unwrap();
    assert_eq!(
        recent.iter().map(|b| b.id).collect::<Vec<_>>(),
        [cut.id, next.id, batch.id]
    );
}

pub(super) async fn provider_batch_is_taken_by_one_process_until_its_hold_ends<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let m = all_jobs(&store).await[0].model_id;
    let now = t0();
    let (batch, _) = store
        .provider_batch_open(m, 10, now, LEASE, HOLD, "tok")
        .await
        .unwrap()
        .unwrap();
    // Its opener holds it.
    assert!(
        store
            .provider_batch_take(&[m], now, HOLD)
            .await
            .unwrap()
            .is_none()
    );
    let later = now + Duration::seconds(61);
    assert!(
        store
            .provider_batch_take(&[m + 1], later, HOLD)
            .await
            .unwrap()
            .is_none()
    );
    let taken = store.provider_batch_take(&[m], later, HOLD).await.unwrap();
    assert_eq!(taken.map(|b| b.id), Some(batch.id));
    // Taken again by someone else only once this hold ends too.
    assert!(
        store
            .provider_batch_take(&[m], later, HOLD)
            .await
            .unwrap()
            .is_none()
    );
    let models = [m];
    let (a, b) = tokio::join!(
        store.provider_batch_take(&models, later + Duration::seconds(61), HOLD),
        store.provider_batch_take(&models, later + Duration::seconds(61), HOLD),
    );
    assert_eq!(
        usize::from(a.unwrap().is_some()) + usize::from(b.unwrap().is_some()),
        1
    );
}

pub(super) async fn provider_batch_steps_are_fenced_by_state<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let m = all_jobs(&store).await[0].model_id;
    let now = t0();
    let (batch, _) = store
        .provider_batch_open(m, 10, now, LEASE, HOLD, "tok")
        .await
        .unwrap()
        .unwrap();
    let uploaded = ProviderBatchPatch {
        state: Some(ProviderBatchState::Uploaded),
        input_file_id: Some("file-1".into()),
        ..ProviderBatchPatch::default()
    };
    let preparing = ProviderBatchState::Preparing;
    assert!(
        store
            .provider_batch_update(batch.id, preparing, &uploaded, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .provider_batch_update(batch.id, preparing, &uploaded, now)
            .await
            .unwrap()
    );
    let submitted = ProviderBatchPatch {
        state: Some(ProviderBatchState::Submitted),
        provider_batch_id: Some("batch_1".into()),
        provider_status: Some("validating".into()),
        next_poll_at: Some(now + Duration::seconds(5)),
        polled: true,
        ..ProviderBatchPatch::default()
    };
    let state = ProviderBatchState::Uploaded;
    assert!(
        store
            .provider_batch_update(batch.id, state, &submitted, now)
            .await
            .unwrap()
    );
    let row = store.provider_batch_get(batch.id).await.unwrap().unwrap();
    assert_eq!(row.state, ProviderBatchState::Submitted);
    assert_eq!(row.input_file_id.as_deref(), Some("file-1"));
    assert_eq!(row.provider_batch_id.as_deref(), Some("batch_1"));
    assert_eq!(row.provider_status.as_deref(), Some("validating"));
    assert_eq!(
        (row.polls, row.next_poll_at),
        (1, now + Duration::seconds(5))
    );
    assert_eq!(row.finished_at, None);
}

pub(super) async fn provider_batch_close_hands_back_what_is_pending<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 4, 1).await;
    let m = all_jobs(&store).await[0].model_id;
    let now = t0();
    let (batch, jobs) = store
        .provider_batch_open(m, 10, now, LEASE, HOLD, "tok")
        .await
        .unwrap()
        .unwrap();
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| (jobs[i].job.id, jobs[i].attempt));
    // One line answered (through the fenced finish), one cut off and handed back.
    finish_all(&store, &[finish(a.0, a.1, now, success("hi"))])
        .await
        .unwrap();
    store
        .provider_batch_record(&[(a.0, a.1, LineOutcome::Succeeded)])
        .await
        .unwrap();
    assert_eq!(
        store
            .provider_batch_return(batch.id, &[b], now)
            .await
            .unwrap(),
        1
    );
    let cut = store.provider_batch_get(batch.id).await.unwrap().unwrap();
    assert_eq!(cut.request_count, 3);
    let returned = store.job_get(b.0).await.unwrap().unwrap();
    assert_eq!(
        (returned.status, returned.attempt_count),
        (JobStatus::Queued, 0)
    );
    let mut pending = store.provider_batch_pending(batch.id).await.unwrap();
    pending.sort();
    assert_eq!(pending, [c, d]);
    let (preparing, abandoned) = (ProviderBatchState::Preparing, ProviderBatchState::Abandoned);
    let closed = store
        .provider_batch_close(batch.id, preparing, abandoned, Some("gone"), now)
        .await
        .unwrap();
    assert_eq!(closed, Some(2));
    for id in [c.0, d.0] {
        assert_eq!(status_of(&store, id).await, JobStatus::Queued);
        assert!(store.provider_batch_of_job(id).await.unwrap().is_none());
    }
    assert_eq!(status_of(&store, a.0).await, JobStatus::Succeeded);
    let row = store.provider_batch_get(batch.id).await.unwrap().unwrap();
    assert_eq!((row.state, row.error.as_deref()), (abandoned, Some("gone")));
    assert_eq!(row.finished_at, Some(now));
    // Closed once only; the jobs handed back go into the next batch in the same attempt.
    let again = store.provider_batch_close(batch.id, preparing, abandoned, None, now);
    assert_eq!(again.await.unwrap(), None);
    let (next, jobs) = store
        .provider_batch_open(m, 10, now, LEASE, HOLD, "tok-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        store.provider_batch_pending(next.id).await.unwrap().len(),
        3
    );
}

pub(super) async fn provider_batch_job_cancel_is_fenced_and_counts_what_is_left<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let m = all_jobs(&store).await[0].model_id;
    let now = t0();
    let (batch, jobs) = store
        .provider_batch_open(m, 10, now, LEASE, HOLD, "tok")
        .await
        .unwrap()
        .unwrap();
    let (first, second) = (jobs[0].job.id, jobs[1].job.id);
    let (cancelled, left) = store
        .provider_batch_cancel_job(first, now)
        .await
        .unwrap()
        .expect("a job in a batch");
    assert_eq!((cancelled.id, left), (batch.id, 1));
    let job = store.job_get(first).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Skipped);
    assert!(job.error_message.unwrap().contains("cancelled"));
    // Once only; and a line read later for it changes nothing.
    assert!(
        store
            .provider_batch_cancel_job(first, now)
            .await
            .unwrap()
            .is_none()
    );
    let late = [finish(first, jobs[0].attempt, now, success("late"))];
    assert!(!finish_all(&store, &late).await.unwrap()[0].applied);
    let (_, left) = store
        .provider_batch_cancel_job(second, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left, 0);
    assert!(
        store
            .provider_batch_pending(batch.id)
            .await
            .unwrap()
            .is_empty()
    );
}
