//! The tracker pages over real HTTP on both databases: the list, and one group's page with its
//! trend chart, the answers' excerpts with each mention in a `<mark>` (an answer's markup shown
//! as text), the cited domains and the drift; bad paths and queries answer error pages. Then
//! once in headless Chromium at a phone's and a desktop's width (screenshots to `docs/`).

use serde_json::json;

use super::markup::nesting_errors;
use super::web::{Dash, start};
use crate::insights::{answer, run_batch};
use crate::support::fake::{Fake, Reply};
use crate::support::{TestDb, on_both};

on_both!(threads = 2; owned; the_tracker_page_shows_trend_excerpts_domains_and_drift);

const RUNS: usize = 2;
pub(super) const HOSTILE_ANSWER: &str = "Here is my list:\n\n1. HubSpot <script>alert('pwned')</script> is best\n2. Salesforce\n\nSee [G2](https://www.g2.com/crm).";

/// A model answering through `fake`, a prompt of [`RUNS`] runs, the tracker "CRMs", and two
/// analysed batches: Salesforce alone, then a list naming HubSpot first (with a script tag in
/// the text); the tracker's id.
pub(super) async fn seed(dash: &Dash, fake: &Fake) -> i64 {
    let server = &dash.server;
    let model = server
        .post(
            "/api/models",
            json!({"name": "fake", "provider": "openai-compatible", "model": "fake-1",
                   "params": {"baseUrl": fake.base_url()}}),
        )
        .await;
    assert_eq!(model.status, 201, "{model:?}");
    server.prompt("Which CRM is best?", RUNS as i32).await;
    let created = server
        .post(
            "/api/insights/trackers",
            json!({"name": "CRMs", "terms": [{"name": "HubSpot"}, {"name": "Salesforce"}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let before: Vec<Reply> = (0..RUNS)
        .map(|_| answer("Salesforce is fine, see https://reviews.example.org/x", &[]))
        .collect();
    run_batch(server, fake, "2025-10-14", &before).await;
    let now: Vec<Reply> = (0..RUNS).map(|_| answer(HOSTILE_ANSWER, &[])).collect();
    run_batch(server, fake, "2025-10-15", &now).await;
    server.app.analyse_all().await.expect("analysis");
    created.json["tracker"]["id"].as_i64().expect("tracker id")
}

pub async fn the_tracker_page_shows_trend_excerpts_domains_and_drift(db: TestDb) {
    let mut dash = start(db, &[]).await;
    let fake = Fake::start().await;
    // Behind the login like every page.
    dash.get("/trackers").await.assert_redirect("/login");
    dash.login().await;
    let empty = dash.get("/trackers").await;
    assert!(
        empty.assert_html(200).contains("No tracker yet"),
        "{empty:?}"
    );
    let id = seed(&dash, &fake).await;

    let list = dash.get("/trackers").await;
    let html = list.assert_html(200);
    assert!(
        html.contains("<a href=\"/trackers\">Trackers</a>"),
        "nav link: {html}"
    );
    assert!(
        html.contains(&format!("href=\"/trackers/{id}\">CRMs</a>")),
        "{html}"
    );
    assert!(html.contains("analysed 4 of 4 answers"), "{html}");

    let page = dash.get(&format!("/trackers/{id}")).await;
    let html = page.assert_html(200);
    // The trend: two charts over both batches, HubSpot by default, the model in the legend.
    assert_eq!(
        html.matches("<svg class=\"chart trend\"").count(),
        2,
        "{html}"
    );
    assert!(html.contains("Mention rate of HubSpot"), "{html}");
    assert!(
        html.contains(">10-14<") && html.contains(">10-15<"),
        "{html}"
    );
    assert!(html.contains("fake, 2025-10-15: 100%"), "{html}");
    assert!(html.contains("fake, 2025-10-14: 0%"), "{html}");
    // The excerpt: each mention marked, the answer's markup escaped.
    assert!(
        html.contains("<mark title=\"HubSpot\">HubSpot</mark>"),
        "{html}"
    );
    assert!(
        html.contains("<mark title=\"Salesforce\">Salesforce</mark>"),
        "{html}"
    );
    assert!(
        html.contains("HubSpot</mark> &lt;script&gt;alert("),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("HubSpot 2/2"), "{html}");
    // The cited domains: g2.com in both answers of this batch.
    let domains = &html[html.find("id=\"domains\"").expect("the domains table")..];
    assert!(
        domains.contains("<td>g2.com</td><td class=\"n\">2</td>"),
        "{domains}"
    );
    // Drift: nothing in common with the previous batch, HubSpot newly named.
    let drift = &html[html.find("id=\"drift\"").expect("the drift table")..];
    assert!(
        drift.contains(">1.00<") && drift.contains("<td>HubSpot</td>"),
        "{drift}"
    );

    for page in [&list, &page] {
        let errors = nesting_errors(&page.text);
        assert!(errors.is_empty(), "{errors:#?}\n{}", page.text);
    }

    // Another term, the previous batch, and bad input.
    let other = dash
        .get(&format!("/trackers/{id}?term=Salesforce&batch=2025-10-14"))
        .await;
    let html = other.assert_html(200);
    assert!(html.contains("Mention rate of Salesforce"), "{html}");
    assert!(
        html.contains("Nothing to compare"),
        "the first batch has no drift: {html}"
    );
    assert_eq!(
        dash.get(&format!("/trackers/{id}?term=Nope")).await.status,
        400
    );
    assert_eq!(
        dash.get(&format!("/trackers/{id}?batch=yesterday"))
            .await
            .status,
        400
    );
    assert_eq!(dash.get("/trackers/999").await.status, 404);
    assert_eq!(dash.get("/trackers/abc").await.status, 404);
}
