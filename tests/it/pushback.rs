//! A provider's pushback, and the fence of each attempt, with the real worker pool against a
//! local provider over HTTP, on SQLite and on PostgreSQL: a storm of 429s pauses the model
//! (shown with its reason) instead of cycling its jobs, which count their rate-limited claims
//! apart, while a window that closes on many calls in flight is one strike, not a storm; an account error pauses only its endpoint and is not re-armed when nothing is left
//! to run; a stale attempt that ends late leaves its job's live attempt alone, and a stale
//! finish written beside the live one records nothing.

use std::process::Command;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::support::scripted::{Answer, Scripted, seed_model, seed_prompts};
use crate::support::{self, RunningPool, on_both, wait_until};
use promptq::domain::{Finish, JobId, JobStatus, NewResponse, Outcome};
use promptq::engine::limits::{STORM_PAUSE, STORM_STRIKES};
use promptq::store::{JobFilter, Page, ResponseFilter, Store};

on_both!(
    a_429_storm_pauses_the_model_instead_of_cycling_its_jobs,
    calls_refused_together_are_one_strike_not_a_storm,
    an_account_error_pauses_only_its_endpoint,
    a_pause_is_not_rearmed_when_nothing_is_left_to_run,
    a_stale_attempt_that_ends_late_leaves_the_live_attempt_alone,
    a_stale_finish_beside_the_live_one_records_nothing,
);

const PAGE: Page = Page {
    limit: 1000,
    offset: 0,
};

async fn jobs_of(store: &Store, model: i64) -> Vec<promptq::domain::Job> {
    let filter = JobFilter {
        model_id: Some(model),
        ..JobFilter::default()
    };
    store.jobs_list(&filter, PAGE).await.unwrap()
}

async fn all_succeeded(store: &Store, model: i64) -> bool {
    jobs_of(store, model)
        .await
        .iter()
        .all(|j| j.status == JobStatus::Succeeded)
}

async fn a_429_storm_pauses_the_model_instead_of_cycling_its_jobs(db: &support::TestDb) {
    let provider = Scripted::start().await;
    provider.by_default(Answer::status(429).header("retry-after-ms", "20"));
    let model = seed_model(&db.store, "stormy", &provider.base_url, json!({})).await;
    seed_prompts(&db.store, &[model.id], 4).await;
    let pool = RunningPool::start(&db.store, &db.url, &["--worker-concurrency", "4"]).await;
    let scope = format!("model:{}", model.id);
    wait_until("the storm pause", Duration::from_secs(30), async || {
        let pauses = db.store.pauses_active(Utc::now()).await.unwrap();
        pauses
            .iter()
            .any(|p| p.scope == scope && p.strikes >= STORM_STRIKES)
    })
    .await;
    // Calls in flight when the pause came may still land; after that, nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = provider.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = pool
        .app
        .status(&promptq::app::StatusQuery::default())
        .await
        .unwrap();
    pool.stop().await;
    assert_eq!(
        provider.requests(),
        settled,
        "the paused model was still called"
    );
    // One strike per refusal the pool learned of; calls already on their way beside a strike
    // add none, and at most the pool's 4 are on their way at once: at most 4 calls a strike,
    // and those in flight when the storm's strike came.
    assert!(
        settled <= (STORM_STRIKES as usize + 1) * 4,
        "{settled} calls before the storm pause"
    );
    let pause = report
        .pauses
        .iter()
        .find(|p| p.scope == scope)
        .expect("the status shows the model's pause");
    let floor = Utc::now() + TimeDelta::from_std(STORM_PAUSE).unwrap() - TimeDelta::seconds(30);
    assert!(pause.until > floor, "paused only until {}", pause.until);
    assert!(
        pause.reason.contains("429") && pause.reason.contains("in a row"),
        "{}",
        pause.reason
    );
    // The jobs wait out the pause; their 429s spent no attempt and are counted apart.
    let jobs = jobs_of(&db.store, model.id).await;
    let rate_limited: i32 = jobs.iter().map(|j| j.rate_limited_count).sum();
    assert_eq!(rate_limited as usize, settled, "{jobs:?}");
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Queued, "{job:?}");
        assert_eq!((job.attempt_count, job.max_attempts), (0, 3), "{job:?}");
        assert!(
            job.next_attempt_at >= pause.until - TimeDelta::seconds(2),
            "{job:?}"
        );
    }
    // And `promptq status` says so: the pause with its reason, the claims apart.
    let output = Command::new(support::PROMPTQ)
        .args(["status"])
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("paused: {scope} until")),
        "{stdout}"
    );
    assert!(stdout.contains("in a row with no success"), "{stdout}");
    assert!(stdout.contains("0/3, "), "{stdout}");
    assert!(stdout.contains(" rate-limited"), "{stdout}");
}

/// Sixteen calls in flight as the provider's window closes: all refused, and only then is it
/// open again. They are one refusal: the model waits a moment, not a storm's ten minutes.
async fn calls_refused_together_are_one_strike_not_a_storm(db: &support::TestDb) {
    let provider = Scripted::start().await;
    let refused = Answer::status(429).delay(Duration::from_millis(400));
    for _ in 0..16 {
        provider.then(refused.clone());
    }
    provider.by_default(Answer::ok());
    let model = seed_model(&db.store, "window", &provider.base_url, json!({})).await;
    seed_prompts(&db.store, &[model.id], 16).await;
    let pool = RunningPool::start(&db.store, &db.url, &["--worker-concurrency", "16"]).await;
    wait_until("every job's answer", Duration::from_secs(60), async || {
        all_succeeded(&db.store, model.id).await
    })
    .await;
    let pauses = db.store.pauses_active(Utc::now()).await.unwrap();
    pool.stop().await;
    assert!(
        pauses.iter().all(|p| !p.reason.contains("in a row")),
        "{pauses:?}"
    );
    let rate_limited: i32 = jobs_of(&db.store, model.id)
        .await
        .iter()
        .map(|j| j.rate_limited_count)
        .sum();
    assert_eq!(rate_limited, 16, "every refused call was counted apart");
}

async fn an_account_error_pauses_only_its_endpoint(db: &support::TestDb) {
    let refused = Scripted::start().await;
    refused.by_default(Answer::status(401));
    let healthy = Scripted::start().await;
    healthy.by_default(Answer::ok().delay(Duration::from_millis(100)));
    let bad = seed_model(&db.store, "bad-key", &refused.base_url, json!({})).await;
    let good = seed_model(&db.store, "good", &healthy.base_url, json!({})).await;
    seed_prompts(&db.store, &[bad.id, good.id], 6).await;
    let pool = RunningPool::start(&db.store, &db.url, &["--worker-concurrency", "4"]).await;
    // Well under the 60 s an account pause lasts: the healthy endpoint never waits for it.
    wait_until(
        "the healthy endpoint's jobs",
        Duration::from_secs(20),
        async || all_succeeded(&db.store, good.id).await,
    )
    .await;
    let pauses = db.store.pauses_active(Utc::now()).await.unwrap();
    pool.stop().await;
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    assert!(pauses[0].scope.starts_with("endpoint:"), "{pauses:?}");
    assert!(pauses[0].reason.contains(&refused.base_url), "{pauses:?}");
    assert!(!pauses[0].reason.contains('\n'), "{pauses:?}");
    let waiting = jobs_of(&db.store, bad.id).await;
    assert!(
        waiting.iter().all(|j| j.status == JobStatus::Queued),
        "{waiting:?}"
    );
    assert!(
        refused.requests() <= 4,
        "{} calls to the endpoint that refused the key",
        refused.requests()
    );
}

async fn a_pause_is_not_rearmed_when_nothing_is_left_to_run(db: &support::TestDb) {
    let refused = Scripted::start().await;
    refused.by_default(Answer::status(401));
    let bad = seed_model(&db.store, "bad-key", &refused.base_url, json!({})).await;
    seed_prompts(&db.store, &[bad.id], 3).await;
    let pool = RunningPool::start(
        &db.store,
        &db.url,
        &["--worker-concurrency", "4", "--max-attempts", "1"],
    )
    .await;
    wait_until("the jobs to fail", Duration::from_secs(20), async || {
        jobs_of(&db.store, bad.id)
            .await
            .iter()
            .all(|j| j.status == JobStatus::Failed)
    })
    .await;
    pool.stop().await;
    let pauses = db.store.pauses_active(Utc::now()).await.unwrap();
    assert!(
        pauses.is_empty(),
        "a pause outlives the run it could not hold back: {pauses:?}"
    );
}

/// Moves every queued job's due time to now (what another process's rescue, with its own
/// clock, would do), through a connection of the test's own.
async fn make_due(db: &support::TestDb) {
    match &db.store {
        Store::Postgres(pg) => {
            sqlx::query("UPDATE prompt_jobs SET next_attempt_at = now() WHERE status = 'queued'")
                .execute(pg.pool())
                .await
                .unwrap();
        }
        Store::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE prompt_jobs SET next_attempt_at = 0 WHERE status = 'queued'")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

async fn a_stale_attempt_that_ends_late_leaves_the_live_attempt_alone(db: &support::TestDb) {
    let provider = Scripted::start().await;
    // Attempt 1 ends after it lost its job; attempt 2 outlives the lease, so it needs its
    // heartbeat.
    provider.then(Answer::ok().delay(Duration::from_millis(1200)));
    provider.then(Answer::ok().delay(Duration::from_secs(5)));
    let model = seed_model(&db.store, "slow", &provider.base_url, json!({})).await;
    seed_prompts(&db.store, &[model.id], 1).await;
    let pool = RunningPool::start(
        &db.store,
        &db.url,
        &["--worker-concurrency", "2", "--job-lease-secs", "3"],
    )
    .await;
    wait_until("attempt 1's call", Duration::from_secs(10), async || {
        provider.requests() == 1
    })
    .await;
    // Another process takes the job from attempt 1 (as after a lost lease) and it falls due.
    let rescued = db
        .store
        .jobs_rescue_expired(Utc::now() + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(rescued.len(), 1);
    make_due(db).await;
    wait_until("attempt 2's call", Duration::from_secs(10), async || {
        provider.requests() == 2
    })
    .await;
    let job_id: JobId = rescued[0].job_id;
    wait_until("the job to end", Duration::from_secs(20), async || {
        db.store.job_get(job_id).await.unwrap().unwrap().status == JobStatus::Succeeded
    })
    .await;
    pool.stop().await;
    assert_eq!(
        provider.requests(),
        2,
        "the live attempt lost its lease and was run again"
    );
    let attempts = db.store.job_attempts(job_id).await.unwrap();
    let outcomes: Vec<(i32, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, vec![(1, "abandoned"), (2, "succeeded")]);
}

fn success(text: &str) -> Outcome {
    Outcome::Succeeded(Box::new(NewResponse {
        text: text.to_owned(),
        latency_ms: 5,
        http_status: Some(200),
        ..NewResponse::default()
    }))
}

async fn a_stale_finish_beside_the_live_one_records_nothing(db: &support::TestDb) {
    let provider = Scripted::start().await;
    let model = seed_model(&db.store, "any", &provider.base_url, json!({})).await;
    seed_prompts(&db.store, &[model.id], 1).await;
    let config = support::config(&db.url, &[]);
    let app = promptq::app::App::with_store(config, db.store.clone()).unwrap();
    app.trigger_cron(None).await.unwrap();
    let now = Utc::now();
    let lease = std::time::Duration::from_secs(30);
    let first = db.store.jobs_claim(1, now, lease).await.unwrap();
    let later = now + TimeDelta::hours(1);
    db.store.jobs_rescue_expired(later).await.unwrap();
    let second = db.store.jobs_claim(1, later, lease).await.unwrap();
    let job = first[0].job.id;
    assert_eq!((first[0].attempt, second[0].attempt), (1, 2));
    let finish = |attempt: i32, text: &str| Finish {
        job_id: job,
        attempt,
        finished_at: later,
        outcome: success(text),
    };
    let results = db
        .store
        .jobs_finish(&[finish(1, "stale"), finish(2, "live")], later)
        .await
        .unwrap();
    let applied: Vec<bool> = results.iter().map(|r| r.applied).collect();
    assert_eq!(applied, vec![false, true]);
    let attempts = db.store.job_attempts(job).await.unwrap();
    let outcomes: Vec<(i32, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, vec![(1, "abandoned"), (2, "succeeded")]);
    let responses = db
        .store
        .responses_list(&ResponseFilter::default(), PAGE)
        .await
        .unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].text, "live");
}
