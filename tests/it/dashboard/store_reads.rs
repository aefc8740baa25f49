//! The store reads behind the overview, against the store directly with known batches and
//! latencies (the same answers on both backends).

use chrono::{DateTime, TimeZone, Utc};
use promptq::domain::{
    AttemptError, BatchKey, ErrorClass, Finish, NewResponse, Outcome, PlannedBatch, ProviderKind,
};
use promptq::store::{EnqueueOptions, LatencyStats, NewModel, NewPrompt, Store};

use crate::support::TestDb;
use crate::support::on_both;

on_both!(
    threads = 2; owned;
    batches_recent_lists_the_newest_batches_with_counts,
    models_window_counts_and_percentiles_per_model,
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

async fn prompt(store: &Store, models: Vec<i64>, runs: i32) -> i64 {
    let new = NewPrompt {
        text: "p".to_owned(),
        model_ids: Some(models),
        runs,
        active: true,
        schedule: None,
    };
    store.prompt_insert(&new, t0()).await.unwrap().id
}

async fn enqueue(store: &Store, prompt_id: i64, key: &str) {
    let batch = PlannedBatch {
        prompt_id,
        batch_key: key.parse::<BatchKey>().unwrap(),
        scheduled_for: t0(),
    };
    let options = EnqueueOptions {
        now: t0().into(),
        max_attempts: 1,
        mark_prompts: false,
    };
    store.jobs_enqueue(&[batch], options).await.unwrap();
}

/// Claims every due job and finishes each with `finish(model_id, index)`: `Some(latency)` a
/// success with that latency, `None` a failure.
async fn finish_all(store: &Store, finish: impl Fn(i64, usize) -> Option<i64>) {
    let claimed = store
        .jobs_claim(1000, t0(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let finishes: Vec<Finish> = claimed
        .iter()
        .enumerate()
        .map(|(i, job)| Finish {
            job_id: job.job.id,
            attempt: job.attempt,
            finished_at: t0(),
            outcome: match finish(job.model.id, i) {
                Some(latency_ms) => Outcome::Succeeded(Box::new(NewResponse {
                    text: "answer".into(),
                    latency_ms,
                    ..NewResponse::default()
                })),
                None => Outcome::Failed(AttemptError {
                    class: ErrorClass::Permanent,
                    http_status: Some(400),
                    message: "bad request".into(),
                }),
            },
        })
        .collect();
    store.jobs_finish(&finishes, t0()).await.unwrap();
}

pub async fn batches_recent_lists_the_newest_batches_with_counts(db: TestDb) {
    let store = db.store.clone();
    assert!(store.batches_recent(5).await.unwrap().is_empty());
    let a = model(&store, "a").await;
    let b = model(&store, "b").await;
    let p = prompt(&store, vec![a, b], 2).await;
    // Out of order, and a sub-daily key between two days.
    for key in ["2025-10-13", "2025-10-15", "2025-10-14T06:00", "2025-10-14"] {
        enqueue(&store, p, key).await;
    }
    // Fail the jobs of model b, wherever they are (they are all due).
    finish_all(&store, |model, _| (model == a).then_some(100)).await;

    let all = store.batches_recent(10).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|b| b.batch_key.as_str()).collect();
    assert_eq!(
        keys,
        ["2025-10-15", "2025-10-14T06:00", "2025-10-14", "2025-10-13"]
    );
    for batch in &all {
        assert_eq!(batch.summary.total, 4, "{batch:?}");
        assert_eq!(batch.summary.succeeded, 2, "{batch:?}");
        assert_eq!(batch.summary.failed, 2, "{batch:?}");
    }
    let two = store.batches_recent(2).await.unwrap();
    assert_eq!(two, all[..2].to_vec());
    assert!(store.batches_recent(0).await.unwrap().is_empty());
}

pub async fn models_window_counts_and_percentiles_per_model(db: TestDb) {
    let store = db.store.clone();
    let fast = model(&store, "fast").await;
    let slow = model(&store, "slow").await;
    let p = prompt(&store, vec![fast, slow], 10).await;
    enqueue(&store, p, "2025-10-14").await;
    enqueue(&store, p, "2025-10-15").await;
    // fast: 20 successes at 10, 20, …, 200 ms in claim order; slow: 1 in 4 fails, the rest
    // take 1000 ms and more.
    let order = std::sync::Mutex::new((0i64, 0i64));
    finish_all(&store, |model, i| {
        let mut seen = order.lock().unwrap();
        if model == fast {
            seen.0 += 1;
            Some(seen.0 * 10)
        } else {
            seen.1 += 1;
            (i % 4 != 1).then_some(1000 + seen.1)
        }
    })
    .await;

    assert!(store.models_window(&[]).await.unwrap().is_empty());
    let both = ["2025-10-14".to_owned(), "2025-10-15".to_owned()];
    let window = store.models_window(&both).await.unwrap();
    assert_eq!(window.len(), 2);
    let (f, s) = (&window[0], &window[1]);
    assert_eq!((f.model_id, f.model_name.as_deref()), (fast, Some("fast")));
    assert_eq!((f.summary.total, f.summary.succeeded), (20, 20));
    // Nearest rank over 10..=200: p50 the 10th value, p95 the 19th.
    assert_eq!(
        f.latency_ms,
        LatencyStats {
            count: 20,
            p50: Some(100),
            p95: Some(190)
        }
    );
    assert_eq!(s.model_id, slow);
    assert_eq!(s.summary.total, 20);
    assert_eq!(s.summary.succeeded + s.summary.failed, 20);
    assert!(s.summary.failed > 0, "{s:?}");
    assert_eq!(s.latency_ms.count, s.summary.succeeded);
    assert!(s.latency_ms.p50 <= s.latency_ms.p95);
    assert!(s.latency_ms.p50.is_some_and(|ms| ms > 1000), "{s:?}");

    // One batch only: half of everything.
    let one = store
        .models_window(&["2025-10-15".to_owned()])
        .await
        .unwrap();
    assert_eq!(one[0].summary.total, 10);
    assert_eq!(one[0].latency_ms.count, 10);
    assert!(
        store
            .models_window(&["2001-01-01".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
}
