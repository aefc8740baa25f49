//! The test command on a machine without PostgreSQL: the PostgreSQL half fails and says how to
//! install PostgreSQL or opt out, and only `PROMPTQ_SKIP_POSTGRES=1` turns that into a skip.
//! Judged by running one PostgreSQL test of this very binary in a child process whose only
//! server refuses connections.

use std::process::{Command, Output};

/// A port nothing listens on: every connection is refused at once.
const REFUSED: &str = "postgres://postgres@127.0.0.1:1/postgres";

/// Only run by [`the_postgres_half_fails_without_postgres_unless_skipped`], in a child.
#[tokio::test]
#[ignore = "a probe run by the_postgres_half_fails_without_postgres_unless_skipped"]
async fn probe_a_postgres_database() {
    if let Some(db) = crate::support::postgres().await {
        db.store.close().await;
    }
}

fn probe(env: &[(&str, &str)]) -> (Output, String) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "cli::fresh_machine::probe_a_postgres_database",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("TEST_DATABASE_URL", REFUSED)
        .env_remove("PROMPTQ_SKIP_POSTGRES")
        .env_remove("PROMPTQ_REQUIRE_POSTGRES")
        .envs(env.iter().copied());
    let output = command.output().expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn the_postgres_half_fails_without_postgres_unless_skipped() {
    let (output, text) = probe(&[]);
    assert!(
        !output.status.success(),
        "must fail, not pass as a no-op:\n{text}"
    );
    assert!(text.contains("1 failed"), "{text}");
    for hint in [
        "connection refused at 127.0.0.1:1",
        "apt-get install -y postgresql",
        "TEST_DATABASE_URL",
        "PROMPTQ_SKIP_POSTGRES=1",
    ] {
        assert!(text.contains(hint), "the failure names {hint:?}:\n{text}");
    }

    let (output, text) = probe(&[("PROMPTQ_SKIP_POSTGRES", "1")]);
    assert!(
        output.status.success(),
        "an explicit opt-out skips:\n{text}"
    );
    assert!(text.contains("SKIPPING"), "and says so:\n{text}");

    // CI's setting wins over an opt-out left in the environment.
    let (output, text) = probe(&[
        ("PROMPTQ_SKIP_POSTGRES", "1"),
        ("PROMPTQ_REQUIRE_POSTGRES", "1"),
    ]);
    assert!(!output.status.success(), "required means required:\n{text}");
}
