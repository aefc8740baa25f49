//! promptq against a real gateway: the LiteLLM proxy (1.80.0) with two `mock_response`
//! models limited to 30 requests a minute, 40 jobs each, run side by side: one with no `rpm`
//! param (the pace is learned from the proxy's `x-ratelimit-*` headers), one with `rpm: 29`.
//!
//! The proxy comes from `PROMPTQ_LITELLM` (its `litellm` executable, or the virtual
//! environment that holds it; `.ci/run` installs one). Without it the test prints a loud skip,
//! or fails when `PROMPTQ_REQUIRE_LITELLM=1` (set by CI).
//!
//! The proxy counts its limit per calendar minute and admits 29 of 30: 40 jobs need two
//! windows, about 60 s when learned from the headers. Spaced at 30 a minute (3 % wider: 2.06 s),
//! about one calendar minute in eight holds 30 calls, and the proxy refuses the 30th; so the
//! configured model is given the 29 the proxy admits (2.13 s: 83 s for 40 jobs), as the README
//! tells LiteLLM users to.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support;

const JOBS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn litellm_paces_with_and_without_a_configured_rpm() {
    let _one_at_a_time = crate::SERIAL.lock().await;
    let Some(litellm) = litellm_path() else {
        return;
    };
    let proxy = Proxy::start(&litellm).await;
    let (adaptive, configured) = tokio::join!(
        run(&proxy.base_url, "adaptive", json!({})),
        run(&proxy.base_url, "configured", json!({"rpm": 29})),
    );
    for (name, (elapsed, rate_limited)) in [("adaptive", adaptive), ("configured", configured)] {
        eprintln!("{name}: {JOBS} jobs in {elapsed:.1?}, {rate_limited} answered 429");
    }
    // Learned from the headers: two windows, 60 s; 1.2 × that at most, under 10 % 429s.
    assert!(
        adaptive.0 <= Duration::from_secs(72),
        "adaptive took {:?}",
        adaptive.0
    );
    assert!(
        adaptive.1 * 10 < JOBS as u64,
        "adaptive drew {} 429s",
        adaptive.1
    );
    // Spaced at 29 a minute: 83 s, 1.2 × that at most (as above: a loaded machine claims a
    // slot late now and then, measured 84-87 s here with both cores busy), and no 429 (1 % of
    // 40 jobs is less than one).
    assert!(
        configured.0 <= Duration::from_secs(100),
        "configured took {:?}",
        configured.0
    );
    assert_eq!(configured.1, 0, "rpm 29 drew 429s");
}

/// Runs 40 jobs of `model` on a fresh database: the time until all succeeded, and the 429s.
async fn run(base_url: &str, model: &str, limits: serde_json::Value) -> (Duration, u64) {
    let db = support::sqlite().await;
    let new_model = support::openai_model(model, model, base_url, limits);
    support::seed(&db.store, &[new_model], JOBS, 1).await;
    let started = Instant::now();
    let pool = support::RunningPool::start_as_configured(
        &db.store,
        &db.url,
        &["--worker-concurrency", "16"],
    )
    .await;
    support::wait_until_done(&db.store, Duration::from_secs(150)).await;
    let elapsed = started.elapsed();
    let app = pool.app.clone();
    pool.stop().await;
    let rate_limited = app.metrics().rate_limited.load(Ordering::Relaxed);
    let s = support::summary(&db.store).await;
    // The pauses in force say why a run stalled (a 429 storm, a window held too long).
    let pauses = db.store.pauses_active(chrono::Utc::now()).await.unwrap();
    assert_eq!(
        s.succeeded, JOBS as i64,
        "{model}: {s:?} after {elapsed:?}, {rate_limited} answered 429; pauses: {pauses:?}"
    );
    (elapsed, rate_limited)
}

/// The `litellm` executable named by `PROMPTQ_LITELLM`, or `None` after a loud skip.
fn litellm_path() -> Option<PathBuf> {
    let required = std::env::var("PROMPTQ_REQUIRE_LITELLM").is_ok_and(|v| v == "1");
    let found = std::env::var_os("PROMPTQ_LITELLM")
        .map(PathBuf::from)
        .map(|p| if p.is_dir() { p.join("bin/litellm") } else { p })
        .filter(|p| p.is_file());
    if found.is_none() {
        let reason = "PROMPTQ_LITELLM does not name a litellm executable or its venv";
        if required {
            panic!("the LiteLLM proxy is required (PROMPTQ_REQUIRE_LITELLM=1) but: {reason}");
        }
        eprintln!(
            "\n!!! SKIPPING the LiteLLM proxy test: {reason}.\n!!! python3 -m venv V && V/bin/pip install 'litellm[proxy]==1.80.0'; PROMPTQ_LITELLM=V\n"
        );
    }
    found
}

/// A running proxy, stopped when dropped.
struct Proxy {
    child: Child,
    base_url: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    async fn start(litellm: &std::path::Path) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let model = |name: &str| {
            format!(
                "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}\n      api_key: x\n      mock_response: \"hello\"\n      rpm: 30\n"
            )
        };
        let config = format!(
            "model_list:\n{}{}router_settings:\n  routing_strategy: usage-based-routing-v2\n  num_retries: 0\n",
            model("adaptive"),
            model("configured")
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(litellm)
            .args(["--config", "config.yaml", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(dir.path())
            // Keeps it from reaching for the network.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the LiteLLM proxy");
        let proxy = Proxy {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/health/liveliness");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return proxy;
            }
            assert!(Instant::now() < deadline, "the LiteLLM proxy did not start");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
