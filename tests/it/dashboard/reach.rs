//! What a user comes to the dashboard for beyond the overview: older batches, the newest
//! failures first, a batch's figures per model, one prompt's answers side by side, cancelling
//! jobs, a running count that means calls in flight, and an HTML 404 for a mistyped page.

use std::time::Duration;

use chrono::Utc;
use promptq::store::Clock;
use serde_json::json;

use super::web::{HOSTILE_MODEL, ONE_ATTEMPT, Page, seed_finished_batch, start};
use crate::support::TestDb;
use crate::support::on_both;

on_both!(
    threads = 2; owned;
    older_batches_are_reachable_page_by_page,
    the_failed_list_is_newest_first,
    a_batch_page_has_its_per_model_summary,
    a_prompts_answers_read_side_by_side,
    jobs_are_cancelled_from_the_pages,
    running_counts_only_jobs_a_worker_holds,
    unknown_pages_answer_browsers_with_an_html_404,
);

/// The part of `html` from `from` to the next `until`.
fn section<'a>(html: &'a str, from: &str, until: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(until).unwrap_or(rest.len())]
}

fn position(page: &Page, needle: &str) -> usize {
    page.text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in {}", page.text))
}

pub async fn older_batches_are_reachable_page_by_page(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    dash.server.model("steady", json!({})).await;
    dash.server.prompt("Which CRM?", 1).await;
    // 52 daily batches, 2025-01-01 (oldest) to 2025-02-21 (newest).
    let first = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
    let keys: Vec<String> = (0..52)
        .map(|day| {
            (first + chrono::Days::new(day))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    for key in &keys {
        let cron = dash.server.get(&format!("/api/cron?batchKey={key}")).await;
        assert_eq!(cron.assert_ok()["jobsCreated"], json!(1), "{key}");
    }
    let overview = dash.get("/").await;
    let html = overview.assert_html(200);
    assert!(
        !html.contains(&keys[0]),
        "the overview shows the newest only"
    );
    assert!(html.contains("href=\"/batches\""), "{html}");

    let newest = dash.get("/batches").await;
    let html = newest.assert_html(200);
    for key in &keys[2..] {
        assert!(html.contains(&format!("href=\"/batches/{key}\"")), "{key}");
    }
    assert!(!html.contains(&keys[1]), "50 a page");
    assert!(
        position(&newest, &keys[51]) < position(&newest, &keys[2]),
        "newest first"
    );
    assert!(html.contains("href=\"/batches?offset=50\""), "{html}");

    let older = dash.get("/batches?offset=50").await;
    let html = older.assert_html(200);
    assert!(
        html.contains(&format!("href=\"/batches/{}\"", keys[0])),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/batches/{}\"", keys[1])),
        "{html}"
    );
    assert!(
        !html.contains(&format!("href=\"/batches/{}\"", keys[2])),
        "{html}"
    );
    assert!(html.contains("href=\"/batches?offset=0\""), "{html}");
    assert!(!html.contains("offset=100"), "no older page");
    dash.get("/batches?offset=x").await.assert_html(400);
}

pub async fn the_failed_list_is_newest_first(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let (older, newer) = (seeded.failed[0], seeded.failed[1]);
    assert!(older < newer);
    let failed = dash.get("/failed").await;
    failed.assert_html(200);
    assert!(
        position(&failed, &format!("href=\"/jobs/{newer}\""))
            < position(&failed, &format!("href=\"/jobs/{older}\"")),
        "{}",
        failed.text
    );
}

pub async fn a_batch_page_has_its_per_model_summary(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let page = dash.get(&format!("/batches/{}", seeded.batch_key)).await;
    let html = page.assert_html(200);
    let table = section(html, "id=\"per-model\"", "</table>");
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 2, "{table}");
    // Model, jobs, succeeded, failed, attempts.
    let cells = |row: &str| -> Vec<String> {
        row.split("<td")
            .skip(1)
            .map(|cell| {
                let text = &cell[cell.find('>').map_or(0, |at| at + 1)..];
                text[..text.find("</td>").unwrap_or(text.len())].to_owned()
            })
            .collect()
    };
    let steady = cells(rows[0]);
    assert_eq!(steady[..5], ["steady", "2", "2", "0", "2"], "{table}");
    let failing = cells(rows[1]);
    assert_eq!(failing[1..5], ["2", "0", "2", "2"], "{table}");
    assert!(!table.contains(HOSTILE_MODEL), "escaped");
}

pub async fn a_prompts_answers_read_side_by_side(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let key = &seeded.batch_key;
    let prompt = dash.server.get("/api/prompts").await.json["prompts"][0]["id"]
        .as_i64()
        .expect("a prompt id");
    let link = format!("/batches/{key}/prompts/{prompt}");
    let batch = dash.get(&format!("/batches/{key}")).await;
    assert!(batch.assert_html(200).contains(&format!("href=\"{link}\"")));

    let job = dash.get(&format!("/jobs/{}", seeded.failed[0])).await;
    assert!(job.assert_html(200).contains(&format!("href=\"{link}\"")));

    let page = dash.get(&link).await;
    let html = page.assert_html(200);
    let answers = section(html, "class=\"answers\"", "</main>");
    // Every job of the prompt, each with its answer or its error.
    assert_eq!(answers.matches("<section>").count(), 4, "{answers}");
    for id in &seeded.succeeded {
        let text = dash.server.get(&format!("/api/jobs/{id}")).await.json["response"]["text"]
            .as_str()
            .expect("a stored answer")
            .lines()
            .next()
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(answers.contains(&text), "{text} in {answers}");
    }
    assert_eq!(
        answers.matches("mock simulated failure").count(),
        2,
        "{answers}"
    );
    assert!(answers.contains("steady"), "{answers}");
    dash.get(&format!("/batches/{key}/prompts/999999"))
        .await
        .assert_html(404);
    dash.get(&format!("/batches/{key}/prompts/x"))
        .await
        .assert_html(404);
}

pub async fn jobs_are_cancelled_from_the_pages(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    seed_finished_batch(&dash).await;
    dash.server.get("/api/cron?batchKey=2025-10-13").await;
    let queued = dash.server.job_ids("2025-10-13").await;
    assert_eq!(queued.len(), 4);

    let job = dash.get(&format!("/jobs/{}", queued[0])).await;
    assert!(
        job.assert_html(200)
            .contains(&format!("action=\"/jobs/{}/cancel\"", queued[0]))
    );
    // Not from another site.
    let forged = dash
        .post_from(
            &format!("/jobs/{}/cancel", queued[0]),
            &[],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(forged.status.as_u16(), 403, "{forged:?}");
    assert_eq!(dash.job_status(queued[0]).await, "queued");

    dash.post(&format!("/jobs/{}/cancel", queued[0]), &[])
        .await
        .assert_redirect(&format!("/jobs/{}", queued[0]));
    assert_eq!(dash.job_status(queued[0]).await, "skipped");
    let again = dash.post(&format!("/jobs/{}/cancel", queued[0]), &[]).await;
    assert!(again.assert_html(409).contains("cannot be cancelled"));

    let batch = dash.get("/batches/2025-10-13").await;
    assert!(
        batch
            .assert_html(200)
            .contains("Cancel all 3 queued in this batch")
    );
    dash.post("/batches/2025-10-13/cancel-queued", &[])
        .await
        .assert_redirect("/batches/2025-10-13");
    for id in &queued {
        assert_eq!(dash.job_status(*id).await, "skipped");
    }
}

pub async fn running_counts_only_jobs_a_worker_holds(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    dash.server.model("steady", json!({})).await;
    dash.server.prompt("Which CRM?", 3).await;
    let key = dash.server.cron().await;
    let store = &dash.server.db.store;
    // One claim whose worker died (its 10 ms lease ran out unrenewed), one held now.
    let dead = store
        .jobs_claim(1, Clock::Database, Duration::from_millis(10))
        .await
        .expect("claim");
    assert_eq!(dead.len(), 1);
    let expired = dead[0].job.id;
    crate::support::wait_until(
        "the short lease to expire",
        Duration::from_secs(10),
        async || {
            let job = dash.server.get(&format!("/api/jobs/{expired}")).await;
            job.json["job"]["leaseExpiresAt"]
                .as_str()
                .and_then(|at| at.parse::<chrono::DateTime<Utc>>().ok())
                .is_some_and(|at| at < Utc::now())
        },
    )
    .await;
    let live = store
        .jobs_claim(1, Clock::Database, Duration::from_secs(600))
        .await
        .expect("claim");
    assert_eq!(live.len(), 1);

    let batch = dash.get(&format!("/batches/{key}")).await;
    let html = batch.assert_html(200);
    assert!(
        html.contains(
            "3 jobs: 1 queued, 1 in progress, 1 stalled (waiting for a rescue), 0 succeeded"
        ),
        "{html}"
    );
    let overview = dash.get("/").await;
    let row = section(
        overview.assert_html(200),
        &format!("href=\"/batches/{key}\""),
        "</tr>",
    );
    // Total, queued, running.
    assert!(
        row.contains("<td class=\"n\">3</td><td class=\"n\">1</td><td class=\"n\">1</td>"),
        "{row}"
    );
}

pub async fn unknown_pages_answer_browsers_with_an_html_404(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = dash.get_accepting("/no/such/<page>", browser).await;
    let html = page.assert_html(404);
    assert!(html.contains("Not found"), "{html}");
    assert!(!html.contains("<page>"), "escaped: {html}");
    assert!(page.csp.is_some(), "{page:?}");
    // A script or the API's clients still get JSON.
    let script = dash
        .get_accepting("/no/such/page", "application/json")
        .await;
    assert_eq!(script.status.as_u16(), 404);
    assert_eq!(super::web::value_of(&script)["success"], json!(false));
    let api = dash.get_accepting("/api/no-such-route", browser).await;
    assert!(
        api.content_type
            .as_deref()
            .is_some_and(|kind| kind.starts_with("application/json")),
        "{api:?}"
    );
}
