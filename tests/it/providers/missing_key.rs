//! A model whose key this process lacks: known without a request, its jobs left queued (no
//! claim, no attempt, no pause), shown as blocked, and run by the next process that has the key.

use promptq::app::{AppError, StatusQuery};
use promptq::domain::JobStatus;
use promptq::store::NewModel;

use super::*;
use crate::support::{self, RunningPool, TestDb, on_both, wait_until};

on_both!(a_keyless_models_jobs_wait_unclaimed_and_run_once_the_key_is_set);

#[tokio::test]
async fn which_models_cannot_run_is_known_without_a_request() {
    let fake = Fake::start().await;
    let keyless = Providers::new(ProviderSettings {
        openai_api_key: None,
        openrouter_api_key: None,
        ..settings(&fake, Duration::from_secs(5))
    })
    .unwrap();
    let reason = |m: &Model| keyless.cannot_run(m);
    assert_eq!(
        reason(&openai_model()).as_deref(),
        Some("openai: OPENAI_API_KEY is not set")
    );
    assert_eq!(
        reason(&openrouter_model()).as_deref(),
        Some("openrouter: OPENROUTER_API_KEY is not set")
    );
    let undeclared = model(
        ProviderKind::OpenAiCompatible,
        "llama",
        json!({"endpoint": "VLLM"}),
    );
    assert!(reason(&undeclared).is_some_and(|r| r.contains("set VLLM_BASE_URL")));
    // What can run, and what is refused outright (it fails with its reason, it does not wait).
    for runnable in [
        model(ProviderKind::Mock, "m", json!({})),
        model(
            ProviderKind::OpenAiCompatible,
            "l",
            json!({"endpoint": "LOCAL"}),
        ),
        model(
            ProviderKind::OpenAiCompatible,
            "l",
            json!({"baseUrl": "http://evil.example/v1", "apiKeyEnv": "OPENAI_API_KEY"}),
        ),
    ] {
        assert_eq!(reason(&runnable), None, "{runnable:?}");
    }
    assert_eq!(providers(&fake).cannot_run(&openai_model()), None);
    assert!(fake.seen().is_empty());
}

fn openai_new_model() -> NewModel {
    NewModel {
        name: "gpt".into(),
        provider: ProviderKind::OpenAi,
        model: "gpt-4o-mini".into(),
        params: json!({}),
        active: true,
    }
}

async fn a_keyless_models_jobs_wait_unclaimed_and_run_once_the_key_is_set(db: &TestDb) {
    let fake = Fake::start().await;
    let store = &db.store;
    let gpt = support::seed_model(store, &openai_new_model()).await;
    support::seed(store, &[support::mock_model("mock", "m", json!({}))], 2, 1).await;
    let base = fake.base_url();
    let without_key = ["--openai-base-url", base.as_str()];

    let pool = RunningPool::start(store, &db.url, &without_key).await;
    wait_until("the mock's jobs", Duration::from_secs(20), async || {
        support::summary(store).await.succeeded == 2
    })
    .await;
    // Several claims later (the pool polls every 50 ms), the openai jobs are still untouched.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gpt_jobs: Vec<_> = support::all_jobs(store)
        .await
        .into_iter()
        .filter(|job| job.model_id == gpt.id)
        .collect();
    assert_eq!(gpt_jobs.len(), 2);
    for job in &gpt_jobs {
        assert_eq!(job.status, JobStatus::Queued, "{job:?}");
        assert_eq!(job.attempt_count, 0, "{job:?}");
    }
    assert!(fake.seen().is_empty(), "no request without a key");
    let status = pool.app.status(&StatusQuery::default()).await.unwrap();
    assert!(status.pauses.is_empty(), "{:?}", status.pauses);
    assert_eq!(status.blocked.len(), 1, "{:?}", status.blocked);
    let blocked = &status.blocked[0];
    assert_eq!(
        (
            blocked.model_id,
            blocked.model_name.as_str(),
            blocked.queued
        ),
        (gpt.id, "gpt", 2)
    );
    assert_eq!(blocked.reason, "openai: OPENAI_API_KEY is not set");
    // An explicit process call does not claim it either.
    let refused = pool.app.process_job(gpt_jobs[0].id).await;
    assert!(
        matches!(&refused, Err(AppError::Conflict(m)) if m.contains("OPENAI_API_KEY is not set")),
        "{refused:?}"
    );
    let job = store.job_get(gpt_jobs[0].id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempt_count), (JobStatus::Queued, 0));
    pool.stop().await;

    let with_key = [
        "--openai-base-url",
        base.as_str(),
        "--openai-api-key",
        OPENAI_KEY,
    ];
    let pool = RunningPool::start(store, &db.url, &with_key).await;
    support::wait_until_done(store, Duration::from_secs(20)).await;
    let after = support::summary(store).await;
    assert_eq!((after.succeeded, after.total), (4, 4), "{after:?}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    let status = pool.app.status(&StatusQuery::default()).await.unwrap();
    assert!(status.blocked.is_empty(), "{:?}", status.blocked);
    for job in support::all_jobs(store).await {
        assert_eq!(job.attempt_count, 1, "one attempt each: {job:?}");
    }
    pool.stop().await;
}
