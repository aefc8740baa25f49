//! Enqueue and claim: each job is created once, and claimed once, oldest due first.

use super::*;

// ---------------------------------------------------------------- enqueue

pub(super) async fn enqueue_creates_each_prompt_model_run_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p1 = prompt(&store, "best CRM?", None, 3).await;
    let p2 = prompt(&store, "best ERP?", Some(vec![m2]), 2).await;

    let first = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(first.jobs_created, 2 * 3 + 2);
    assert_eq!(first.prompt_count, 2);

    let again = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(
        again.jobs_created, 0,
        "a second pass for the same batch creates nothing"
    );
    assert_eq!(again.prompt_count, 0);

    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 8);
    let keys: HashSet<_> = jobs
        .iter()
        .map(|j| (j.prompt_id, j.model_id, j.run_index, j.batch_key.clone()))
        .collect();
    assert_eq!(keys.len(), 8);
    assert!(keys.contains(&(p1, m1, 2, "2025-10-14".to_owned())));
    assert!(!keys.contains(&(p2, m1, 0, "2025-10-14".to_owned())));
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.attempt_count, 0);
        assert_eq!(job.max_attempts, 3);
        assert_eq!(job.scheduled_for, t0());
    }

    let marked = store.prompt_get(p1).await.unwrap().unwrap();
    assert_eq!(marked.last_batch_key.as_deref(), Some("2025-10-14"));
    assert_eq!(marked.last_run_at, Some(t0()));

    // The next day is a new batch.
    let next = store
        .jobs_enqueue(&plan(&[p1], "2025-10-15"), opts(t0() + Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(next.jobs_created, 6);
}

pub(super) async fn enqueue_ignores_inactive_prompts_and_models<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "a").await;
    let m2 = model(&store, "b").await;
    let p1 = prompt(&store, "one", None, 1).await;
    let p2 = prompt(&store, "two", None, 1).await;
    store
        .model_update(
            m2,
            &ModelPatch {
                active: Some(false),
                ..ModelPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    store
        .prompt_update(
            p2,
            &PromptPatch {
                active: Some(false),
                ..PromptPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let report = store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    assert_eq!(report.jobs_created, 1);
    let jobs = all_jobs(&store).await;
    assert_eq!((jobs[0].prompt_id, jobs[0].model_id), (p1, m1));
    let schedulable = store.prompts_schedulable().await.unwrap();
    assert_eq!(
        schedulable.iter().map(|p| p.prompt_id).collect::<Vec<_>>(),
        vec![p1]
    );
}

pub(super) async fn concurrent_enqueues_of_one_batch_create_each_job_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded_without_jobs(&store, 4, 10, 5).await;
    let expected = 4 * 10 * 5;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let plan = plan(&prompts, "2025-10-14");
        tasks.push(tokio::spawn(async move {
            store.jobs_enqueue(&plan, opts(t0())).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap().jobs_created;
    }
    assert_eq!(created, expected, "the inserted counts add up to the batch");
    assert_eq!(all_jobs(&store).await.len() as u64, expected);
}

pub(super) async fn seeded_without_jobs(
    store: &impl QueueDriver,
    models: usize,
    prompts: usize,
    runs: i32,
) -> Vec<i64> {
    for m in 0..models {
        model(store, &format!("m{m}")).await;
    }
    let mut ids = Vec::new();
    for p in 0..prompts {
        ids.push(prompt(store, &format!("prompt {p}"), None, runs).await);
    }
    ids
}

// ---------------------------------------------------------------- claim

pub(super) async fn claim_takes_due_jobs_in_order_and_leases_them<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 3, 1).await;
    let now = t0() + Duration::seconds(1);
    let lease = std::time::Duration::from_secs(30);
    let claimed = store.jobs_claim(2, now, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed[0].job.id < claimed[1].job.id, "oldest due first");
    for c in &claimed {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.job.status, JobStatus::Processing);
        assert_eq!(c.job.lease_expires_at, Some(now + Duration::seconds(30)));
        assert_eq!(c.job.started_at, Some(now));
        assert!(c.prompt_text.starts_with("prompt "));
        assert_eq!(c.model.provider, ProviderKind::Mock);
    }
    // Put the third job in the future with a retry; it is not due yet.
    let third = store.jobs_claim(10, now, lease).await.unwrap();
    assert_eq!(third.len(), 1);
    let later = now + Duration::minutes(5);
    finish_all(
        &store,
        &[finish(
            third[0].job.id,
            1,
            now,
            Outcome::Retry {
                at: later,
                error: error(ErrorClass::Retryable, "503"),
                refund_attempt: false,
            },
        )],
    )
    .await
    .unwrap();
    assert!(store.jobs_claim(10, now, lease).await.unwrap().is_empty());
    let again = store
        .jobs_claim(10, later, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

pub(super) async fn a_claim_ahead_leaves_the_last_due_jobs_for_other_slots<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 10, 1).await;
    let now = t0() + Duration::seconds(1);
    let lease = std::time::Duration::from_secs(30);
    let size = |now, ahead, spare| ClaimSize { now, ahead, spare };
    let mut taken = Vec::new();
    // (slots free now, ahead, spare) -> jobs taken, with 10, 7, 7, 6, 2 and 1 due.
    for (asked, expected) in [
        (size(2, 3, 7), 3), // 2 for free slots, 7 left for others: 1 ahead
        (size(0, 3, 7), 0), // all 7 due left for others
        (size(1, 3, 6), 1), // only the free slot's job
        (size(1, 3, 1), 4), // 1 + 3 ahead, 2 left for others
        (size(0, 1, 0), 1), // nobody else to leave jobs for: ahead as asked
        (size(3, 0, 9), 1), // a claim for free slots takes what there is
    ] {
        let claimed = store
            .jobs_claim_except(asked, now, lease, &[], None)
            .await
            .unwrap();
        assert_eq!(claimed.len(), expected, "{asked:?}");
        taken.extend(claimed.into_iter().map(|c| c.job.id));
    }
    let mut in_order = taken.clone();
    in_order.sort();
    assert_eq!(taken, in_order, "oldest due first, claim after claim");
    assert_eq!(taken.len(), 10);
}

pub(super) async fn concurrent_claimers_claim_each_job_exactly_once<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    seeded(&store, 4, 100, 5).await; // 2,000 jobs
    let now = t0() + Duration::seconds(1);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .jobs_claim(25, now, std::time::Duration::from_secs(30))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                let finishes: Vec<Finish> = batch
                    .iter()
                    .map(|c| finish(c.job.id, c.attempt, now, success("ok")))
                    .collect();
                let results = finish_all(&store, &finishes).await.unwrap();
                assert!(results.iter().all(|r| r.applied));
                mine.extend(batch.iter().map(|c| c.job.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 2000);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.succeeded, 2000);
    assert_eq!(summary.total, 2000);
}
