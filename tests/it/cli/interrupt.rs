//! Ctrl-C during `run`: the first stops claiming, lets running calls finish or hands them back,
//! prints the right counts and exits 130; a second exits at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Promptq;

fn catalog(latency_ms: u64) -> String {
    format!(
        "models:\n  - {{name: slow, provider: mock, model: m, params: {{latencyMs: {latency_ms}}}}}\nprompts:\n  - text: Hello?\n    runs: 20\n"
    )
}

fn status(promptq: &Promptq) -> Value {
    promptq.json(&["status", "--json"])["summary"].clone()
}

/// Waits (generously: a loaded machine) until `ready` holds of the summary.
fn wait_for(promptq: &Promptq, what: &str, ready: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready(&status(promptq)) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

/// Waits for `child` to exit within `within`; kills it and fails the test otherwise.
fn exit_within(mut child: Child, within: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!("still running {within:?} after Ctrl-C: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("collect output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn spawn_run(promptq: &Promptq, extra_env: &[(&str, &str)]) -> Child {
    promptq
        .command(&["run"])
        .env("WORKER_CONCURRENCY", "2")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promptq run")
}

#[test]
fn a_ctrl_c_during_run_stops_with_the_right_counts_and_exit_130() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write("catalog.yaml", &catalog(300)));
    let child = spawn_run(&promptq, &[]);
    wait_for(&promptq, "two answers", |s| {
        s["succeeded"].as_i64() >= Some(2)
    });
    interrupt(&child);
    let (code, stdout, stderr) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    // What it printed is what the database holds: nothing left processing, the rest queued.
    let after = status(&promptq);
    assert_eq!(after["processing"], 0, "{after}");
    let succeeded = after["succeeded"].as_i64().expect("a count");
    let queued = after["queued"].as_i64().expect("a count");
    assert!(queued > 0, "interrupted before the end: {after}");
    assert_eq!(succeeded + queued, 20, "{after}");
    assert!(
        stdout.contains(&format!(
            "20 jobs, {succeeded} succeeded, 0 failed, 0 skipped, {queued} not run yet"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("interrupted: {queued} jobs left")),
        "{stderr}"
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let promptq = Promptq::sqlite();
    promptq.import(&promptq.write("catalog.yaml", &catalog(60_000)));
    // A first Ctrl-C alone would wait a minute for the running calls.
    let child = spawn_run(&promptq, &[("SHUTDOWN_GRACE_SECS", "60")]);
    wait_for(&promptq, "running calls", |s| {
        s["processing"].as_i64() >= Some(1)
    });
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let (code, stdout, stderr) = exit_within(child, Duration::from_secs(20));
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted again"), "{stderr}");
}
