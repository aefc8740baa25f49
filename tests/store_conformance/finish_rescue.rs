//! Finish, rescue, heartbeat and release: every write for an attempt is fenced by it.

use super::*;

// ---------------------------------------------------------------- finish

pub(super) async fn success_stores_one_response_and_a_second_finish_is_stale<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let claimed = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let job = &claimed[0];
    let done = now + Duration::seconds(2);
    let first = finish_all(
        &store,
        &[finish(job.job.id, job.attempt, done, success("answer"))],
    )
    .await
    .unwrap();
    assert!(first[0].applied);
    assert_eq!(first[0].status, Some(JobStatus::Succeeded));
    let response_id = first[0].response_id.expect("a response id");

    let second = finish_all(
        &store,
        &[finish(job.job.id, job.attempt, done, success("again"))],
    )
    .await
    .unwrap();
    assert!(
        !second[0].applied,
        "a second finish of the same attempt is stale"
    );
    assert_eq!(second[0].status, Some(JobStatus::Succeeded));
    assert_eq!(second[0].response_id, None);

    let stored = store
        .responses_list(
            &promptq::store::ResponseFilter {
                job_id: Some(job.job.id),
                ..Default::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, response_id);
    assert_eq!(stored[0].text, "answer");
    assert_eq!(stored[0].total_tokens, Some(30));
    assert_eq!(stored[0].batch_key, "2025-10-14");

    let after = store.job_get(job.job.id).await.unwrap().unwrap();
    assert_eq!(after.finished_at, Some(done));
    assert_eq!(after.lease_expires_at, None);
    assert_eq!(after.error_message, None);
    let attempts = store.job_attempts(job.job.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "succeeded");
    assert_eq!(attempts[0].http_status, Some(200));
    assert_eq!(attempts[0].started_at, Some(now));
    assert_eq!(attempts[0].finished_at, done);
    assert_eq!(attempts[0].attempt, job.attempt);
}

pub(super) async fn retry_and_failure_outcomes_record_attempts<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let mut now = t0();
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    let retry_at = now + Duration::seconds(10);
    let r = finish_all(
        &store,
        &[finish(
            c.job.id,
            c.attempt,
            now,
            Outcome::Retry {
                at: retry_at,
                error: error(ErrorClass::RateLimited, "429 slow down"),
                refund_attempt: true,
            },
        )],
    )
    .await
    .unwrap();
    assert_eq!(r[0].status, Some(JobStatus::Queued));
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.next_attempt_at, retry_at);
    assert_eq!(
        (job.attempt_count, job.max_attempts, job.rate_limited_count),
        (0, 3, 1),
        "a rate-limited attempt is refunded and counted apart"
    );
    assert_eq!(job.error_message.as_deref(), Some("429 slow down"));
    assert_eq!(job.finished_at, None);

    now = retry_at;
    let c2 = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(c2.attempt, 2);
    let r = finish_all(
        &store,
        &[finish(
            c2.job.id,
            2,
            now,
            Outcome::Failed(error(ErrorClass::Permanent, "401 bad key")),
        )],
    )
    .await
    .unwrap();
    assert_eq!(r[0].status, Some(JobStatus::Failed));
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error_message.as_deref(), Some("401 bad key"));
    assert_eq!(job.finished_at, Some(now));
    let attempts = store.job_attempts(c.job.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "failed"]);
    assert_eq!(attempts[0].error_class.as_deref(), Some("rate_limited"));
    assert_eq!(attempts[1].error_class.as_deref(), Some("permanent"));
}

pub(super) async fn stale_attempt_cannot_finish_a_rescued_job<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let first = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    // Not expired yet: nothing to rescue.
    assert!(
        store
            .jobs_rescue_expired(now + Duration::seconds(29))
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + Duration::seconds(31);
    let rescued = store.jobs_rescue_expired(later).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].status, JobStatus::Queued);
    let second = store
        .jobs_claim(1, later, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempt, 2);

    let stale = finish_all(
        &store,
        &[finish(first.job.id, 1, later, success("late answer"))],
    )
    .await
    .unwrap();
    assert!(
        !stale[0].applied,
        "the rescued attempt's finish is rejected"
    );
    assert_eq!(stale[0].status, Some(JobStatus::Processing));
    assert_eq!(status_of(&store, first.job.id).await, JobStatus::Processing);

    let fresh = finish_all(
        &store,
        &[finish(second.job.id, 2, later, success("answer"))],
    )
    .await
    .unwrap();
    assert!(fresh[0].applied);
    let attempts = store.job_attempts(first.job.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["abandoned", "succeeded"]);
}

pub(super) async fn rescue_fails_a_job_whose_attempts_are_spent<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let mut now = t0();
    for attempt in 1..=3 {
        let c = store
            .jobs_claim(1, now, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(c.len(), 1, "attempt {attempt} is claimable");
        now += Duration::seconds(31);
        let rescued = store.jobs_rescue_expired(now).await.unwrap();
        let expected = if attempt < 3 {
            JobStatus::Queued
        } else {
            JobStatus::Failed
        };
        assert_eq!(rescued[0].status, expected);
    }
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error_message.unwrap().contains("lease expired"));
    assert_eq!(job.finished_at, Some(now));
}

pub(super) async fn claimer_whose_pool_closes_unfinished_is_recovered_by_rescue<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let url_store = reopen(db).await;
    let now = t0();
    let claimed = url_store
        .jobs_claim(2, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // The claimer goes away without a finish. This is a graceful close of its pool, not a
    // crash; workers really killed with SIGKILL mid-batch are in tests/reliability.rs.
    url_store.close().await;
    drop(url_store);

    let later = now + Duration::seconds(45);
    let rescued = store.jobs_rescue_expired(later).await.unwrap();
    assert_eq!(rescued.len(), 2);
    let again = store
        .jobs_claim(10, later, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    let finishes: Vec<_> = again
        .iter()
        .map(|c| finish(c.job.id, c.attempt, later, success("recovered")))
        .collect();
    assert!(
        finish_all(&store, &finishes)
            .await
            .unwrap()
            .iter()
            .all(|r| r.applied)
    );
    let responses = store
        .responses_list(&Default::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 2, "one response per job");
}

/// A second, independent connection pool on the same database (another process's view).
pub(super) async fn reopen<D: Backend>(db: &Db<D>) -> D {
    D::of(Store::connect(&db.url).await.unwrap())
}

pub(super) async fn heartbeat_extends_only_attempts_still_owned<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let now = t0();
    let claimed = store
        .jobs_claim(2, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let a = (claimed[0].job.id, claimed[0].attempt);
    let b = (claimed[1].job.id, claimed[1].attempt);
    finish_all(&store, &[finish(b.0, b.1, now, success("done"))])
        .await
        .unwrap();
    let until = now + Duration::seconds(60);
    let owned = store
        .jobs_heartbeat(&[a, b, (a.0, 7)], now, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(owned, vec![a]);
    assert_eq!(
        store.job_get(a.0).await.unwrap().unwrap().lease_expires_at,
        Some(until)
    );
    // With the lease extended, a rescue at the old expiry takes nothing.
    assert!(
        store
            .jobs_rescue_expired(now + Duration::seconds(45))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn release_hands_jobs_back_without_spending_an_attempt<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 1).await;
    let now = t0();
    let c = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    let released = store
        .jobs_release(&[(c.job.id, c.attempt)], now, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(released, 1);
    let job = store.job_get(c.job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt_count, 0);
    assert_eq!(job.lease_expires_at, None);
    let again = store
        .jobs_claim(1, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again[0].attempt, 1);
    // Releasing a job that is not ours (stale attempt) does nothing.
    assert_eq!(
        store
            .jobs_release(&[(c.job.id, 5)], now, std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}

/// How many row versions on the job table's first page were replaced by a heap-only update
/// (`HEAP_HOT_UPDATED`, 0x4000 in `t_infomask2`), read with `pageinspect`.
async fn hot_updated_versions(store: &PostgresStore) -> i64 {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM heap_page_items(get_raw_page('prompt_jobs', 0))
         WHERE t_infomask2 & 16384 <> 0",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// A running job's lease is renewed every third of a lease for as long as its call lasts, so
/// on PostgreSQL a renewal must stay a heap-only update: no index may hold the lease's expiry.
/// Read from the table's page: each claimed row version the renewal replaced is marked
/// HOT-updated.
pub(super) async fn a_lease_renewal_is_a_heap_only_update(db: &Db<PostgresStore>) {
    use promptq::store::Queue;
    let store = db.store.clone();
    seeded(&store, 1, 3, 1).await;
    let now = t0();
    let lease = std::time::Duration::from_secs(30);
    let claimed = store.jobs_claim(3, now, lease).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let before = hot_updated_versions(&store).await;
    let attempts: Vec<_> = claimed.iter().map(|c| (c.job.id, c.attempt)).collect();
    let owned = store
        .jobs_heartbeat(&attempts, now + Duration::seconds(10), lease)
        .await
        .unwrap();
    assert_eq!(owned.len(), 3);
    let after = hot_updated_versions(&store).await;
    assert_eq!(after - before, 3, "each renewal a heap-only update");
    // Found through the list of running jobs all the same: expired at the renewed time, not before.
    assert!(
        store
            .jobs_rescue_expired(now + Duration::seconds(35))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .jobs_rescue_expired(now + Duration::seconds(41))
            .await
            .unwrap()
            .len(),
        3
    );
}

/// On PostgreSQL no index of the job table depends on a job's state (the due and running
/// jobs are listed apart), so a claim and a finish rewrite a job's row as heap-only updates:
/// each replaced row version is marked HOT-updated (`HEAP_HOT_UPDATED`).
pub(super) async fn claims_and_finishes_are_heap_only_updates(db: &Db<PostgresStore>) {
    use promptq::store::Queue;
    let store = db.store.clone();
    seeded(&store, 1, 3, 1).await;
    let now = t0();
    let before = hot_updated_versions(&store).await;
    let claimed = store
        .jobs_claim(3, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        hot_updated_versions(&store).await - before,
        3,
        "each claim a heap-only update"
    );
    let done = now + Duration::seconds(2);
    let finishes: Vec<_> = claimed
        .iter()
        .map(|c| finish(c.job.id, c.attempt, done, success("answer")))
        .collect();
    let finished = finish_all(&store, &finishes).await.unwrap();
    assert!(finished.iter().all(|f| f.applied));
    assert_eq!(
        hot_updated_versions(&store).await - before,
        6,
        "each finish a heap-only update"
    );
}

/// PostgreSQL empties its unlogged tables when it recovers from a crash (a promoted replica
/// starts with them empty): the lists of due and running jobs are then rebuilt from the job
/// rows, so no queued job is stranded and no running job is lost or run twice.
pub(super) async fn lists_emptied_by_a_crash_are_rebuilt(db: &Db<PostgresStore>) {
    use promptq::store::Queue;
    let store = db.store.clone();
    seeded(&store, 1, 6, 1).await;
    let now = t0();
    let lease = std::time::Duration::from_secs(30);
    let running = store.jobs_claim(2, now, lease).await.unwrap();
    assert_eq!(running.len(), 2);
    // What crash recovery leaves: every unlogged table reset to empty.
    store
        .admin_execute("TRUNCATE job_queue, job_claims, job_lists_intact")
        .await
        .unwrap();
    // A claim that finds nothing notices, rebuilds and claims the four queued jobs.
    let claimed = store.jobs_claim(10, now, lease).await.unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|c| c.job.id).collect();
    ids.extend(running.iter().map(|c| c.job.id));
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        6,
        "the queued jobs claimed once, the running left alone"
    );
    // The running jobs were listed again: their worker can still finish them…
    let done = now + Duration::seconds(2);
    let finished = finish_all(
        &store,
        &[finish(
            running[0].job.id,
            running[0].attempt,
            done,
            success("answer"),
        )],
    )
    .await
    .unwrap();
    assert!(finished[0].applied);
    // …and one whose worker is gone comes back when its lease expires, found by the sweep.
    store
        .admin_execute("TRUNCATE job_queue, job_claims, job_lists_intact")
        .await
        .unwrap();
    let rescued = store
        .jobs_rescue_expired(now + Duration::seconds(31))
        .await
        .unwrap();
    let rescued: Vec<_> = rescued.iter().map(|r| r.job_id).collect();
    assert!(rescued.contains(&running[1].job.id), "{rescued:?}");
    let again = store
        .jobs_claim(10, now + Duration::seconds(32), lease)
        .await
        .unwrap();
    assert!(again.iter().any(|c| c.job.id == running[1].job.id));
}
