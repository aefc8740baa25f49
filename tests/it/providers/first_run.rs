//! A newcomer's first run with a real provider, through the binary: an `openai` model added
//! without `OPENAI_API_KEY` is warned about at once, a worker says at start that it cannot run
//! it and leaves its job queued, `status` shows it blocked with the reason, and once the key is
//! set a restarted worker runs it. The provider is a local server speaking OpenAI's API.
//!
//! With `PROMPTQ_FIRST_RUN_TRANSCRIPT=FILE` the SQLite half writes the commands and their
//! output to FILE, as a user would see them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use promptq::domain::JobStatus;

use super::*;
use crate::support::{self, PROMPTQ, TestDb, on_both, terminate};

on_both!(
    owned;
    a_keyless_openai_model_is_said_at_once_and_runs_once_the_key_is_set,
    run_finishes_what_it_can_and_leaves_a_keyless_models_jobs_queued,
);

const KEY: &str = "sk-test-first-run-0123456789";

/// Runs the binary and keeps what a terminal would show.
struct Session {
    env: Vec<(String, String)>,
    transcript: String,
}

impl Session {
    /// A shell whose environment names the test database and `fake` as OpenAI's endpoint.
    fn new(db: &TestDb, fake: &Fake) -> Session {
        let env = vec![
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("OPENAI_BASE_URL".to_owned(), fake.base_url()),
            ("CRON_SCHEDULE".to_owned(), "off".to_owned()),
        ];
        let transcript = format!(
            "# A local server speaking OpenAI's chat completions API listens at {}.\n\
             $ export {}\n",
            fake.base_url(),
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        Session { env, transcript }
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(PROMPTQ);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null());
        command
    }

    /// `export NAME=VALUE` in the user's shell: every later command has it.
    fn export(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
        self.transcript
            .push_str(&format!("\n$ export {name}={value}\n"));
    }

    fn shown(&mut self, args: &[&str], extra_env: &[(&str, &str)]) {
        let env: String = extra_env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        self.transcript
            .push_str(&format!("\n$ {env}promptq {}\n", quote(args)));
    }

    /// Runs a command to its end; asserts that it succeeded.
    fn run(&mut self, args: &[&str]) -> (String, String) {
        self.shown(args, &[]);
        let Output {
            status,
            stdout,
            stderr,
        } = output_within(self.command(args, &[]), Duration::from_secs(60));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        );
        self.transcript.push_str(&stdout);
        self.transcript.push_str(&stderr);
        assert!(
            status.success(),
            "promptq {args:?}: {status:?}\n{stdout}{stderr}"
        );
        (stdout, stderr)
    }

    /// Starts `promptq worker`, waits until its log says `until` (or, with `None`, until
    /// `done` holds), then stops it as Ctrl-C would; the log lines seen so far.
    async fn worker(
        &mut self,
        extra_env: &[(&str, &str)],
        until: Option<&str>,
        mut done: impl AsyncFnMut() -> bool,
    ) -> String {
        self.shown(&["worker"], extra_env);
        let mut child = self
            .command(&["worker"], extra_env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            while let Ok(line) = rx.try_recv() {
                log.push_str(&line);
                log.push('\n');
            }
            let finished = match until {
                Some(text) => log.contains(text),
                None => done().await,
            };
            if finished {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not get there in time; its log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        terminate(&mut child, Duration::from_secs(15));
        let _ = reader.join();
        while let Ok(line) = rx.try_recv() {
            log.push_str(&line);
            log.push('\n');
        }
        self.transcript.push_str(&log);
        self.transcript.push_str("[worker stopped with SIGTERM]\n");
        log
    }
}

/// The command's output; fails the test (killing it) if it runs longer than `limit`.
fn output_within(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promptq");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().expect("wait for promptq");
    let _ = tx.send(());
    assert!(
        output.status.code().is_some(),
        "promptq ran longer than {limit:?} and was killed"
    );
    output
}

fn quote(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn a_keyless_openai_model_is_said_at_once_and_runs_once_the_key_is_set(db: TestDb) {
    let fake = Fake::start().await;
    fake.reply(Reply::json(
        200,
        fake::completion_body("HubSpot is a good start.", "stop"),
    ));
    let mut session = Session::new(&db, &fake);

    let (out, err) = session.run(&[
        "models",
        "add",
        "--name",
        "gpt",
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
    ]);
    assert!(out.starts_with("added model 1"), "{out}");
    assert!(
        err.contains("warning: model 'gpt' cannot run here: openai: OPENAI_API_KEY is not set"),
        "{err}"
    );
    session.run(&["prompts", "add", "Which CRM suits a small business?"]);
    let (out, _) = session.run(&["cron"]);
    assert!(out.contains("\"jobsCreated\": 1"), "{out}");
    let cron: Value = serde_json::from_str(&out).expect("cron prints JSON");
    let batch = cron["batchKey"].as_str().expect("a batch key").to_owned();

    let log = session
        .worker(&[], Some("cannot run in this process"), async || true)
        .await;
    assert!(log.contains("OPENAI_API_KEY is not set"), "{log}");
    let job = &support::all_jobs(&db.store).await[0];
    assert_eq!((job.status, job.attempt_count), (JobStatus::Queued, 0));
    assert!(fake.seen().is_empty(), "no request without a key");

    let (out, _) = session.run(&["status"]);
    assert!(
        out.contains("1 jobs: 1 queued") || out.contains("1 job: 1 queued"),
        "{out}"
    );
    assert!(
        out.contains(
            "blocked: model 'gpt' (id 1) cannot run here: openai: OPENAI_API_KEY is not set; \
             1 queued job waits unclaimed"
        ),
        "{out}"
    );

    let store = db.store.clone();
    session.export("OPENAI_API_KEY", KEY);
    session
        .worker(&[], None, async || {
            support::summary(&store).await.succeeded == 1
        })
        .await;
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(
        fake.last().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let (out, _) = session.run(&["status"]);
    assert!(out.contains("1 succeeded"), "{out}");
    assert!(!out.contains("blocked"), "{out}");
    let job = &support::all_jobs(&db.store).await[0];
    assert_eq!((job.status, job.attempt_count), (JobStatus::Succeeded, 1));
    let (out, _) = session.run(&["export", "--batch-key", &batch]);
    assert!(out.contains("HubSpot is a good start."), "{out}");

    if db.url.starts_with("sqlite:")
        && let Ok(path) = std::env::var("PROMPTQ_FIRST_RUN_TRANSCRIPT")
    {
        std::fs::write(&path, &session.transcript).expect("write the transcript");
    }
}

/// `run` without the key: the mock's jobs are done, the openai model's wait (they do not keep
/// `run` going for ever), and `run` with the key then finishes them.
async fn run_finishes_what_it_can_and_leaves_a_keyless_models_jobs_queued(db: TestDb) {
    let fake = Fake::start().await;
    let mut session = Session::new(&db, &fake);
    session.run(&[
        "models",
        "add",
        "--name",
        "gpt",
        "--provider",
        "openai",
        "--model",
        "g",
    ]);
    session.run(&[
        "models",
        "add",
        "--name",
        "mock",
        "--provider",
        "mock",
        "--model",
        "m",
    ]);
    session.run(&["prompts", "add", "hello", "--runs", "2"]);
    let (out, err) = session.run(&["run"]);
    assert!(out.contains("4 jobs, 2 succeeded, 0 failed"), "{out}");
    assert!(
        err.contains("model 'gpt' cannot run in this process"),
        "{err}"
    );
    let gpt: Vec<_> = support::all_jobs(&db.store)
        .await
        .into_iter()
        .filter(|job| job.model_id == 1)
        .collect();
    assert!(
        gpt.iter()
            .all(|job| job.status == JobStatus::Queued && job.attempt_count == 0),
        "{gpt:?}"
    );
    assert!(fake.seen().is_empty());

    session.export("OPENAI_API_KEY", KEY);
    let (out, _) = session.run(&["run"]);
    assert!(out.contains("4 jobs, 4 succeeded, 0 failed"), "{out}");
    assert_eq!(fake.seen().len(), 2);
}
