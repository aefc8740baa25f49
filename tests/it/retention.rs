//! Retention: `promptq prune` and the store's bounded prune batches on both databases. What
//! is old goes (attempt records, raw provider bodies, and with `--jobs` finished jobs with
//! their answers); a job that is queued or processing is never touched, however old. A
//! success has no attempt record of its own (its answer records it), so a pruned job that
//! succeeded still shows its successful attempt.

use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use promptq::app::{App, PruneRequest};
use promptq::domain::{
    AttemptError, BatchKey, ErrorClass, Finish, JobId, JobStatus, NewResponse, Outcome,
    PlannedBatch, ProviderKind,
};
use promptq::store::{
    EnqueueOptions, JobFilter, NewModel, NewPrompt, Page, PruneCounts, PruneTarget, ResponseFilter,
    Store,
};

use crate::support::{self, on_both};

on_both!(
    threads = 2;
    prune_removes_what_is_old_and_never_a_live_job,
    prune_batches_are_bounded_and_walk_on,
    the_cli_counts_first_and_removes_only_with_yes,
    a_worker_with_retention_days_prunes_by_itself,
);

/// One prompt with `runs` runs on one mock model; returns the prompt id.
async fn seed(store: &Store, runs: i32, now: DateTime<Utc>) -> i64 {
    store
        .model_insert(
            &NewModel {
                name: "m".into(),
                provider: ProviderKind::Mock,
                model: "mock".into(),
                params: serde_json::json!({}),
                active: true,
            },
            now,
        )
        .await
        .unwrap();
    store
        .prompt_insert(
            &NewPrompt {
                text: "question".into(),
                model_ids: None,
                runs,
                active: true,
                schedule: None,
            },
            now,
        )
        .await
        .unwrap()
        .id
}

/// Enqueues `prompt`'s batch `key` at `at`; returns its job ids in order.
async fn enqueue(store: &Store, prompt: i64, key: &str, at: DateTime<Utc>) -> Vec<JobId> {
    let batch_key: BatchKey = key.parse().unwrap();
    store
        .jobs_enqueue(
            &[PlannedBatch {
                prompt_id: prompt,
                batch_key: batch_key.clone(),
                scheduled_for: at,
            }],
            EnqueueOptions {
                now: at.into(),
                max_attempts: 3,
                mark_prompts: false,
            },
        )
        .await
        .unwrap();
    let filter = JobFilter {
        batch_key: Some(key.to_owned()),
        ..JobFilter::default()
    };
    let jobs = store.jobs_list(&filter, Page::default()).await.unwrap();
    jobs.iter().map(|j| j.id).collect()
}

/// Claims `id` at `at`; returns the attempt.
async fn claim(store: &Store, id: JobId, at: DateTime<Utc>, lease: DateTime<Utc>) -> i32 {
    let lease = (lease - at).to_std().expect("a lease after the claim");
    match store.job_claim(id, at, lease).await.unwrap() {
        promptq::store::ClaimOne::Claimed(claimed) => claimed.attempt,
        other => panic!("job {id} not claimed: {other:?}"),
    }
}

async fn finish(store: &Store, id: JobId, attempt: i32, at: DateTime<Utc>, outcome: Outcome) {
    let results = store
        .jobs_finish(
            &[Finish {
                job_id: id,
                attempt,
                finished_at: at,
                outcome,
            }],
            at,
        )
        .await
        .unwrap();
    assert!(results[0].applied);
}

fn success(raw: &str) -> Outcome {
    Outcome::Succeeded(Box::new(NewResponse {
        text: format!("answer {raw}"),
        latency_ms: 5,
        raw: Some(raw.to_owned()),
        ..NewResponse::default()
    }))
}

fn retry(at: DateTime<Utc>) -> Outcome {
    Outcome::Retry {
        at,
        error: error(),
        refund_attempt: false,
    }
}

fn error() -> AttemptError {
    AttemptError {
        class: ErrorClass::Retryable,
        http_status: Some(503),
        message: "unavailable".into(),
    }
}

async fn attempts(store: &Store, id: JobId) -> usize {
    store.job_attempts(id).await.unwrap().len()
}

async fn raw_of(store: &Store, id: JobId) -> Option<String> {
    let filter = ResponseFilter {
        job_id: Some(id),
        ..ResponseFilter::default()
    };
    let responses = store
        .responses_list(&filter, Page::default())
        .await
        .unwrap();
    assert_eq!(responses.len(), 1, "job {id} has its answer");
    assert!(responses[0].text.starts_with("answer"));
    responses[0].raw.clone()
}

fn request(jobs: bool, apply: bool) -> PruneRequest {
    PruneRequest {
        older_than: Duration::days(90),
        jobs,
        apply,
    }
}

async fn prune_removes_what_is_old_and_never_a_live_job(db: &support::TestDb) {
    let store = db.store.clone();
    let now = Utc::now();
    let old = now - Duration::days(120);
    let recent = now - Duration::days(1);
    let prompt = seed(&store, 4, old).await;
    let ids = enqueue(&store, prompt, "2025-01-01", old).await;
    let (done, failed, queued, running) = (ids[0], ids[1], ids[2], ids[3]);
    let minute = Duration::minutes(1);
    let lease = old + Duration::seconds(30);

    let a = claim(&store, done, old, lease).await;
    finish(&store, done, a, old + minute, success("RAW-old")).await;
    let a = claim(&store, failed, old, lease).await;
    finish(&store, failed, a, old + minute, retry(old + minute)).await;
    let a = claim(&store, failed, old + minute * 2, lease + minute * 2).await;
    finish(
        &store,
        failed,
        a,
        old + minute * 3,
        Outcome::Failed(error()),
    )
    .await;
    // Old but live: a queued job waiting for its retry, a processing one in its 2nd attempt.
    let a = claim(&store, queued, old, lease).await;
    finish(
        &store,
        queued,
        a,
        old + minute,
        retry(now + Duration::days(1)),
    )
    .await;
    let a = claim(&store, running, old, lease).await;
    finish(&store, running, a, old + minute, retry(old + minute)).await;
    claim(&store, running, old + minute * 2, now + Duration::hours(1)).await;
    // A recent batch: nothing of it is old enough.
    let fresh = enqueue(&store, prompt, "2025-04-01", recent).await[0];
    let a = claim(&store, fresh, recent, recent + Duration::seconds(30)).await;
    finish(&store, fresh, a, recent + minute, success("RAW-new")).await;

    let app = App::with_store(support::config(&db.url, &[]), store.clone()).unwrap();
    let dry = app.prune(request(true, false), now).await.unwrap();
    assert!(dry.dry_run);
    let expected = PruneCounts {
        attempts: 2,
        raw_bodies: 1,
        jobs: 2,
        responses: 1,
    };
    assert_eq!(dry.counts, expected);
    assert_eq!(
        (dry.batches, attempts(&store, done).await),
        (0, 1),
        "dry run"
    );
    assert_eq!(raw_of(&store, done).await.as_deref(), Some("RAW-old"));

    let pruned = app.prune(request(false, true), now).await.unwrap();
    assert_eq!(
        pruned.counts,
        PruneCounts {
            jobs: 0,
            responses: 0,
            ..expected
        }
    );
    for (id, left) in [
        (done, 1),
        (failed, 0),
        (queued, 1),
        (running, 1),
        (fresh, 1),
    ] {
        assert_eq!(attempts(&store, id).await, left, "attempts of job {id}");
    }
    assert_eq!(raw_of(&store, done).await, None, "the old raw body is gone");
    assert_eq!(raw_of(&store, fresh).await.as_deref(), Some("RAW-new"));
    let again = app.prune(request(false, true), now).await.unwrap();
    assert_eq!(
        again.counts,
        PruneCounts::default(),
        "a second prune finds nothing"
    );

    let pruned = app.prune(request(true, true), now).await.unwrap();
    assert_eq!((pruned.counts.jobs, pruned.counts.responses), (2, 1));
    assert!(store.job_get(done).await.unwrap().is_none());
    assert!(store.job_get(failed).await.unwrap().is_none());
    let status = async |id| store.job_get(id).await.unwrap().map(|j| j.status);
    assert_eq!(status(queued).await, Some(JobStatus::Queued));
    assert_eq!(status(running).await, Some(JobStatus::Processing));
    assert_eq!(status(fresh).await, Some(JobStatus::Succeeded));
    assert_eq!(
        store.prune_count(now - Duration::days(90)).await.unwrap(),
        PruneCounts::default()
    );
}

/// Seeds `n` old succeeded jobs, each with one attempt record (a retry before its success)
/// and a raw body.
async fn seed_old_successes(store: &Store, n: i32, old: DateTime<Utc>) -> Vec<JobId> {
    let prompt = seed(store, n, old).await;
    let ids = enqueue(store, prompt, "2025-01-01", old).await;
    let minute = Duration::minutes(1);
    for &id in &ids {
        let a = claim(store, id, old, old + Duration::seconds(30)).await;
        finish(store, id, a, old + minute, retry(old + minute)).await;
        let a = claim(store, id, old + minute * 2, old + minute * 3).await;
        finish(store, id, a, old + minute * 3, success("RAW")).await;
    }
    ids
}

async fn prune_batches_are_bounded_and_walk_on(db: &support::TestDb) {
    let store = db.store.clone();
    let now = Utc::now();
    seed_old_successes(&store, 7, now - Duration::days(100)).await;
    let cutoff = now - Duration::days(90);
    for target in [
        PruneTarget::RawBodies,
        PruneTarget::Attempts,
        PruneTarget::Jobs,
    ] {
        let (mut after, mut steps) = (0, Vec::new());
        loop {
            let step = store.prune_batch(target, cutoff, after, 3).await.unwrap();
            let Some(last) = step.last_id else { break };
            assert!(
                last > after,
                "{target:?}: the next batch starts after the last id"
            );
            after = last;
            steps.push(step.changed);
            assert!(steps.len() < 10, "{target:?} does not end");
        }
        assert_eq!(steps, [3, 3, 1], "{target:?}: at most 3 rows a transaction");
    }
    assert_eq!(
        store.prune_count(cutoff).await.unwrap(),
        PruneCounts::default()
    );
}

fn prune_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(crate::support::PROMPTQ)
        .env_clear()
        .env("DATABASE_URL", url)
        .arg("prune")
        .args(args)
        .output()
        .expect("run promptq prune");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn the_cli_counts_first_and_removes_only_with_yes(db: &support::TestDb) {
    let store = db.store.clone();
    let ids = seed_old_successes(&store, 2, Utc::now() - Duration::days(100)).await;

    let (ok, out, err) = prune_cli(&db.url, &["--older-than", "90d"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("would remove"), "{out}");
    assert!(out.contains("attempt records      2"), "{out}");
    assert!(out.contains("--yes"), "{out}");
    assert_eq!(
        attempts(&store, ids[0]).await,
        2,
        "a dry run changes nothing"
    );

    let (ok, out, err) = prune_cli(&db.url, &["--older-than", "90d", "--yes", "--jobs"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("removed") && out.contains("finished jobs        2"),
        "{out}"
    );
    assert!(store.job_get(ids[0]).await.unwrap().is_none());

    for bad in ["90y", "0d", "soon"] {
        let (ok, out, err) = prune_cli(&db.url, &["--older-than", bad]);
        assert!(!ok, "{bad}: {out}");
        assert!(
            err.contains("--older-than") && !err.contains("panicked"),
            "{err}"
        );
    }
}

async fn a_worker_with_retention_days_prunes_by_itself(db: &support::TestDb) {
    let store = db.store.clone();
    let ids = seed_old_successes(&store, 3, Utc::now() - Duration::days(100)).await;
    let mut worker = Command::new(crate::support::PROMPTQ)
        .arg("worker")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("RETENTION_DAYS", "90")
        .env("CRON_SCHEDULE", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a worker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Raw bodies go after attempts in each pass: the last job's raw body going marks the end.
    while raw_of(&store, ids[2]).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not prune within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    support::terminate(&mut worker, std::time::Duration::from_secs(20));
    for &id in &ids {
        assert_eq!(
            (attempts(&store, id).await, raw_of(&store, id).await),
            (1, None),
            "the retry's record and the raw body go, the success stays"
        );
        assert!(store.job_get(id).await.unwrap().is_some(), "jobs stay");
    }
}
