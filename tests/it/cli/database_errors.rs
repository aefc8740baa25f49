//! Errors that name what to fix: a database that cannot be opened is named with the cause, a
//! refused PostgreSQL is reported at once, and every command can say which database it used.

use std::time::{Duration, Instant};

use super::Promptq;

#[test]
fn a_sqlite_file_in_a_missing_directory_is_named_with_the_cause() {
    let promptq = Promptq::on("sqlite:/nonexistent/dir/x.db");
    let err = promptq.fails(&["status"]);
    assert!(
        err.contains("sqlite:/nonexistent/dir/x.db: directory does not exist"),
        "{err}"
    );
    assert!(!std::path::Path::new("/nonexistent").exists());
}

#[test]
fn a_relative_sqlite_path_is_shown_absolute_at_v_and_in_errors() {
    let promptq = Promptq::on("sqlite:queue.db");
    let absolute = format!("sqlite:{}", promptq.path("queue.db").display());
    let output = promptq.run(&["-v", "status"]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("database: {absolute}")),
        "{stderr}"
    );
    let migrated = promptq.ok(&["migrate"]);
    assert_eq!(migrated.trim(), format!("{absolute} is up to date"));
    // Without -v nothing is said on success.
    let quiet = promptq.run(&["status"]);
    assert!(quiet.stderr.is_empty(), "{quiet:?}");

    let err = promptq.fails(&["jobs", "retry", "--job-id", "999999"]);
    assert!(err.contains("job 999999 not found"), "{err}");
    assert!(err.contains(&format!("(database: {absolute})")), "{err}");
}

#[test]
fn a_refused_postgres_is_reported_at_once_without_the_password() {
    let promptq = Promptq::on("postgres://app:s3cret@127.0.0.1:1/queue");
    let started = Instant::now();
    let err = promptq.fails(&["status"]);
    // The pool alone would retry a refused connection for 5 s before giving up.
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("connection refused at 127.0.0.1:1"), "{err}");
    assert!(err.contains("postgres://app@127.0.0.1:1/queue"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
