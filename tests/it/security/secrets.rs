//! The secrets stay secret: providers that echo every secret back (in an error page, in an
//! answer), a debug-level log, every API answer and both export formats, with the jobs sent
//! through the HTTP fan-out so that the `CRON_SECRET` travels on every call. And the fan-out
//! refuses to start where it would send that secret in clear.

use std::time::Duration;

use serde_json::json;

use super::keys::Hosts;
use super::process::{ALL_SECRETS, CRON_SECRET, OLLAMA_KEY, Promptq, assert_no_secret, texts};
use crate::support::fake::{Reply, completion_body};
use crate::support::{TestDb, on_both};

on_both!(
    threads = 2;
    owned;
    no_secret_reaches_an_answer_a_log_a_stored_error_or_an_export,
);

async fn no_secret_reaches_an_answer_a_log_a_stored_error_or_an_export(db: TestDb) {
    let hosts = Hosts::start().await;
    let everything = ALL_SECRETS.join(" ");
    // A 400 that quotes the request's Authorization header, as some servers do.
    hosts.ollama.reply(Reply::text(
        400,
        &format!("bad request (Authorization: Bearer {OLLAMA_KEY}) {everything}"),
    ));
    hosts.vllm.reply(Reply::json(
        200,
        completion_body(&format!("you sent {everything}"), "stop"),
    ));
    hosts
        .attacker
        .reply(Reply::text(500, &format!("oops {everything}")));

    let promptq = Promptq::new(&db.url, &hosts.env());
    let server = promptq.serve_fanning_out(&[]).await;
    for (name, params) in [
        ("ollama", json!({"endpoint": "OLLAMA"})),
        ("vllm", json!({"endpoint": "VLLM"})),
        ("keyless", json!({"baseUrl": hosts.attacker.base_url()})),
    ] {
        let answer = server
            .post(
                "/api/models",
                json!({"name": name, "provider": "openai-compatible", "model": "m",
                       "params": params}),
            )
            .await;
        assert!(answer.status < 300, "{}", answer.text);
    }
    server.post("/api/prompts", json!({"text": "Hello?"})).await;
    let cron = server.post("/api/cron", json!({})).await;
    assert_eq!(cron.json["jobsCreated"], 3, "{}", cron.text);
    let status = server.drain().await;
    assert_eq!(status["summary"]["failed"], 2, "{status}");
    assert_eq!(status["summary"]["succeeded"], 1, "{status}");

    let mut answers = vec![cron];
    for path in [
        "/api/jobs/status",
        "/api/responses",
        "/api/models",
        "/api/prompts",
        "/metrics",
        "/",
    ] {
        answers.push(server.get(path).await);
    }
    let wrong = server
        .send(
            server
                .client
                .get(server.url("/api/models"))
                .bearer_auth(format!("{CRON_SECRET}x")),
        )
        .await;
    assert_eq!(wrong.status, 401);
    answers.push(wrong);
    for answer in &answers {
        assert_no_secret("an API answer", &answer.text);
    }
    // The echoes were stored, with every secret cut out of them.
    let status = &answers[1].text;
    assert!(status.contains("[redacted]"), "{status}");
    assert!(
        answers[2].text.contains("[redacted]"),
        "{}",
        answers[2].text
    );

    for format in ["csv", "jsonl"] {
        let (export, log) = promptq.ok(&["export", "--format", format]).await;
        assert!(export.contains("[redacted]"), "{export}");
        assert_no_secret("an export", &export);
        assert_no_secret("the export's log", &log);
    }

    drop(answers);
    let log = server.log();
    drop(server);
    assert!(log.contains("DEBUG"), "the log is at debug level:\n{log}");
    assert!(
        log.contains("fan-out pass"),
        "the jobs went through the fan-out:\n{log}"
    );
    assert_no_secret("the server's debug log", &log);
}

/// `DISPATCH=http` puts the `CRON_SECRET` on every call: over plain http only to this machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_refuses_to_send_the_secret_in_clear() {
    let db = crate::support::sqlite().await;
    let promptq = Promptq::new(&db.url, &[("CRON_SECRET", CRON_SECRET.to_owned())]);
    // `.invalid` never resolves, so even a server that wrongly started would send nothing.
    for app_url in ["http://promptq.invalid:3000", "http://10.1.2.3:3000"] {
        let mut command = std::process::Command::new(crate::support::PROMPTQ);
        command
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", &promptq.database_url)
            .env("CRON_SECRET", CRON_SECRET)
            .env("CRON_SCHEDULE", "off")
            .env("BIND", "127.0.0.1:0")
            .env("DISPATCH", "http")
            .env("APP_URL", app_url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("start promptq serve");
        // A refused start exits at once; one that serves is stopped and fails the test.
        let mut exited = None;
        for _ in 0..100 {
            if let Some(status) = child.try_wait().expect("wait for promptq") {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if exited.is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().expect("promptq's output");
        let (_, stderr) = texts(&output);
        let status = exited.unwrap_or_else(|| panic!("serve started with APP_URL={app_url}"));
        assert!(!status.success(), "{app_url}: {stderr}");
        assert!(
            stderr.contains("DISPATCH=http") && stderr.contains("https://"),
            "{app_url}: {stderr}"
        );
        assert_no_secret("the refusal", &stderr);
    }
}
