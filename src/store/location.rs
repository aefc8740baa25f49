//! Where a database URL points, said for people: the absolute SQLite file or the PostgreSQL
//! server, never a password; and connect errors that name that place and their cause.

use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::StoreError;

/// `sqlite:/absolute/path` or `postgres://user@host:port/db` (a socket directory as `?host=`),
/// without the password: what a command prints as the database it used.
pub fn describe(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return format!("sqlite:{}", sqlite_file(path).display());
    }
    // Read as the store reads it: the `pgbouncer` hint is promptq's, not sqlx's (which would
    // warn that it ignores it).
    match super::postgres::connect_options(url) {
        Ok((options, false)) => describe_postgres(&options),
        Ok((options, true)) => {
            let shown = describe_postgres(&options);
            let joint = if shown.contains('?') { '&' } else { '?' };
            format!("{shown}{joint}pgbouncer=true")
        }
        // Nothing of an unreadable URL is shown: it may hold a password.
        Err(_) => "postgres://(a URL that cannot be read)".to_owned(),
    }
}

/// The file a `sqlite:` URL's path names, made absolute against the current directory so that
/// a command run in another folder shows which file it opened.
pub(super) fn sqlite_file(path: &str) -> PathBuf {
    let path = Path::new(path.strip_prefix("//").unwrap_or(path));
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// PostgreSQL's port, left out of a socket's description (its file is `.s.PGSQL.5432`).
const DEFAULT_PORT: u16 = 5432;

fn describe_postgres(options: &PgConnectOptions) -> String {
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    match options.get_socket() {
        Some(dir) if options.get_port() == DEFAULT_PORT => format!(
            "postgres://{user}@localhost/{database}?host={}",
            dir.display()
        ),
        Some(dir) => format!(
            "postgres://{user}@localhost:{}/{database}?host={}",
            options.get_port(),
            dir.display()
        ),
        None => format!(
            "postgres://{user}@{}:{}/{database}",
            options.get_host(),
            options.get_port()
        ),
    }
}

/// The address a connection goes to: `host:port`, or the unix socket's path.
fn address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!("{}/.s.PGSQL.{}", dir.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// Refuses a SQLite file whose directory is missing, before SQLite says only "unable to open
/// database file".
pub(super) fn check_sqlite(path: &str) -> Result<(), StoreError> {
    let file = sqlite_file(path);
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        return Err(StoreError::InvalidUrl(format!(
            "sqlite:{}: directory does not exist (create {} first)",
            file.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// One connection attempt to the PostgreSQL server of `url`, so that a server that is down is
/// reported at once ("connection refused at HOST:PORT"): the pool would retry a refused
/// connection until its acquire timeout.
pub(super) async fn probe_postgres(url: &str) -> Result<(), StoreError> {
    let (options, _) = super::postgres::connect_options(url)
        .map_err(|err| StoreError::InvalidUrl(format!("DATABASE_URL is {err}")))?;
    let label = describe_postgres(&options);
    match options.connect().await {
        Ok(connection) => {
            // Closing politely is a courtesy; the probe has already answered.
            let _ = connection.close().await;
            Ok(())
        }
        Err(sqlx::Error::Io(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(StoreError::Unavailable(format!(
                "{label}: connection refused at {} (is PostgreSQL running there?)",
                address(&options)
            )))
        }
        Err(err) => Err(named(&label, err.into())),
    }
}

/// `err`, with the database it happened on in front.
pub(super) fn named(label: &str, err: StoreError) -> StoreError {
    match err {
        StoreError::InvalidUrl(detail) => StoreError::InvalidUrl(format!("{label}: {detail}")),
        StoreError::Unavailable(detail) => StoreError::Unavailable(format!("{label}: {detail}")),
        StoreError::Database(err) => StoreError::Unavailable(format!("{label}: {err}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn a_password_is_never_described() {
        let shown = describe("postgres://app:s3cret@db.example:6543/queue?sslmode=require");
        assert_eq!(shown, "postgres://app@db.example:6543/queue");
        assert_eq!(
            describe("postgresql://u:p@localhost/d?host=/run/pg"),
            "postgres://u@localhost/d?host=/run/pg"
        );
    }

    #[test]
    fn a_pooler_s_port_and_the_pooled_hint_are_described() {
        assert_eq!(
            describe("postgres://u@localhost:6433/d?host=/run/pgb&pgbouncer=true"),
            "postgres://u@localhost:6433/d?host=/run/pgb&pgbouncer=true"
        );
        assert_eq!(
            describe("postgres://u:p@pooler.example:6432/d?pgbouncer=true&sslmode=require"),
            "postgres://u@pooler.example:6432/d?pgbouncer=true"
        );
    }

    #[test]
    fn a_relative_sqlite_path_is_made_absolute() {
        let shown = describe("sqlite:data/x.db");
        let cwd = std::env::current_dir().expect("a current directory");
        assert_eq!(shown, format!("sqlite:{}", cwd.join("data/x.db").display()));
    }
}
