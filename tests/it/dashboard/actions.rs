//! Retrying from the pages, and the same-origin check that guards every form post.

use super::web::{ONE_ATTEMPT, seed_finished_batch, start};
use crate::support::TestDb;

use crate::support::on_both;

on_both!(
    threads = 2; owned;
    retry_from_a_page_queues_a_failed_job,
    retry_all_failed_of_a_batch,
    posts_from_another_origin_are_refused,
);

pub async fn retry_from_a_page_queues_a_failed_job(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let [first, second] = [seeded.failed[0], seeded.failed[1]];

    let failed = dash.get("/failed").await;
    let html = failed.assert_html(200);
    assert!(
        html.contains(&format!("action=\"/jobs/{first}/retry\"")),
        "{html}"
    );
    let answer = dash.post(&format!("/jobs/{first}/retry"), &[]).await;
    answer.assert_redirect(&format!("/jobs/{first}"));
    assert_eq!(dash.job_status(first).await, "queued");
    assert_eq!(dash.job_status(second).await, "failed", "only that job");

    let job = dash.get(&format!("/jobs/{first}")).await;
    let html = job.assert_html(200);
    assert!(html.contains("st-queued"), "{html}");
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "a queued job reloads"
    );
    assert!(!html.contains("id=\"retry\""), "no retry for a queued job");
    let rest = dash.get("/failed").await;
    let html = rest.assert_html(200);
    assert!(!html.contains(&format!("href=\"/jobs/{first}\"")), "{html}");
    assert!(html.contains(&format!("href=\"/jobs/{second}\"")), "{html}");
}

pub async fn retry_all_failed_of_a_batch(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let key = &seeded.batch_key;
    let failed = dash.get(&format!("/failed?batch={key}")).await;
    let html = failed.assert_html(200);
    let action = format!("action=\"/batches/{key}/retry-failed\"");
    assert!(html.contains(&action), "{html}");

    let answer = dash
        .post(&format!("/batches/{key}/retry-failed"), &[])
        .await;
    answer.assert_redirect(&format!("/batches/{key}"));
    for id in &seeded.failed {
        assert_eq!(dash.job_status(*id).await, "queued", "job {id}");
    }
    for id in &seeded.succeeded {
        assert_eq!(dash.job_status(*id).await, "succeeded", "job {id}");
    }
    let batch = dash.get(&format!("/batches/{key}")).await;
    let html = batch.assert_html(200);
    assert!(html.contains("2 queued"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    dash.post("/batches/garbage/retry-failed", &[])
        .await
        .assert_html(400);
}

pub async fn posts_from_another_origin_are_refused(db: TestDb) {
    let mut dash = start(db, ONE_ATTEMPT).await;
    dash.login().await;
    let seeded = seed_finished_batch(&dash).await;
    let job = seeded.failed[0];
    let path = format!("/jobs/{job}/retry");
    let own_host = dash.server.base.trim_start_matches("http://").to_owned();
    let lookalike = format!("http://{own_host}.evil.example");
    for origin in [
        None,
        Some("http://evil.example"),
        Some("null"),
        Some(lookalike.as_str()),
    ] {
        let answer = dash.post_from(&path, &[], origin).await;
        let html = answer.assert_html(403);
        assert!(html.contains("was refused"), "{origin:?}: {html}");
        assert_eq!(dash.job_status(job).await, "failed", "{origin:?}");
    }
    let batch_path = format!("/batches/{}/retry-failed", seeded.batch_key);
    let forged = dash
        .post_from(&batch_path, &[], Some("https://evil.example"))
        .await;
    forged.assert_html(403);
    // The login form is guarded too (login CSRF).
    dash.post_from("/login", &[("secret", "x")], Some("http://evil.example"))
        .await
        .assert_html(403);
    // A browser that sends a Referer but no Origin is judged by the Referer.
    let request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .post(dash.url(&path))
        .header("Cookie", dash.cookie.clone().expect("a session"))
        .header("Referer", dash.url("/failed"));
    let answer = request.send().await.expect("POST");
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(dash.job_status(job).await, "queued");
}
