//! The `promptq` binary as an operator runs it, for the attacks that need a real process: a
//! cleared environment holding only the secrets each test chooses, `RUST_LOG=debug` so that
//! every log line a secret could hide in is written, and its standard error kept for reading.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The operator's secrets in these tests. None is shaped like an OpenAI key except the first
/// two, so that only exact-value redaction can hide the others.
pub const OPENAI_KEY: &str = "sk-test-openai-key-000000000000001";
pub const OPENROUTER_KEY: &str = "sk-or-v1-test-000000000000000002";
pub const OLLAMA_KEY: &str = "ollama-key-zx81-0003";
pub const VLLM_KEY: &str = "vllm-key-c64-0004";
pub const CRON_SECRET: &str = "cron-secret-amiga-500-0005";

pub const ALL_SECRETS: [&str; 5] = [
    OPENAI_KEY,
    OPENROUTER_KEY,
    OLLAMA_KEY,
    VLLM_KEY,
    CRON_SECRET,
];

/// Fails with the place where a secret showed up.
pub fn assert_no_secret(place: &str, text: &str) {
    for secret in ALL_SECRETS {
        assert!(
            !text.contains(secret),
            "a secret ({}…) appears in {place}:\n{text}",
            &secret[..8]
        );
    }
}

/// The binary on one database, with the operator's environment.
pub struct Promptq {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub env: Vec<(String, String)>,
}

impl Promptq {
    pub fn new(database_url: &str, env: &[(&str, String)]) -> Self {
        Promptq {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: database_url.to_owned(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::support::PROMPTQ);
        command
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .env("CRON_SCHEDULE", "off")
            .env("RUST_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        command
    }

    /// Runs a one-shot command (off the async runtime, so the test's fake providers keep
    /// answering meanwhile).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().expect("run promptq"))
            .await
            .expect("the command's thread")
    }

    /// Runs a command that must succeed; its standard output and standard error.
    pub async fn ok(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args).await;
        let (out, err) = texts(&output);
        assert!(
            output.status.success(),
            "promptq {args:?} failed ({:?}):\n{err}",
            output.status
        );
        (out, err)
    }

    /// Runs a command that must fail with exit code 1; its standard error.
    pub async fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let (_, err) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "promptq {args:?}: {err}");
        err
    }

    /// `promptq serve` on a free loopback port, once `/healthz` answers.
    pub async fn serve(&self, extra_env: &[(&str, String)]) -> Served {
        self.serve_with(extra_env, false).await
    }

    /// `promptq serve` with `DISPATCH=http`: every job goes out as a `POST` to its own
    /// `/api/jobs/process`, with the `CRON_SECRET`, and no worker runs in the background.
    pub async fn serve_fanning_out(&self, extra_env: &[(&str, String)]) -> Served {
        self.serve_with(extra_env, true).await
    }

    async fn serve_with(&self, extra_env: &[(&str, String)], fan_out: bool) -> Served {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = self.path(&format!("serve-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("create the log file");
        let mut command = self.command(&["serve"]);
        command
            .env("BIND", format!("127.0.0.1:{port}"))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if fan_out {
            command
                .env("DISPATCH", "http")
                .env("APP_URL", &base)
                .env("WORKER_CONCURRENCY", "0");
        }
        let child = command.spawn().expect("start promptq serve");
        let mut served = Served {
            base,
            child,
            log,
            client: reqwest::Client::new(),
        };
        for _ in 0..300 {
            if let Ok(answer) = served.client.get(served.url("/healthz")).send().await
                && answer.status().is_success()
            {
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("promptq serve exited ({status}):\n{}", served.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("promptq serve did not answer /healthz:\n{}", served.log());
    }
}

pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A running `promptq serve`; killed when dropped.
pub struct Served {
    pub base: String,
    child: Child,
    log: PathBuf,
    pub client: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer's status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let answer = request.send().await.expect("send the request");
        let status = answer.status().as_u16();
        let text = answer.text().await.expect("read the answer");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, json }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)).bearer_auth(CRON_SECRET))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(CRON_SECRET)
                .json(&body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.client
                .patch(self.url(path))
                .bearer_auth(CRON_SECRET)
                .json(&body),
        )
        .await
    }

    /// Waits until no job is queued or processing (bounded: a stuck queue fails the test).
    pub async fn drain(&self) -> Value {
        for _ in 0..600 {
            let status = self.get("/api/jobs/status?limit=1000").await;
            let summary = &status.json["summary"];
            if summary["queued"] == 0 && summary["processing"] == 0 {
                return status.json;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("jobs did not finish:\n{}", self.log());
    }
}
