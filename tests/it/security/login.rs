//! The dashboard login against guessing: a process-wide budget of failed logins that parallel
//! requests cannot walk around, no short secret off loopback, and the session cookie's flags
//! over HTTPS. Also the open-mode warning at start, read off the real binary's log.

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader};

use super::web::{Raw, host, raw};
use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{Options, SECRET, Server, start_with};

/// The budget the server allows (`BURST` failed logins, then one every `REFILL`).
const BURST: usize = 10;
const REFILL: Duration = Duration::from_secs(6);

async fn login(server: &Server, secret: &str, extra: &[(&str, &str)]) -> Raw {
    let mut headers = vec![
        ("Host", host(server)),
        ("Origin", server.base.clone()),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = format!("secret={}", secret.replace('-', "%2D"));
    raw(server, "POST", "/login", &headers, &body).await
}

async fn dashboard(db: TestDb, args: &[&str]) -> Server {
    start_with(
        db,
        Options {
            dashboard: true,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Options::default()
        },
    )
    .await
}

/// 60 wrong guesses at once, as a botnet would send them: at most the budget (plus what it
/// earned back while they ran) are even compared; the rest answer 429 at once. The right
/// secret still works through the API header, and comes back to the form with time.
pub async fn parallel_guesses_are_checked_at_most_the_budget(db: TestDb) {
    let server = dashboard(db, &[]).await;
    let started = Instant::now();
    let guesses = (0..60).map(|i| {
        let server = &server;
        async move { login(server, &format!("guess-{i:04}-wrong-wrong"), &[]).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let elapsed = started.elapsed();
    let checked = answers.iter().filter(|a| a.status == 401).count();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    let earned = (elapsed.as_secs_f64() / REFILL.as_secs_f64()).ceil() as usize;
    assert_eq!(
        checked + refused,
        60,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        checked <= BURST + earned,
        "{checked} guesses were checked in {elapsed:?}; the budget is {BURST} + {earned}"
    );
    assert!(checked >= 1, "the first guesses are checked");
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("a refused guess");
    assert!(
        limited.body.contains("Too many failed logins"),
        "{limited:?}"
    );
    assert!(!limited.header("Retry-After").is_empty(), "{limited:?}");
    // The budget is spent for everyone, the right secret included; the API is unaffected.
    let right = login(&server, SECRET, &[]).await;
    assert_eq!(right.status, 429, "{right:?}");
    server.get("/api/jobs/status").await.assert_ok();
}

fn cookie_of(answer: &Raw) -> String {
    assert_eq!(answer.status, 303, "{answer:?}");
    let cookies = answer.header("Set-Cookie");
    assert_eq!(cookies.len(), 1, "{answer:?}");
    cookies[0].clone()
}

fn attributes(cookie: &str) -> Vec<String> {
    cookie.split(';').map(|a| a.trim().to_owned()).collect()
}

/// `Secure` whenever the browser came over HTTPS: APP_URL https, or a trusted proxy's
/// `X-Forwarded-Proto: https`; an untrusted header is ignored (anyone can send it).
pub async fn the_cookie_is_secure_over_https(db: TestDb) {
    let server = dashboard(db, &["--trust-proxy"]).await;
    for proto in ["https", "HTTPS", "https, http"] {
        let cookie = cookie_of(&login(&server, SECRET, &[("X-Forwarded-Proto", proto)]).await);
        let attributes = attributes(&cookie);
        for wanted in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(attributes.iter().any(|a| a == wanted), "{wanted}: {cookie}");
        }
    }
    let plain = cookie_of(&login(&server, SECRET, &[("X-Forwarded-Proto", "http")]).await);
    assert!(!attributes(&plain).iter().any(|a| a == "Secure"), "{plain}");
    let logout = raw(
        &server,
        "POST",
        "/logout",
        &[
            ("Host", &host(&server)),
            ("Origin", &server.base),
            ("X-Forwarded-Proto", "https"),
        ],
        "",
    )
    .await;
    assert!(
        attributes(&cookie_of(&logout))
            .iter()
            .any(|a| a == "Secure"),
        "{logout:?}"
    );
    // Successful logins (five above) cost nothing from the guessing budget: a person who types
    // the secret right is never locked out by doing so.
    for _ in 0..BURST {
        assert_eq!(login(&server, SECRET, &[]).await.status, 303);
    }
    assert_eq!(login(&server, "wrong", &[]).await.status, 401);
    drop(server);

    // Without TRUST_PROXY the header is anyone's to send, and is ignored.
    let untrusted = dashboard(crate::support::sqlite().await, &[]).await;
    let cookie = cookie_of(&login(&untrusted, SECRET, &[("X-Forwarded-Proto", "https")]).await);
    assert!(
        !attributes(&cookie).iter().any(|a| a == "Secure"),
        "{cookie}"
    );
    // An https APP_URL says so too, header or not.
    let behind_https = dashboard(
        crate::support::sqlite().await,
        &["--app-url", "https://q.example.com"],
    )
    .await;
    let cookie = cookie_of(&login(&behind_https, SECRET, &[]).await);
    assert!(
        attributes(&cookie).iter().any(|a| a == "Secure"),
        "{cookie}"
    );
}

on_both!(
    threads = 2;
    owned;
    parallel_guesses_are_checked_at_most_the_budget,
    the_cookie_is_secure_over_https,
);

/// A running `promptq serve` and the lines of its stderr as they come.
struct Serve {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promptq serve` with these settings, on a SQLite file in `dir`, running no jobs.
fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Serve {
    let mut command = std::process::Command::new(crate::support::PROMPTQ);
    command
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite:{}", dir.join("q.db").display()),
        )
        .env("CRON_SCHEDULE", "off")
        .env("WORKER_CONCURRENCY", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start promptq serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    Serve { child, lines }
}

impl Serve {
    /// The log until a line contains `until`, the process closes its stderr, or 30 s pass.
    fn log_until(&self, until: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(until);
                    seen.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    }

    /// The exit status, if it exits within `limit`.
    fn exits_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// A CRON_SECRET of 15 characters on 0.0.0.0 is refused before anything listens, and the
/// message names the rule, not the secret. On loopback the same secret starts.
#[test]
fn a_short_secret_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let short = "fifteen-chars-x";
    let mut server = serve(dir.path(), &[("BIND", "0.0.0.0:0"), ("CRON_SECRET", short)]);
    let log = server.log_until("listening");
    let status = server
        .exits_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("serve kept running on 0.0.0.0 with a short secret: {log:?}"));
    assert!(!status.success(), "{log:?}");
    let log = log.join("\n");
    assert!(log.contains("at least 16"), "{log}");
    assert!(
        !log.contains(short),
        "the secret leaked into the log: {log}"
    );

    let server = serve(
        dir.path(),
        &[("BIND", "127.0.0.1:0"), ("CRON_SECRET", short)],
    );
    let log = server.log_until("listening");
    assert!(log.iter().any(|l| l.contains("listening")), "{log:?}");
}

/// Open mode says so once at start; with a secret it does not.
#[test]
fn open_mode_warns_once_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serve(dir.path(), &[("BIND", "127.0.0.1:0")]);
    let log = server.log_until("listening");
    drop(server);
    let warnings = log
        .iter()
        .filter(|l| l.contains("CRON_SECRET is not set"))
        .count();
    assert_eq!(warnings, 1, "{log:?}");
    assert!(log.iter().any(|l| l.contains("WARN")), "{log:?}");

    let server = serve(
        dir.path(),
        &[("BIND", "127.0.0.1:0"), ("CRON_SECRET", SECRET)],
    );
    let log = server.log_until("listening");
    assert!(log.iter().any(|l| l.contains("listening")), "{log:?}");
    assert!(
        !log.iter().any(|l| l.contains("CRON_SECRET is not set")),
        "{log:?}"
    );
}
