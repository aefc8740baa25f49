//! The store's read-only figures behind `/api/jobs/status` and `/metrics`, checked against
//! the store directly with known latencies, tokens and costs (the same on both backends).

use chrono::{DateTime, Duration, TimeZone, Utc};
use promptq::domain::{
    BatchKey, Finish, JobStatus, NewResponse, Outcome, PlannedBatch, ProviderKind,
};
use promptq::store::{
    EnqueueOptions, JobFilter, LatencyStats, NewModel, NewPrompt, Store, TokenTotals,
};

use crate::support::TestDb;
use crate::support::on_both;

on_both!(
    owned;
    stats_count_per_model_and_sum_tokens_and_cost,
    latency_percentiles_are_nearest_rank,
    due_stats_count_due_queued_jobs,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 10, 14, 0, 0, 0).unwrap()
}

async fn model(store: &Store, name: &str) -> i64 {
    let new = NewModel {
        name: name.to_owned(),
        provider: ProviderKind::Mock,
        model: name.to_owned(),
        params: serde_json::json!({}),
        active: true,
    };
    store.model_insert(&new, t0()).await.unwrap().id
}

/// One prompt with `runs` runs on `models`, enqueued in batch `key`; returns the prompt id.
async fn enqueue(store: &Store, models: Vec<i64>, runs: i32, key: &str) -> i64 {
    let new = NewPrompt {
        text: "p".to_owned(),
        model_ids: Some(models),
        runs,
        active: true,
        schedule: None,
    };
    let prompt = store.prompt_insert(&new, t0()).await.unwrap().id;
    let batch = PlannedBatch {
        prompt_id: prompt,
        batch_key: key.parse::<BatchKey>().unwrap(),
        scheduled_for: t0(),
    };
    let options = EnqueueOptions {
        now: t0().into(),
        max_attempts: 3,
        mark_prompts: true,
    };
    store.jobs_enqueue(&[batch], options).await.unwrap();
    prompt
}

/// Claims `n` jobs and finishes them with the given latencies (tokens 10/20/30, cost 0.5¢).
async fn succeed(store: &Store, latencies: &[i64]) {
    let claimed = store
        .jobs_claim(
            latencies.len() as i64,
            t0(),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), latencies.len());
    let finishes: Vec<Finish> = claimed
        .iter()
        .zip(latencies)
        .map(|(job, &latency_ms)| Finish {
            job_id: job.job.id,
            attempt: job.attempt,
            finished_at: t0(),
            outcome: Outcome::Succeeded(Box::new(NewResponse {
                text: "answer".into(),
                prompt_tokens: Some(10),
                completion_tokens: Some(20),
                total_tokens: Some(30),
                cost_usd: Some(0.005),
                latency_ms,
                ..NewResponse::default()
            })),
        })
        .collect();
    store.jobs_finish(&finishes, t0()).await.unwrap();
}

pub async fn stats_count_per_model_and_sum_tokens_and_cost(db: TestDb) {
    let store = db.store.clone();
    let a = model(&store, "a").await;
    let b = model(&store, "b").await;
    let p1 = enqueue(&store, vec![a, b], 3, "2025-10-14").await;
    enqueue(&store, vec![b], 2, "2025-10-15").await;

    let empty = store.jobs_stats(&JobFilter::default()).await.unwrap();
    assert_eq!(empty.tokens, TokenTotals::default());
    assert_eq!(empty.cost_usd, None, "no response reported a cost yet");
    assert_eq!(
        empty.latency_ms,
        LatencyStats {
            count: 0,
            p50: None,
            p95: None
        }
    );
    assert_eq!(empty.per_model.len(), 2);
    assert_eq!(empty.per_model[0].model_id, a);
    assert_eq!(empty.per_model[0].model_name.as_deref(), Some("a"));
    assert_eq!(empty.per_model[0].summary.total, 3);
    assert_eq!(empty.per_model[1].summary.total, 5);

    // The claim takes jobs in order: the first four are of batch 2025-10-14.
    succeed(&store, &[100, 200, 300, 400]).await;
    let all = store.jobs_stats(&JobFilter::default()).await.unwrap();
    assert_eq!(
        all.tokens,
        TokenTotals {
            prompt: 40,
            completion: 80,
            total: 120
        }
    );
    let cost = all.cost_usd.expect("a cost");
    assert!((cost - 0.02).abs() < 1e-9, "{cost}");
    let succeeded: i64 = all.per_model.iter().map(|m| m.summary.succeeded).sum();
    let queued: i64 = all.per_model.iter().map(|m| m.summary.queued).sum();
    assert_eq!((succeeded, queued), (4, 4));

    // The same filter as the listing: another batch has none of these responses.
    let other = store
        .jobs_stats(&JobFilter {
            batch_key: Some("2025-10-15".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(other.latency_ms.count, 0);
    assert_eq!(other.per_model.len(), 1);
    assert_eq!(other.per_model[0].model_id, b);
    assert_eq!(other.per_model[0].summary.queued, 2);
    let by_status = store
        .jobs_stats(&JobFilter {
            prompt_id: Some(p1),
            status: Some(JobStatus::Succeeded),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_status.latency_ms.count, 4);
    assert_eq!(by_status.tokens.total, 120);
}

pub async fn latency_percentiles_are_nearest_rank(db: TestDb) {
    let store = db.store.clone();
    let m = model(&store, "m").await;
    enqueue(&store, vec![m], 20, "2025-10-14").await;
    // Latencies 10, 20, …, 200 in a scrambled order.
    let latencies: Vec<i64> = (1..=20).map(|i| ((i * 7) % 20 + 1) * 10).collect();
    succeed(&store, &latencies[..1]).await;
    let one = store.jobs_stats(&JobFilter::default()).await.unwrap();
    assert_eq!(
        one.latency_ms,
        LatencyStats {
            count: 1,
            p50: Some(latencies[0]),
            p95: Some(latencies[0])
        }
    );
    succeed(&store, &latencies[1..10]).await;
    let mut first_ten = latencies[..10].to_vec();
    first_ten.sort_unstable();
    let ten = store.jobs_stats(&JobFilter::default()).await.unwrap();
    // Nearest rank: p50 of 10 values is the 5th, p95 the 10th.
    assert_eq!(ten.latency_ms.p50, Some(first_ten[4]));
    assert_eq!(ten.latency_ms.p95, Some(first_ten[9]));
    succeed(&store, &latencies[10..]).await;
    let all = store.jobs_stats(&JobFilter::default()).await.unwrap();
    assert_eq!(
        all.latency_ms,
        LatencyStats {
            count: 20,
            p50: Some(100),
            p95: Some(190)
        }
    );
}

pub async fn due_stats_count_due_queued_jobs(db: TestDb) {
    let store = db.store.clone();
    let m = model(&store, "m").await;
    let none = store.jobs_due_stats(t0()).await.unwrap();
    assert_eq!((none.due, none.oldest_due_at), (0, None));
    enqueue(&store, vec![m], 3, "2025-10-14").await;
    let before = store
        .jobs_due_stats(t0() - Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(before.due, 0, "not due before their time");
    let due = store
        .jobs_due_stats(t0() + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(due.due, 3);
    assert_eq!(due.oldest_due_at, Some(t0()));
    succeed(&store, &[5]).await;
    let after = store
        .jobs_due_stats(t0() + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(after.due, 2, "a claimed job is no longer due");
}
