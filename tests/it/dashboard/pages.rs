//! What the pages show, escaped, and their error pages.

use serde_json::json;

use super::web::{HOSTILE_MODEL, HOSTILE_PROMPT, ONE_ATTEMPT, seed_finished_batch, start};
use crate::support::TestDb;

use crate::support::on_both;

on_both!(
    threads = 2; owned;
    the_overview_shows_batches_models_and_pauses,
    text_from_users_and_providers_is_escaped,
    a_batch_lists_its_jobs_by_status,
    a_job_shows_its_attempts_and_response,
    bad_paths_and_queries_answer_error_pages,
    a_database_outage_answers_503,
);

pub async fn the_overview_shows_batches_models_and_pauses(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let empty = dash.get("/").await;
    let html = empty.assert_html(200);
    assert!(html.contains("No batch yet"), "{empty:?}");
    assert!(
        html.contains("<p id=\"workers\">")
            && (html.contains("No worker is running.") || html.contains("slots calling a model")),
        "the workers' line: {html}"
    );

    let seeded = seed_finished_batch(&dash).await;
    // A second batch still waiting: the overview reloads itself while it runs.
    dash.server.get("/api/cron?batchKey=2025-10-13").await;
    let overview = dash.get("/").await;
    let html = overview.assert_html(200);
    let newest = html.find(&seeded.batch_key).expect("the seeded batch");
    let older = html.find("2025-10-13").expect("the backfilled batch");
    assert!(newest < older, "newest batch first");
    assert!(
        html.contains(&format!("href=\"/batches/{}\"", seeded.batch_key)),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/failed?batch={}\"", seeded.batch_key)),
        "{html}"
    );
    assert!(html.contains("<svg"), "the model chart");
    // Over the newest batches: steady succeeded 2 of 2, the failing model 0 of 2.
    assert!(html.contains("100% (2/2)"), "{html}");
    assert!(html.contains("0% (0/2)"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "a batch is queued");
    assert!(html.contains("2 failed jobs in these batches"), "{html}");

    // Once nothing waits, no refresh; a pause in force is listed.
    let cancel = dash
        .server
        .post("/api/jobs/cancel", json!({"batchKey": "2025-10-13"}))
        .await;
    cancel.assert_ok();
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    let scope = promptq::store::PauseScope::Provider(promptq::domain::ProviderKind::Mock);
    dash.server
        .db
        .store
        .pause(
            scope,
            until,
            "provider said <slow down>",
            chrono::Utc::now(),
        )
        .await
        .expect("pause");
    let calm = dash.get("/").await;
    let html = calm.assert_html(200);
    assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
    assert!(html.contains("provider:mock"), "{html}");
    assert!(html.contains("provider said &lt;slow down&gt;"), "{html}");
}

pub async fn text_from_users_and_providers_is_escaped(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let pages = [
        "/".to_owned(),
        "/failed".to_owned(),
        format!("/batches/{}", seeded.batch_key),
        format!("/jobs/{}", seeded.failed[0]),
        format!("/jobs/{}", seeded.succeeded[0]),
    ];
    for path in &pages {
        let page = dash.get(path).await;
        let html = page.assert_html(200);
        assert!(!html.contains("<script"), "{path}: {html}");
        assert!(!html.contains("<img"), "{path}: {html}");
        assert!(!html.contains("onerror=alert(1)>"), "{path}: {html}");
    }
    let failed = dash.get("/failed").await;
    let html = failed.assert_html(200);
    assert!(
        html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(html.contains("mock simulated failure"), "{html}");
    let job = dash.get(&format!("/jobs/{}", seeded.succeeded[0])).await;
    let html = job.assert_html(200);
    let escaped_prompt = HOSTILE_PROMPT
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    assert!(html.contains(&escaped_prompt), "{html}");
    assert!(!html.contains(HOSTILE_MODEL));
}

pub async fn a_batch_lists_its_jobs_by_status(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let key = &seeded.batch_key;
    let all = dash.get(&format!("/batches/{key}")).await;
    let html = all.assert_html(200);
    assert!(
        html.contains("4 jobs: 0 queued, 0 in progress, 2 succeeded, 2 failed, 0 skipped"),
        "{html}"
    );
    for id in seeded.succeeded.iter().chain(&seeded.failed) {
        assert!(html.contains(&format!("href=\"/jobs/{id}\"")), "{html}");
    }
    assert!(html.contains("Retry all 2 failed in this batch"), "{html}");
    assert!(!html.contains("http-equiv=\"refresh\""), "a finished batch");

    let failed = dash.get(&format!("/batches/{key}?status=failed")).await;
    let html = failed.assert_html(200);
    for id in &seeded.failed {
        assert!(html.contains(&format!("href=\"/jobs/{id}\"")), "{html}");
    }
    for id in &seeded.succeeded {
        assert!(!html.contains(&format!("href=\"/jobs/{id}\"")), "{html}");
    }
    // The summary stays the whole batch's.
    assert!(html.contains("4 jobs:"), "{html}");
}

pub async fn a_job_shows_its_attempts_and_response(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;

    let failed = dash.get(&format!("/jobs/{}", seeded.failed[0])).await;
    let html = failed.assert_html(200);
    assert!(html.contains("st-failed"), "{html}");
    assert!(html.contains("id=\"attempts\""), "{html}");
    assert!(html.contains("mock simulated failure"), "{html}");
    assert!(
        html.contains(&format!("action=\"/jobs/{}/retry\"", seeded.failed[0])),
        "{html}"
    );
    assert!(html.contains("No stored response."), "{html}");

    let succeeded = dash.get(&format!("/jobs/{}", seeded.succeeded[0])).await;
    let html = succeeded.assert_html(200);
    assert!(html.contains("st-succeeded"), "{html}");
    assert!(html.contains("<pre id=\"response\">"), "{html}");
    assert!(html.contains("steady"), "{html}");
    assert!(!html.contains("/retry\""), "no retry for a success: {html}");
    let stored = dash
        .server
        .get(&format!("/api/jobs/{}", seeded.succeeded[0]))
        .await;
    let text = stored.assert_ok()["response"]["text"]
        .as_str()
        .expect("a stored text")
        .to_owned();
    let first_line = text.lines().next().unwrap_or_default();
    let escaped = first_line
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(html.contains(&escaped), "{escaped} in {html}");
}

pub async fn bad_paths_and_queries_answer_error_pages(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let key = &seeded.batch_key;
    for (path, status) in [
        ("/jobs/999999".to_owned(), 404),
        ("/jobs/abc".to_owned(), 404),
        ("/jobs/-1".to_owned(), 404),
        ("/batches/2001-01-01".to_owned(), 404),
        ("/batches/not-a-key".to_owned(), 400),
        (format!("/batches/{key}?status=bogus"), 400),
        (format!("/batches/{key}?offset=-5"), 400),
        ("/failed?batch=%3Cscript%3E".to_owned(), 400),
        ("/failed?offset=x".to_owned(), 400),
    ] {
        let page = dash.get(&path).await;
        let html = page.assert_html(status);
        assert!(!html.contains("<script>"), "{path}: {html}");
    }
    // Retrying a job that did not fail is a conflict, shown as a page.
    let conflict = dash
        .post(&format!("/jobs/{}/retry", seeded.succeeded[0]), &[])
        .await;
    let html = conflict.assert_html(409);
    assert!(html.contains("cannot be retried"), "{html}");
    dash.post("/jobs/424242/retry", &[]).await.assert_html(404);
}

pub async fn a_database_outage_answers_503(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    dash.server.db.store.close().await;
    for path in ["/", "/failed", "/jobs/1", "/batches/2025-10-14"] {
        let page = dash.get(path).await;
        let html = page.assert_html(503);
        assert!(html.contains("Database unavailable"), "{path}: {html}");
        assert!(html.contains("http-equiv=\"refresh\""), "retries by itself");
    }
}
