//! The README, run as a user pastes it, so that it cannot drift from the binary.
//!
//! Its shell blocks are marked by their fence's info string (tests/README.md):
//! ```` ```sh ```` blocks run in order as one script (one terminal: a variable set in one block
//! is seen by the next), ```` ```sh serve ```` blocks run first, each in a terminal of its own
//! that blocks (the test waits for `/healthz`, and stops it at the end), and ```` ```sh build ````
//! blocks (building and testing promptq, which is what this test runs inside of) may hold only
//! `cargo` commands. Everything runs in a temporary folder with only the built binary on
//! `PATH`, a random port instead of 3000, and `OPENAI_BASE_URL` pointing at a local server that
//! speaks OpenAI's API. The commands table must agree with each command's `--help`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::fake::{Fake, Reply, completion_body};
use crate::support::{PROMPTQ, terminate};

const README: &str = include_str!("../../README.md");

/// The address the README's commands use; the test gives them a free port instead.
const README_ADDRESS: &str = "127.0.0.1:3000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Serve,
    Build,
}

#[derive(Debug)]
struct Block {
    kind: Kind,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
}

/// Every shell block of `markdown`; a shell block with an unknown marking fails the test.
fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(Option<Kind>, usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut open {
            Some((kind, start, text)) if fence => {
                if let Some(kind) = kind {
                    blocks.push(Block {
                        kind: *kind,
                        line: *start,
                        text: std::mem::take(text),
                    });
                }
                open = None;
            }
            Some((_, _, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None if fence => {
                let info: Vec<&str> = line.trim_start()[3..].split_whitespace().collect();
                let kind = match info.as_slice() {
                    ["sh"] => Some(Kind::Run),
                    ["sh", "serve"] => Some(Kind::Serve),
                    ["sh", "build"] => Some(Kind::Build),
                    [lang, ..] if ["sh", "bash", "shell", "console", "zsh"].contains(lang) => {
                        panic!(
                            "README line {}: a shell block is ```sh, ```sh serve or ```sh build, not {info:?}",
                            index + 1
                        )
                    }
                    _ => None,
                };
                open = Some((kind, index + 1, String::new()));
            }
            None => {}
        }
    }
    assert!(open.is_none(), "the README ends inside a code block");
    blocks
}

/// The commands of a block: its lines without comments, blank lines and line continuations.
fn commands(block: &Block) -> Vec<String> {
    block
        .text
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[test]
fn the_readme_marks_every_shell_block_and_builds_only_with_cargo() {
    let blocks = shell_blocks(README);
    for kind in [Kind::Run, Kind::Serve, Kind::Build] {
        assert!(blocks.iter().any(|b| b.kind == kind), "no {kind:?} block");
    }
    for block in blocks.iter().filter(|b| b.kind == Kind::Build) {
        for command in commands(block) {
            // `VAR=value cargo …` is a cargo command too.
            let program = command
                .split_whitespace()
                .find(|word| !word.contains('='))
                .unwrap_or("");
            assert_eq!(
                program, "cargo",
                "README line {}: a build block runs only cargo, not {command:?}",
                block.line
            );
        }
    }
    // One terminal blocks at a time: the commands after `serve` in its block would never run.
    for block in blocks.iter().filter(|b| b.kind == Kind::Serve) {
        let last = commands(block).pop().unwrap_or_default();
        assert!(
            last.starts_with("promptq serve") || last.starts_with("promptq worker"),
            "README line {}: a serve block ends with the command that blocks",
            block.line
        );
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A shell in `dir` with only the built binary and the system's tools on PATH.
fn shell(dir: &Path, address: &str, fake: &Fake, script: &str) -> Command {
    let bin = Path::new(PROMPTQ).parent().expect("the binary's folder");
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("HOME", dir)
        .env("BIND", address)
        .env("OPENAI_BASE_URL", fake.base_url())
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

fn script(blocks: &[&Block], address: &str) -> String {
    let mut script = String::from("set -x\n");
    for block in blocks {
        script.push_str(&format!("# README line {}\n", block.line));
        script.push_str(&block.text.replace(README_ADDRESS, address));
    }
    script
}

fn promptq_json(dir: &Path, args: &[&str]) -> Value {
    let output = Command::new(PROMPTQ)
        .args(args)
        .env_clear()
        .current_dir(dir)
        .output()
        .expect("run promptq");
    assert!(output.status.success(), "{args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Waits (generously) for the server started by a serve block to answer `/healthz`.
async fn wait_for_health(server: &mut Child, address: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{address}/healthz");
    loop {
        if let Ok(answer) = reqwest::get(&url).await
            && answer.status().is_success()
        {
            return;
        }
        if let Some(status) = server.try_wait().expect("wait") {
            panic!(
                "the serve block exited ({status:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "serve never answered {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_runs_as_written() {
    assert!(
        README.contains(README_ADDRESS),
        "the README names its address"
    );
    let blocks = shell_blocks(README);
    let dir = tempfile::tempdir().expect("temp dir");
    let address = format!("127.0.0.1:{}", free_port());
    let fake = Fake::start().await;
    fake.reply(Reply::json(
        200,
        completion_body("HubSpot is a good start.", "stop"),
    ));

    let serve: Vec<&Block> = blocks.iter().filter(|b| b.kind == Kind::Serve).collect();
    let log = dir.path().join("serve.log");
    let mut servers = Vec::new();
    for block in &serve {
        let log_file = std::fs::File::create(&log).expect("a log file");
        let mut command = shell(dir.path(), &address, &fake, &script(&[block], &address));
        command
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let mut server = command.spawn().expect("start the serve block");
        wait_for_health(&mut server, &address, &log).await;
        servers.push(server);
    }

    let run: Vec<&Block> = blocks.iter().filter(|b| b.kind == Kind::Run).collect();
    let output = shell(dir.path(), &address, &fake, &script(&run, &address))
        .output()
        .expect("run the README's commands");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the README's commands failed ({:?}):\n{stdout}\n{stderr}\nserve:\n{}",
        output.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The status call found the batch the cron call made: 2 models × 2 runs.
    assert!(stdout.contains("\"total\": 4"), "{stdout}");
    assert!(dir.path().join("promptq-demo.db").exists(), "the demo ran");
    assert!(dir.path().join("answers.jsonl").exists(), "the export ran");
    // `-v` named the database, made absolute.
    let database = format!(
        "database: sqlite:{}",
        dir.path().join("promptq.db").display()
    );
    assert!(stderr.contains(&database), "{stderr}");

    // The server finishes the batch, the openai model's calls carrying the README's key.
    let batch = promptq_json(dir.path(), &["batches", "--json"])[0]["batchKey"]
        .as_str()
        .expect("a batch")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let summary =
            promptq_json(dir.path(), &["status", "--json", "--batch-key", &batch])["summary"]
                .clone();
        if summary["succeeded"] == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never finished: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "two runs on the openai model");
    assert!(
        seen.iter()
            .all(|request| request.header("authorization") == Some("Bearer sk-your-key")),
        "{seen:?}"
    );

    for mut server in servers {
        terminate(&mut server, Duration::from_secs(30));
    }
}

/// The flags of each command the README's commands table names.
fn table_commands() -> Vec<(Vec<String>, Vec<String>)> {
    let table = README
        .split("| command | what it does |")
        .nth(1)
        .expect("the README's commands table");
    let mut found = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).expect("a first cell");
        for span in first.split('`').skip(1).step_by(2) {
            let words: Vec<&str> = span.split_whitespace().collect();
            let path: Vec<&str> = words
                .iter()
                .take_while(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
                .copied()
                .collect();
            let flags: Vec<String> = words
                .iter()
                .map(|w| w.trim_matches(|c| "[]()".contains(c)))
                .filter(|w| w.starts_with('-'))
                .map(str::to_owned)
                .collect();
            // `models add/list/edit`: one command per alternative.
            let (last, head) = path.split_last().expect("a command");
            for alternative in last.split('/') {
                let mut command: Vec<String> = head.iter().map(|w| w.to_string()).collect();
                command.push(alternative.to_owned());
                found.push((command, flags.clone()));
            }
        }
    }
    found
}

#[test]
fn the_readme_and_help_agree_on_every_flag() {
    let commands = table_commands();
    assert!(commands.len() > 20, "{commands:?}");
    for (command, flags) in commands {
        let output = Command::new(PROMPTQ)
            .args(&command)
            .arg("--help")
            .env_clear()
            .output()
            .expect("run promptq --help");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "promptq {command:?} --help: {output:?}"
        );
        for flag in flags {
            let listed = if flag.starts_with("--") {
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"))
            } else {
                help.contains(&format!("{flag}, "))
            };
            assert!(
                listed,
                "the README gives `promptq {}` {flag}, its --help does not:\n{help}",
                command.join(" ")
            );
        }
    }
}
