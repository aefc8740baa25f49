//! A tracker group's page in headless Chromium: logged in through the form, the page found
//! from the navigation and the trackers list, its trend chart, a highlighted mention in the
//! per-prompt table (the answer's `<script>` shown as text, never run) and the drift; at a
//! phone's width (390 px) and a desktop's (1280 px) nothing scrolls sideways and the charts'
//! labels stay inside them. Screenshots go to `docs/dashboard-tracker-{width}.png`.

use std::path::Path;

use serde_json::json;

use super::browser::{expect, fits};
use super::cdp::{Browser, find_chromium};
use super::trackers::seed;
use super::web::start;
use crate::support::TestDb;
use crate::support::fake::Fake;
use crate::support::server::SECRET;

pub async fn a_browser_opens_a_tracker_page_at_two_widths(db: TestDb) {
    let Some(chromium) = find_chromium() else {
        if std::env::var("PROMPTQ_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("Chromium is required (PROMPTQ_REQUIRE_BROWSER=1) but is missing");
        }
        eprintln!("\n!!! SKIPPING the tracker page's browser test: no Chromium.\n");
        return;
    };
    let dash = start(db, &[]).await;
    let fake = Fake::start().await;
    let id = seed(&dash, &fake).await;
    let base = dash.server.base.clone();

    let mut browser = Browser::launch(&chromium).await.expect("launch Chromium");
    drive(&mut browser, &base, id)
        .await
        .unwrap_or_else(|err| panic!("the tracker page: {err}"));
    let page = format!("/trackers/{id}");
    for (width, mobile) in [(390, true), (1280, false)] {
        for path in ["/trackers", page.as_str()] {
            fits(&mut browser, &base, path, width, mobile)
                .await
                .unwrap_or_else(|err| panic!("{path} at {width} px: {err}"));
        }
        labels_inside_the_charts(&mut browser)
            .await
            .unwrap_or_else(|err| panic!("the charts at {width} px: {err}"));
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(format!("dashboard-tracker-{width}.png"));
        browser
            .screenshot(&docs)
            .await
            .unwrap_or_else(|err| panic!("screenshot at {width} px: {err}"));
        println!("tracker page at {width} px: {}", docs.display());
    }
}

async fn drive(browser: &mut Browser, base: &str, id: i64) -> Result<(), String> {
    browser.navigate(&format!("{base}/trackers")).await?;
    browser
        .wait_for(
            "location.pathname === '/login' && !!document.querySelector('#login')",
            "the login form",
        )
        .await?;
    browser.type_into("#secret", SECRET).await?;
    browser.click("#login button[type=submit]").await?;
    browser
        .wait_for("location.pathname === '/'", "the overview after logging in")
        .await?;
    browser.click("nav a[href='/trackers']").await?;
    browser
        .wait_for(
            "location.pathname === '/trackers' && !!document.querySelector('#trackers a')",
            "the trackers list",
        )
        .await?;
    browser.click("#trackers a").await?;
    browser
        .wait_for(
            &format!(
                "location.pathname === '/trackers/{id}' && !!document.querySelector('#prompts')"
            ),
            "the tracker page",
        )
        .await?;
    let seen = browser
        .eval(
            "(() => ({ charts: document.querySelectorAll('svg.trend').length, \
               lines: document.querySelectorAll('svg.trend circle').length, \
               legend: [...document.querySelectorAll('svg.trend .legend text')].map(t => t.textContent), \
               marks: [...document.querySelectorAll('#prompts mark')].map(m => m.textContent), \
               excerpt: document.querySelector('#prompts .excerpt').textContent, \
               drift: [...document.querySelectorAll('#drift tr')].map(r => r.innerText), \
               scripts: document.scripts.length, title: document.title }))()",
        )
        .await?;
    expect(seen["charts"] == json!(2), format!("two charts: {seen}"))?;
    // One marker per batch per chart, and one in each legend entry: 2 × (2 + 1).
    expect(seen["lines"] == json!(6), format!("markers: {seen}"))?;
    expect(
        seen["legend"] == json!(["fake", "fake"]),
        format!("legend: {seen}"),
    )?;
    let marks = seen["marks"].as_array().cloned().unwrap_or_default();
    expect(
        marks.contains(&json!("HubSpot")) && marks.contains(&json!("Salesforce")),
        format!("highlighted mentions: {seen}"),
    )?;
    expect(
        seen["excerpt"]
            .as_str()
            .is_some_and(|t| t.contains("<script>alert('pwned')</script>")),
        format!("the answer's markup shown as text: {seen}"),
    )?;
    expect(
        seen["scripts"] == json!(0) && seen["title"] == json!("Tracker CRMs · promptq"),
        format!("no script ran: {seen}"),
    )?;
    expect(
        seen["drift"].as_array().is_some_and(|rows| {
            rows.len() == 2 && rows[1].as_str().is_some_and(|r| r.contains("1.00"))
        }),
        format!("drift: {seen}"),
    )
}

/// Every text of both charts lies within its drawing.
async fn labels_inside_the_charts(browser: &mut Browser) -> Result<(), String> {
    let clipped = browser
        .eval(
            "[...document.querySelectorAll('svg.trend')].flatMap(svg => { \
               const box = svg.viewBox.baseVal; \
               return [...svg.querySelectorAll('text')].filter(t => { const b = t.getBBox(); \
                 return b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height; \
               }).map(t => t.textContent); })",
        )
        .await?;
    expect(clipped == json!([]), format!("labels cut off: {clipped}"))
}
