//! The catalog as the queue reads it: an all-models prompt takes the models active at each
//! enqueue, a prompt with its own list keeps to it, and switching takes effect at the next batch.

use super::*;

/// `(prompt, model)` of the jobs of `batch`.
async fn pairs_of(store: &impl QueueDriver, batch: &str) -> HashSet<(i64, i64)> {
    all_jobs(store)
        .await
        .iter()
        .filter(|job| job.batch_key == batch)
        .map(|job| (job.prompt_id, job.model_id))
        .collect()
}

async fn set_active(store: &impl QueueDriver, model: i64, active: bool) {
    let patch = ModelPatch {
        active: Some(active),
        ..ModelPatch::default()
    };
    store.model_update(model, &patch, t0()).await.unwrap();
}

pub(super) async fn all_models_prompt_takes_the_models_active_at_each_enqueue<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    let a = model(&store, "a").await;
    let all = prompt(&store, "on every model", None, 1).await;
    let listed = prompt(&store, "on a", Some(vec![a]), 1).await;
    let shown = store.prompt_get(all).await.unwrap().unwrap();
    assert!(shown.all_models);
    assert_eq!(shown.model_ids, vec![a]);
    assert!(!store.prompt_get(listed).await.unwrap().unwrap().all_models);

    let day = |n: i64| t0() + Duration::days(n);
    store
        .jobs_enqueue(&plan(&[all, listed], "2025-10-14"), opts(day(0)))
        .await
        .unwrap();
    let b = model(&store, "b").await;
    assert_eq!(
        store.prompt_get(all).await.unwrap().unwrap().model_ids,
        vec![a, b],
        "an all-models prompt shows the models active now"
    );
    let report = store
        .jobs_enqueue(&plan(&[all, listed], "2025-10-15"), opts(day(1)))
        .await
        .unwrap();
    assert_eq!(report.jobs_created, 3);
    assert_eq!(
        pairs_of(&store, "2025-10-15").await,
        HashSet::from([(all, a), (all, b), (listed, a)])
    );

    // Switched: the listed prompt to every model, the other to its own list.
    let to_all = PromptPatch {
        all_models: true,
        ..PromptPatch::default()
    };
    let switched = store.prompt_update(listed, &to_all, t0()).await.unwrap();
    assert!(switched.is_some_and(|p| p.all_models && p.model_ids == vec![a, b]));
    let to_b = PromptPatch {
        model_ids: Some(vec![b]),
        ..PromptPatch::default()
    };
    let switched = store.prompt_update(all, &to_b, t0()).await.unwrap();
    assert!(switched.is_some_and(|p| !p.all_models && p.model_ids == vec![b]));
    store
        .jobs_enqueue(&plan(&[all, listed], "2025-10-16"), opts(day(2)))
        .await
        .unwrap();
    assert_eq!(
        pairs_of(&store, "2025-10-16").await,
        HashSet::from([(all, b), (listed, a), (listed, b)])
    );

    // With no model active it creates nothing and keeps its batch; it runs once one is back.
    set_active(&store, a, false).await;
    set_active(&store, b, false).await;
    let none = store
        .jobs_enqueue(&plan(&[listed], "2025-10-17"), opts(day(3)))
        .await
        .unwrap();
    assert_eq!(none.jobs_created, 0);
    let kept = store.prompt_get(listed).await.unwrap().unwrap();
    assert_eq!(kept.last_batch_key.as_deref(), Some("2025-10-16"));
    assert!(kept.model_ids.is_empty());
    set_active(&store, b, true).await;
    let back = store
        .jobs_enqueue(&plan(&[listed], "2025-10-17"), opts(day(3)))
        .await
        .unwrap();
    assert_eq!(back.jobs_created, 1);
    let marked = store.prompt_get(listed).await.unwrap().unwrap();
    assert_eq!(marked.last_batch_key.as_deref(), Some("2025-10-17"));
}
