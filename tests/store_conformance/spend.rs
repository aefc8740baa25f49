//! [`Spending`]: what the answers of a period cost per model, and the mean tokens of recent
//! answers per (model, prompt), the same on both backends.

use promptq::store::{ModelSpend, Spending};

use super::*;

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer with these token counts and this cost.
fn answer(prompt: i64, cached: i64, completion: i64, cost: Option<f64>) -> Outcome {
    Outcome::Succeeded(Box::new(NewResponse {
        text: "a".into(),
        prompt_tokens: Some(prompt),
        cached_tokens: Some(cached),
        completion_tokens: Some(completion),
        cost_usd: cost,
        latency_ms: 5,
        ..NewResponse::default()
    }))
}

pub(super) async fn spend_and_token_means_cover_the_period<D: Backend + Spending>(db: &Db<D>) {
    let store = db.store.clone();
    let m1 = model(&store, "m1").await;
    let m2 = model(&store, "m2").await;
    let p1 = prompt(&store, "p1", Some(vec![m1, m2]), 1).await;
    let p2 = prompt(&store, "p2", Some(vec![m1]), 1).await;
    store
        .jobs_enqueue(&plan(&[p1, p2], "2025-10-14"), opts(t0()))
        .await
        .unwrap();
    let claimed = store.jobs_claim(3, t0(), LEASE).await.unwrap();
    let job = |prompt: i64, model: i64| {
        claimed
            .iter()
            .find(|c| c.job.prompt_id == prompt && c.job.model_id == model)
            .expect("claimed")
    };
    let day2 = t0() + Duration::days(1);
    for (claimed, at, outcome) in [
        (job(p1, m1), t0(), answer(100, 10, 50, Some(0.25))),
        // A cost nobody knows adds nothing to the spend, but its tokens count.
        (job(p1, m2), t0(), answer(200, 0, 100, None)),
        (job(p2, m1), day2, answer(300, 0, 150, Some(0.5))),
    ] {
        let done = finish(claimed.job.id, claimed.attempt, at, outcome);
        store.jobs_finish(&[done], at).await.unwrap();
    }

    let spend = |since| {
        let store = store.clone();
        async move { store.spend_since(since).await.unwrap() }
    };
    let spent = |model_id, cost_usd| ModelSpend { model_id, cost_usd };
    assert_eq!(
        spend(t0() - Duration::hours(1)).await,
        vec![spent(m1, 0.75)]
    );
    assert_eq!(spend(day2).await, vec![spent(m1, 0.5)]);
    assert_eq!(spend(day2 + Duration::seconds(1)).await, vec![]);

    let means = store
        .token_averages(&[m1, m2], t0() - Duration::hours(1))
        .await
        .unwrap();
    let found: Vec<_> = means
        .iter()
        .map(|m| {
            (
                m.model_id,
                m.prompt_id,
                m.answers,
                m.prompt,
                m.cached,
                m.completion,
            )
        })
        .collect();
    let mut expected = vec![
        (m1, p1, 1, 100.0, 10.0, 50.0),
        (m1, p2, 1, 300.0, 0.0, 150.0),
        (m2, p1, 1, 200.0, 0.0, 100.0),
    ];
    expected.sort_by_key(|e| (e.0, e.1));
    assert_eq!(found, expected);
    let later = store.token_averages(&[m1, m2], day2).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].model_id, later[0].prompt_id), (m1, p2));
    let only_m2 = store.token_averages(&[m2], t0()).await.unwrap();
    assert_eq!(only_m2.len(), 1);
    assert!(store.token_averages(&[], t0()).await.unwrap().is_empty());
}
