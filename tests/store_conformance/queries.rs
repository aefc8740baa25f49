//! Queries, the catalog's CRUD, and a bulk run of twenty thousand jobs.

use super::*;

pub(super) async fn query_filters_pages_and_summarises<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded(&store, 2, 3, 2).await; // 12 jobs
    let now = t0();
    store
        .jobs_enqueue(&plan(&prompts[..1], "2025-10-15"), opts(now))
        .await
        .unwrap(); // +4
    let c = store
        .jobs_claim(3, now, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    finish_all(&store, &[finish(c[0].job.id, 1, now, success("x"))])
        .await
        .unwrap();

    let all = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(
        (all.total, all.queued, all.processing, all.succeeded),
        (16, 13, 2, 1)
    );
    let day2 = JobFilter {
        batch_key: Some("2025-10-15".into()),
        ..Default::default()
    };
    assert_eq!(store.jobs_summary(&day2).await.unwrap().total, 4);
    let by_prompt = JobFilter {
        prompt_id: Some(prompts[1]),
        ..Default::default()
    };
    assert_eq!(store.jobs_summary(&by_prompt).await.unwrap().total, 4);
    let processing = JobFilter {
        status: Some(JobStatus::Processing),
        ..Default::default()
    };
    let listed = store.jobs_list(&processing, Page::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let one = JobFilter {
        job_id: Some(c[0].job.id),
        ..Default::default()
    };
    assert_eq!(
        store.jobs_list(&one, Page::default()).await.unwrap()[0].status,
        JobStatus::Succeeded
    );

    let page1 = store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 5,
                offset: 0,
            },
        )
        .await
        .unwrap();
    let page4 = store
        .jobs_list(
            &JobFilter::default(),
            Page {
                limit: 5,
                offset: 15,
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.len(), 5);
    assert_eq!(page4.len(), 1);
    assert!(page1.windows(2).all(|w| w[0].id < w[1].id));
    // A batch's pages (found through the job key, then sorted) and a status's come in id
    // order, each offset where the one before ended.
    for filter in [day2.clone(), processing.clone()] {
        let whole: Vec<i64> = store
            .jobs_list(&filter, Page::default())
            .await
            .unwrap()
            .iter()
            .map(|job| job.id)
            .collect();
        assert!(whole.windows(2).all(|w| w[0] < w[1]), "{whole:?}");
        let mut paged = Vec::new();
        for offset in 0..whole.len() as i64 {
            let page = Page { limit: 1, offset };
            paged.extend(
                store
                    .jobs_list(&filter, page)
                    .await
                    .unwrap()
                    .iter()
                    .map(|j| j.id),
            );
        }
        assert_eq!(paged, whole, "{filter:?} paged one by one");
    }
    assert_eq!(
        store
            .jobs_count_expired(now + Duration::seconds(31))
            .await
            .unwrap(),
        2
    );
}

pub(super) async fn prompts_and_models_crud<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let a = model(&store, "a").await;
    let b = model(&store, "b").await;
    let duplicate = store
        .model_insert(
            &NewModel {
                name: "a".into(),
                provider: ProviderKind::OpenAi,
                model: "gpt-4o-mini".into(),
                params: serde_json::json!({}),
                active: true,
            },
            t0(),
        )
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))));

    let p = prompt(&store, "all models", None, 1).await;
    assert_eq!(
        store.prompt_get(p).await.unwrap().unwrap().model_ids,
        vec![a, b]
    );
    let unknown = store
        .prompt_insert(
            &NewPrompt {
                text: "x".into(),
                model_ids: Some(vec![a, 999]),
                runs: 1,
                active: true,
                schedule: None,
            },
            t0(),
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound(m)) if m.contains("999")));
    assert_eq!(
        store.prompt_list().await.unwrap().len(),
        1,
        "nothing half-created"
    );

    let edited = store
        .prompt_update(
            p,
            &PromptPatch {
                text: Some("edited".into()),
                model_ids: Some(vec![b]),
                runs: Some(4),
                schedule: Some(Some("0 */6 * * *".into())),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.text, "edited");
    assert_eq!(edited.model_ids, vec![b]);
    assert_eq!(edited.runs, 4);
    assert_eq!(edited.schedule.as_deref(), Some("0 */6 * * *"));
    let cleared = store
        .prompt_update(
            p,
            &PromptPatch {
                schedule: Some(None),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.schedule, None);
    assert_eq!(cleared.runs, 4);

    let renamed = store
        .model_update(
            a,
            &ModelPatch {
                name: Some("renamed".into()),
                params: Some(serde_json::json!({"temperature": 0.2})),
                ..Default::default()
            },
            t0(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.params["temperature"], 0.2);
    assert!(store.model_delete(a, t0()).await.unwrap());
    assert!(!store.model_delete(a, t0()).await.unwrap());
    assert_eq!(store.model_list().await.unwrap().len(), 1);
    assert!(store.model_get(a).await.unwrap().is_none());
    // A deleted model frees its name.
    model(&store, "a").await;
    assert!(
        store
            .model_update(999, &ModelPatch::default(), t0())
            .await
            .unwrap()
            .is_none()
    );
}

pub(super) async fn bulk_twenty_thousand_jobs_enqueue_claim_finish<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let prompts = seeded_without_jobs(&store, 4, 1000, 5).await;
    let now = t0();
    let started = Instant::now();
    let report = store
        .jobs_enqueue(&plan(&prompts, "2025-10-14"), opts(now))
        .await
        .unwrap();
    let enqueue = started.elapsed();
    assert_eq!(report.jobs_created, 20_000);
    assert_eq!(report.prompt_count, 1000);

    let started = Instant::now();
    let mut done = 0;
    loop {
        let batch = store
            .jobs_claim(500, now, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        let finishes: Vec<_> = batch
            .iter()
            .map(|c| finish(c.job.id, c.attempt, now, success("bulk answer")))
            .collect();
        let results = finish_all(&store, &finishes).await.unwrap();
        done += results.iter().filter(|r| r.applied).count();
    }
    let drain = started.elapsed();
    assert_eq!(done, 20_000);
    let summary = store.jobs_summary(&JobFilter::default()).await.unwrap();
    assert_eq!(summary.succeeded, 20_000);
    // A measurement for the record, never an assertion.
    eprintln!(
        "[{:?}] enqueue 20000 jobs: {:.0} ms ({:.0} jobs/s); claim+finish in batches of 500: {:.0} ms ({:.0} jobs/s)",
        store.backend(),
        enqueue.as_secs_f64() * 1000.0,
        20_000.0 / enqueue.as_secs_f64(),
        drain.as_secs_f64() * 1000.0,
        20_000.0 / drain.as_secs_f64()
    );
}
