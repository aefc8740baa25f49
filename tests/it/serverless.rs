//! The serverless function as Vercel runs it: the `serverless` binary (feature `vercel`) under
//! `vercel_runtime`, which without Vercel's bridge serves the function itself on
//! `127.0.0.1:$VERCEL_DEV_PORT`. With `DISPATCH=http` and `APP_URL` pointing at itself, a cron
//! call with `Authorization: Bearer <secret>` (as Vercel Cron sends it) fans the batch out to
//! its own `/api/jobs/process`, and a time budget far smaller than the batch needs makes each
//! pass hand the rest to a fresh `/api/jobs/dispatch` invocation. The batch must finish with
//! every job processed exactly once, through several passes. Runs on PostgreSQL (what Vercel
//! deployments use) and on SQLite.
//!
//! The test builds the binary first (`cargo build --features vercel --bin serverless`, a no-op
//! when it is fresh), since `cargo test` builds no binary whose features it was not given.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestDb, mock_model, on_both, seed, wait_until};

on_both!(
    threads = 2; owned;
    a_cron_call_finishes_a_batch_larger_than_one_invocations_budget,
);

const SECRET: &str = "serverless-test-secret-0123456789";
/// Jobs of the batch: 4 prompts × 1 model × 4 runs.
const JOBS: i64 = 16;
/// Each model call takes at least this long; two run at once; a pass may send for 0.3 s. So
/// one pass starts at most 4 calls, and the batch needs at least 4 passes.
const LATENCY_MS: u64 = 200;
const BUDGET_SECS: &str = "0.3";
const MIN_PASSES: usize = 4;

/// The `serverless` binary, built once per test run.
fn serverless_binary() -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/debug/deps/it-… → target
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .ok_or("no target directory")?;
        let target = profile_dir.parent().ok_or("no target directory")?;
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "--features",
                "vercel",
                "--bin",
                "serverless",
            ])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --features vercel failed: {status}"));
        }
        Ok(profile_dir.join("serverless"))
    })
}

/// The function's process, killed on drop; its log lines are kept.
struct Function {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    fn start(binary: &PathBuf, database_url: &str, port: u16) -> Function {
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VERCEL_DEV_PORT", port.to_string())
            .env("DATABASE_URL", database_url)
            .env("CRON_SECRET", SECRET)
            .env("DISPATCH", "http")
            .env("APP_URL", format!("http://127.0.0.1:{port}"))
            .env("WORKER_CONCURRENCY", "2")
            .env("DISPATCH_BUDGET_SECS", BUDGET_SECS)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the serverless binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        Function { child, log }
    }

    fn log_lines(&self, containing: &str) -> usize {
        self.log
            .lock()
            .map(|lines| lines.iter().filter(|l| l.contains(containing)).count())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let answer = client
        .get(url)
        .header("Authorization", format!("Bearer {SECRET}"))
        .send()
        .await
        .expect("GET");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

pub async fn a_cron_call_finishes_a_batch_larger_than_one_invocations_budget(db: TestDb) {
    let binary = match serverless_binary() {
        Ok(binary) => binary,
        Err(err) => panic!("{err}"),
    };
    seed(
        &db.store,
        &[mock_model(
            "steady",
            "mock-steady-1",
            json!({"latencyMs": LATENCY_MS}),
        )],
        4,
        4,
    )
    .await;
    let port = free_port();
    let function = Function::start(binary, &db.url, port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until(
        "the function to answer",
        Duration::from_secs(30),
        async || {
            client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|a| a.status().is_success())
        },
    )
    .await;

    // Vercel Cron: GET with the secret as a Bearer token.
    let started = Instant::now();
    let (status, cron) = get(&client, &format!("{base}/api/cron")).await;
    assert_eq!(status, 200, "{cron}\n{}", function.log());
    assert_eq!(cron["jobsCreated"], json!(JOBS), "{cron}");
    let dispatch = &cron["dispatch"];
    assert!(dispatch["left"].as_i64().unwrap_or(0) > 0, "{cron}");
    assert_eq!(dispatch["handedOff"], json!(true), "{cron}");
    let batch = cron["batchKey"].as_str().expect("a batch key").to_owned();

    let status_url = format!("{base}/api/jobs/status?batchKey={batch}");
    wait_until("the batch to finish", Duration::from_secs(60), async || {
        let (_, answer) = get(&client, &status_url).await;
        answer["summary"]["succeeded"] == json!(JOBS)
    })
    .await;
    let took = started.elapsed();

    let (_, answer) = get(&client, &status_url).await;
    assert_eq!(answer["summary"]["total"], json!(JOBS), "{answer}");
    let jobs = answer["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len() as i64, JOBS);
    for job in jobs {
        // Processed once: one attempt each, never a second claim.
        assert_eq!(job["attemptCount"], json!(1), "{job}");
    }
    let (_, responses) = get(&client, &format!("{base}/api/responses?batchKey={batch}")).await;
    assert_eq!(
        responses["responses"].as_array().map(Vec::len),
        Some(JOBS as usize),
        "{responses}"
    );
    let passes = function.log_lines("fan-out pass");
    assert!(
        passes >= MIN_PASSES,
        "{passes} fan-out passes (at least {MIN_PASSES} expected)\n{}",
        function.log()
    );
    println!("{JOBS} jobs in {passes} fan-out passes, {took:?} from the cron call to the last");
}

#[test]
fn the_dispatch_budget_is_read_in_seconds_and_refused_when_meaningless() {
    let settings = |value: &str| {
        let flag = format!("--dispatch-budget-secs={value}");
        crate::support::settings_from_args(["promptq", "--database-url", "sqlite:x.db", &flag])
            .validate()
    };
    let budget = settings("0.25").expect("a valid budget").dispatch_budget;
    assert_eq!(budget, Some(Duration::from_millis(250)));
    for bad in ["0", "-1", "NaN", "inf", "100000"] {
        let err = settings(bad).expect_err(bad).to_string();
        assert!(err.contains("DISPATCH_BUDGET_SECS"), "{bad}: {err}");
    }
    let unset = crate::support::settings_from_args(["promptq", "--database-url", "sqlite:x.db"])
        .validate()
        .expect("valid");
    assert_eq!(unset.dispatch_budget, None, "no limit unless asked");
}
