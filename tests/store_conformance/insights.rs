//! Trackers and the analysis pass's derived rows: CRUD and versions, idempotent and fenced
//! writes of analyses, progress, a batch's analysed answers, and retention removing the rows
//! with their answers. Scenarios of the conformance suite (run on both backends by its macro).

use chrono::Duration;
use promptq::insights::{Analysis, Citation, Mention, NewTracker, Term};
use promptq::store::{Insights, PruneTarget, StoreError};

use super::{finish, finish_all, seeded, success, t0};

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn tracker(name: &str, terms: &[&str]) -> NewTracker {
    NewTracker {
        name: name.to_owned(),
        terms: terms
            .iter()
            .map(|t| Term {
                name: (*t).to_owned(),
                patterns: Vec::new(),
            })
            .collect(),
    }
}

fn analysis(response_id: i64, terms: &[&str]) -> Analysis {
    Analysis {
        response_id,
        mentions: terms
            .iter()
            .enumerate()
            .map(|(i, t)| Mention {
                term: (*t).to_owned(),
                count: 1,
                rank: i as i64 + 1,
                list_position: None,
            })
            .collect(),
        citations: vec![Citation {
            url: format!("https://example.com/{response_id}"),
            domain: "example.com".to_owned(),
            structured: true,
        }],
    }
}

pub async fn trackers_and_their_derived_rows<D: super::Backend + Insights>(db: &super::Db<D>) {
    let store = db.store.clone();
    seeded(&store, 1, 1, 3).await;
    let claimed = store.jobs_claim(10, t0(), LEASE).await.unwrap();
    let finishes: Vec<_> = claimed
        .iter()
        .map(|c| finish(c.job.id, 1, t0(), success("HubSpot and Salesforce")))
        .collect();
    finish_all(&store, &finishes).await.unwrap();

    // Names are unique; a rename keeps the version, new terms bump it.
    let t = store
        .tracker_insert(&tracker("CRMs", &["HubSpot", "Salesforce"]), t0())
        .await
        .unwrap();
    assert_eq!(t.version, 1);
    let taken = store.tracker_insert(&tracker("CRMs", &["X"]), t0()).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let renamed = store
        .tracker_update(t.id, &tracker("CRM", &["HubSpot", "Salesforce"]), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("CRM", 1));
    assert_eq!(store.tracker_list().await.unwrap(), vec![renamed.clone()]);

    // Analysed in two bounded batches; a second write of the same answers replaces its rows.
    let first = store.answers_unanalysed(t.id, 1, 0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].text, "HubSpot and Salesforce");
    let ids: Vec<i64> = first.iter().map(|a| a.response_id).collect();
    let written = store
        .analyses_write(
            t.id,
            1,
            &[
                analysis(ids[0], &["HubSpot"]),
                analysis(ids[1], &["HubSpot", "Salesforce"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(written, 2);
    store
        .analyses_write(t.id, 1, &[analysis(ids[0], &["HubSpot"])])
        .await
        .unwrap();
    let progress = store.analysis_progress(t.id, 1).await.unwrap();
    assert_eq!((progress.analysed, progress.total), (2, 3));
    assert_eq!(
        store.analysis_watermark(t.id, 1).await.unwrap(),
        Some(ids[1])
    );
    assert_eq!(store.analysis_watermark(t.id, 2).await.unwrap(), None);
    let rest = store.answers_unanalysed(t.id, 1, 0, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].response_id > ids[1]);
    assert_eq!(
        store
            .answers_unanalysed(t.id, 1, rest[0].response_id, 10)
            .await
            .unwrap(),
        vec![]
    );

    let batch = store.batch_analysed(t.id, 1, "2025-10-14").await.unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0].mentions.len(), 1, "replaced, not added: {batch:?}");
    assert_eq!(batch[1].mentions[1].term, "Salesforce");
    assert_eq!(batch[1].domains, vec!["example.com".to_owned()]);
    assert_eq!(
        store.batch_answered_latest(None).await.unwrap().as_deref(),
        Some("2025-10-14")
    );
    assert_eq!(
        store
            .batch_answered_latest(Some("2025-10-14"))
            .await
            .unwrap(),
        None
    );

    // New terms: version 2; a write made for version 1 is refused whole.
    let v2 = store
        .tracker_update(t.id, &tracker("CRM", &["HubSpot"]), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store
            .analyses_write(t.id, 1, &[analysis(rest[0].response_id, &["HubSpot"])])
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.analysis_progress(t.id, 2).await.unwrap().analysed, 0);
    assert_eq!(
        store.batch_analysed(t.id, 2, "2025-10-14").await.unwrap(),
        vec![]
    );
    let all: Vec<Analysis> = store
        .answers_unanalysed(t.id, 2, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| analysis(a.response_id, &["HubSpot"]))
        .collect();
    assert_eq!(store.analyses_write(t.id, 2, &all).await.unwrap(), 3);
    assert_eq!(
        store
            .batch_analysed(t.id, 2, "2025-10-14")
            .await
            .unwrap()
            .len(),
        3
    );

    // Retention removes the derived rows with their answers.
    let cutoff = t0() + Duration::days(1);
    let step = store
        .prune_batch(PruneTarget::Jobs, cutoff, 0, 100)
        .await
        .unwrap();
    assert_eq!(step.responses, 3);
    let progress = store.analysis_progress(t.id, 2).await.unwrap();
    assert_eq!((progress.analysed, progress.total), (0, 0));
    assert_eq!(
        store.batch_analysed(t.id, 2, "2025-10-14").await.unwrap(),
        vec![]
    );

    // Deleting a tracker deletes it once.
    assert!(store.tracker_delete(t.id).await.unwrap());
    assert!(!store.tracker_delete(t.id).await.unwrap());
    assert_eq!(store.tracker_get(t.id).await.unwrap(), None);
}
