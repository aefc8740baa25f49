//! The dashboard in a real browser: the `promptq` binary serves a finished batch (steady jobs
//! succeeded, jobs of a `failRate: 1` model failed with `MAX_ATTEMPTS=1`), and a headless
//! Chromium logs in through the form, reads the batch's numbers, opens a failed job, clicks
//! Retry and sees it queued. Then every page is opened at a phone's width (390 px) and a
//! desktop's (1280 px): none may scroll sideways, and the chart's labels must lie inside it.
//! Screenshots go to `target/tmp/`; the overview at both widths to `docs/`.
//!
//! Without Chromium the test prints a loud SKIP and passes, unless `PROMPTQ_REQUIRE_BROWSER=1`
//! (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cdp::{Browser, find_chromium};

const SECRET: &str = "browser-test-secret-42";
const BATCH: &str = "2025-10-14";
const PROMPT: &str = "<script>document.title='pwned'</script> Best CRM for a small team?";

const CATALOG: &str = r#"
models:
  - name: steady
    provider: mock
    model: mock-steady-1
    params: { latencyMs: 5 }
  - name: flaky
    provider: mock
    model: mock-flaky-1
    params: { failRate: 1 }
prompts:
  - text: "<script>document.title='pwned'</script> Best CRM for a small team?"
    runs: 2
"#;

/// The `promptq` binary on one database, with a clean environment.
fn promptq(database_url: &str) -> Command {
    let mut command = Command::new(crate::support::PROMPTQ);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("CRON_SCHEDULE", "off")
        .env("MAX_ATTEMPTS", "1")
        .env("RUST_LOG", "warn");
    command
}

/// A `promptq` process, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end and returns its exit code; kills it after `limit` (`None`).
fn finish_within(mut command: Command, limit: Duration) -> Option<i32> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start promptq");
    let mut child = Serve(child);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait().expect("wait for promptq") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let answer = client.get(format!("{base}/healthz")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("promptq serve did not answer /healthz at {base} in time");
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

pub async fn a_browser_logs_in_opens_a_failed_job_and_retries_it() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("PROMPTQ_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "Chromium is required (PROMPTQ_REQUIRE_BROWSER=1) but /usr/bin/chromium is missing"
            );
        }
        eprintln!(
            "\n!!! SKIPPING the dashboard's browser test: no Chromium at /usr/bin/chromium.\n!!! Install it with: apt-get install -y chromium\n"
        );
        return;
    };

    // A finished batch, made by the binary itself.
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite:{}", dir.path().join("promptq.db").display());
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("write the catalog");
    let mut import = promptq(&database_url);
    import.arg("prompts").arg("import").arg(&catalog);
    let imported = finish_within(import, Duration::from_secs(60));
    assert_eq!(imported, Some(0), "promptq prompts import");
    let mut run = promptq(&database_url);
    run.args(["run", "--batch-key", BATCH]);
    // `run` exits non-zero because jobs failed: that is the point.
    assert_eq!(
        finish_within(run, Duration::from_secs(60)),
        Some(1),
        "promptq run"
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = Serve(
        promptq(&database_url)
            .arg("serve")
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("CRON_SECRET", SECRET)
            .env("WORKER_CONCURRENCY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start promptq serve"),
    );
    wait_healthy(&base).await;

    let mut browser = Browser::launch(&chromium).await.expect("launch Chromium");
    let seen = drive(&mut browser, &base).await.expect("the click-through");
    let pages = [
        "/".to_owned(),
        "/batches".to_owned(),
        format!("/batches/{BATCH}"),
        format!("/batches/{BATCH}?status=failed"),
        format!("/batches/{BATCH}/prompts/1"),
        "/failed".to_owned(),
        format!("/jobs/{}", seen.job),
        format!("/jobs/{}", seen.job - 1),
        "/no-such-page".to_owned(),
    ];
    for (width, mobile) in [(390, true), (1280, false)] {
        for path in &pages {
            fits(&mut browser, &base, path, width, mobile)
                .await
                .unwrap_or_else(|err| panic!("{path} at {width} px: {err}"));
        }
        labels_inside_the_chart(&mut browser, &base)
            .await
            .unwrap_or_else(|err| panic!("the chart at {width} px: {err}"));
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(format!("dashboard-{width}.png"));
        browser
            .screenshot(&docs)
            .await
            .unwrap_or_else(|err| panic!("screenshot at {width} px: {err}"));
        println!("dashboard at {width} px: {}", docs.display());
    }

    // What the browser did, as the API sees it.
    let detail: Value = reqwest::Client::new()
        .get(format!("{base}/api/jobs/{}", seen.job))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("GET the job")
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["job"]["status"], json!("queued"), "{detail}");
    println!(
        "dashboard screenshots: {}, {} and {}",
        seen.overview.display(),
        seen.failed.display(),
        seen.retried.display()
    );
}

/// Opens `path` at `width` px and checks that nothing makes the page wider than the window.
pub(super) async fn fits(
    browser: &mut Browser,
    base: &str,
    path: &str,
    width: u32,
    mobile: bool,
) -> Result<(), String> {
    browser.set_width(width, mobile).await?;
    browser.navigate(&format!("{base}{path}")).await?;
    let pathname = path.split('?').next().unwrap_or(path);
    browser
        .wait_for(
            &format!(
                "location.pathname === {} && !!document.querySelector('main')",
                json!(pathname)
            ),
            path,
        )
        .await?;
    // On a phone, content wider than the screen widens the layout viewport (the page is
    // zoomed out), so innerWidth itself shows the overflow there.
    let measured = browser
        .eval(&format!(
            "(() => {{ const wide = [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > {width} + 0.5) \
               .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')); \
             return {{scroll: document.documentElement.scrollWidth, inner: innerWidth, \
                     wide: wide.slice(0, 8)}}; }})()"
        ))
        .await?;
    let (Some(scroll), Some(inner)) = (measured["scroll"].as_i64(), measured["inner"].as_i64())
    else {
        return Err(format!("measured {measured}"));
    };
    expect(
        inner == i64::from(width),
        format!("innerWidth {inner}; too wide: {}", measured["wide"]),
    )?;
    expect(
        scroll <= inner,
        format!(
            "scrollWidth {scroll} > innerWidth {inner}; too wide: {}",
            measured["wide"]
        ),
    )
}

/// On the overview, every text of the chart lies within the drawing (nothing is cut off).
async fn labels_inside_the_chart(browser: &mut Browser, base: &str) -> Result<(), String> {
    browser.navigate(&format!("{base}/")).await?;
    browser
        .wait_for(
            "location.pathname === '/' && !!document.querySelector('svg.chart')",
            "the overview's chart",
        )
        .await?;
    let clipped = browser
        .eval(
            "(() => { const svg = document.querySelector('svg.chart'); \
               const box = svg.viewBox.baseVal; \
               return [...svg.querySelectorAll('text')].filter(t => { const b = t.getBBox(); \
                 return b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height; \
               }).map(t => t.textContent); })()",
        )
        .await?;
    expect(clipped == json!([]), format!("labels cut off: {clipped}"))
}

/// What the click-through saw.
struct Seen {
    job: i64,
    overview: PathBuf,
    failed: PathBuf,
    retried: PathBuf,
}

async fn drive(browser: &mut Browser, base: &str) -> Result<Seen, String> {
    // Not logged in: the dashboard sends the browser to the form.
    browser.navigate(&format!("{base}/")).await?;
    browser
        .wait_for(
            "location.pathname === '/login' && !!document.querySelector('#login')",
            "the login form",
        )
        .await?;
    browser.type_into("#secret", SECRET).await?;
    browser.click("#login button[type=submit]").await?;
    browser
        .wait_for(
            "location.pathname === '/' && !!document.querySelector('#batches')",
            "the overview after logging in",
        )
        .await?;
    // The cookie is HttpOnly: no script can read it.
    let visible = browser.eval("document.cookie").await?;
    expect(visible == json!(""), format!("document.cookie = {visible}"))?;

    // The batch with its numbers: 4 jobs, 2 succeeded (steady), 2 failed (flaky).
    let row = browser
        .eval(&format!(
            "[...document.querySelectorAll('#batches tr')].map(r => [...r.cells].map(c => c.innerText.trim())).find(r => r[0] === '{BATCH}')"
        ))
        .await?;
    let row: Vec<String> =
        serde_json::from_value(row.clone()).map_err(|e| format!("{row}: {e}"))?;
    // Batch, progress, total, queued, in progress, submitted, succeeded, failed, skipped.
    expect(
        row[2..] == ["4", "0", "0", "0", "2", "2", "0"],
        format!("batch row {row:?}"),
    )?;
    let chart = browser
        .eval(
            "document.querySelector('svg') !== null && document.querySelector('#models').innerText",
        )
        .await?;
    let chart = chart.as_str().unwrap_or_default().to_owned();
    expect(
        chart.contains("steady")
            && chart.contains("100%")
            && chart.contains("flaky")
            && chart.contains("0%"),
        format!("model table: {chart}"),
    )?;
    let overview = screenshot_path("dashboard-overview.png");
    browser.screenshot(&overview).await?;

    // The failed jobs, then the first one.
    browser.click("nav a[href='/failed']").await?;
    browser
        .wait_for(
            "location.pathname === '/failed' && !!document.querySelector('a.job')",
            "the failed jobs",
        )
        .await?;
    let failed = screenshot_path("dashboard-failed.png");
    browser.screenshot(&failed).await?;
    let job = browser
        .eval("document.querySelector('a.job').textContent")
        .await?;
    let job: i64 = job
        .as_str()
        .and_then(|text| text.trim_start_matches('#').parse().ok())
        .ok_or(format!("job link {job}"))?;
    browser.click("a.job").await?;
    browser
        .wait_for(
            &format!("location.pathname === '/jobs/{job}' && !!document.querySelector('#retry')"),
            "the failed job's page",
        )
        .await?;
    let page = browser
        .eval("document.querySelector('main').innerText")
        .await?;
    let page = page.as_str().unwrap_or_default().to_owned();
    expect(
        page.contains("failed")
            && page.contains("mock simulated failure")
            && page.contains("flaky"),
        format!("job page: {page}"),
    )?;
    // The prompt's markup is shown as text, never run.
    let prompt = browser
        .eval("document.querySelector('#prompt').textContent")
        .await?;
    expect(prompt == json!(PROMPT), format!("prompt {prompt}"))?;
    let title = browser.eval("document.title").await?;
    expect(
        title == json!(format!("Job #{job} · promptq")),
        format!("title {title}"),
    )?;
    let scripts = browser.eval("document.scripts.length").await?;
    expect(scripts == json!(0), format!("{scripts} script elements"))?;

    browser.click("#retry button").await?;
    browser
        .wait_for(
            &format!(
                "location.pathname === '/jobs/{job}' && !!document.querySelector('h1 .st-queued') && !document.querySelector('#retry')"
            ),
            "the job queued again",
        )
        .await?;
    let retried = screenshot_path("dashboard-job-retried.png");
    browser.screenshot(&retried).await?;
    Ok(Seen {
        job,
        overview,
        failed,
        retried,
    })
}

pub(super) fn expect(condition: bool, what: String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!("unexpected: {what}"))
    }
}
