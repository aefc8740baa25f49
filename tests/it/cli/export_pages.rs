//! The use case behind `export`, driven directly: answers stored while an export is being
//! read must neither repeat rows nor slip in, though the store pages by offset.

use std::collections::BTreeSet;

use chrono::Utc;

use promptq::app::App;
use promptq::domain::{Finish, NewResponse, Outcome, ProviderKind};
use promptq::store::{NewModel, NewPrompt, ResponseFilter};

use crate::support;

/// Claims up to `count` queued jobs and stores an answer for each; their response ids.
async fn answer(app: &App, count: i64) -> BTreeSet<i64> {
    let now = Utc::now();
    let claimed = app
        .store()
        .jobs_claim(count, now, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    let finishes: Vec<Finish> = claimed
        .iter()
        .map(|claimed| Finish {
            job_id: claimed.job.id,
            attempt: claimed.attempt,
            finished_at: Utc::now(),
            outcome: Outcome::Succeeded(Box::new(NewResponse {
                text: format!("answer to job {}", claimed.job.id),
                ..NewResponse::default()
            })),
        })
        .collect();
    app.store()
        .jobs_finish(&finishes, now)
        .await
        .expect("finish")
        .iter()
        .map(|result| result.response_id.expect("a stored response"))
        .collect()
}

#[tokio::test]
async fn answers_stored_during_an_export_neither_repeat_nor_slip_in() {
    let db = support::sqlite().await;
    let config = support::config(&db.url, &[]);
    let app = App::with_store(config, db.store.clone()).expect("app");
    app.create_model(NewModel {
        name: "m".into(),
        provider: ProviderKind::Mock,
        model: "m".into(),
        params: serde_json::json!({}),
        active: true,
    })
    .await
    .expect("model");
    app.create_prompt(NewPrompt {
        text: "p".into(),
        model_ids: None,
        runs: 900,
        active: true,
        schedule: None,
    })
    .await
    .expect("prompt");
    app.trigger_cron(None).await.expect("cron");

    // More than one page (500) exists when the export starts…
    let before = answer(&app, 700).await;
    let mut export = app.export_responses(ResponseFilter::default());
    let mut seen = Vec::new();
    let first = export
        .next_page()
        .await
        .expect("a page")
        .expect("not empty");
    seen.extend(first.iter().map(|r| r.id));
    // …and 200 more arrive after its first page, pushing the older rows down.
    let during = answer(&app, 200).await;
    assert_eq!(during.len(), 200);
    while let Some(page) = export.next_page().await.expect("a page") {
        seen.extend(page.iter().map(|r| r.id));
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no response twice");
    assert_eq!(
        unique, before,
        "exactly the responses stored before the export began"
    );
}
