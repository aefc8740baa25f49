//! The test harness of every integration binary: a fresh database per test, [`on_both!`] to run
//! a scenario on both, and the fixtures ([`seed`], [`spawn_worker`], [`summary`], a fake
//! provider, a server on 127.0.0.1:0). The binaries and how to run a part: `tests/README.md`.
//!
//! A test database is a fresh SQLite file or a fresh PostgreSQL database.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` when it is set (a server where the user may
//! create databases), else from a throwaway server this test binary starts by itself: `initdb`
//! into `/dev/shm`, `pg_ctl start` on a private unix socket (as the `postgres` user when
//! running as root, since the server refuses root), one migrated template database, and one
//! `CREATE DATABASE … TEMPLATE` per test. A watchdog process stops the server and removes its
//! directory when the test binary exits, however it exits.
//!
//! Where no PostgreSQL can be found the Postgres half of each test fails, saying how to
//! install PostgreSQL or opt out: only `PROMPTQ_SKIP_POSTGRES=1` skips it (loudly), so that a
//! green run on a fresh machine means both databases were tested. `PROMPTQ_REQUIRE_POSTGRES=1`
//! (kept for older scripts) overrides that opt-out.

#![allow(dead_code)]

#[allow(dead_code)] // the provider batch suite's
pub mod batch_api;
pub mod fake;
mod fixtures;
mod macros;
pub mod pooler;
pub mod scripted;
pub mod server;

#[allow(unused_imports)] // not every binary uses every fixture
pub use fixtures::*;
#[allow(unused_imports)]
pub(crate) use macros::on_both;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use promptq::store::Store;

/// A validated configuration for `url`, with extra `--flag value` arguments. Built from the
/// arguments alone (see [`settings_from_args`]): the developer's environment plays no part.
pub fn config(url: &str, extra: &[&str]) -> promptq::config::Config {
    let mut argv = vec!["promptq", "--database-url", url];
    if !extra.contains(&"--cron-schedule") {
        argv.extend_from_slice(&["--cron-schedule", "off"]);
    }
    argv.extend_from_slice(extra);
    settings_from_args(argv)
        .validate()
        .expect("valid test settings")
}

/// Settings parsed from `argv` with every setting's environment variable ignored, so that a
/// developer's `MAX_ATTEMPTS`, `DATABASE_URL`, `CRON_SECRET` or `OPENAI_API_KEY` cannot
/// change what an in-process test sees.
pub fn settings_from_args<I, T>(argv: I) -> promptq::config::Settings
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{Args, FromArgMatches};
    let command = promptq::config::Settings::augment_args(clap::Command::new("promptq"))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(argv)
        .expect("valid test arguments");
    promptq::config::Settings::from_arg_matches(&matches).expect("test settings")
}

/// Sends SIGTERM to `child` and asserts that it exits cleanly (status 0) within `within`;
/// kills it and fails the test otherwise.
pub fn terminate(child: &mut std::process::Child, within: std::time::Duration) {
    let sent = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "SIGTERM could not be sent: {sent:?}");
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the process") {
            assert!(
                status.success(),
                "the process exited with {status:?} after SIGTERM"
            );
            return;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A store on a database that lives as long as this value.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh, migrated SQLite database in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("promptq.db").display());
    let store = Store::open(&url).await.expect("open sqlite store");
    TestDb {
        store,
        url,
        _dir: Some(dir),
    }
}

/// A fresh, migrated PostgreSQL database, or `None` (with a loud message) where no server
/// can be had and the run opted out with `PROMPTQ_SKIP_POSTGRES=1`; otherwise that fails.
pub async fn postgres() -> Option<TestDb> {
    let server = match pg_server() {
        Ok(server) => server,
        Err(reason) => {
            no_postgres("the PostgreSQL half of this test", &reason);
            return None;
        }
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = Store::connect(&server.url_for("postgres"))
        .await
        .expect("connect to the test server");
    let Store::Postgres(pg) = &admin else {
        unreachable!("a postgres URL gives a postgres store")
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {} STRATEGY FILE_COPY",
        server.template
    )))
    .execute(pg.pool())
    .await
    .expect("create the test database from the template");
    admin.close().await;
    let url = server.url_for(&name);
    let store = Store::connect(&url)
        .await
        .expect("connect to the test database");
    Some(TestDb {
        store,
        url,
        _dir: None,
    })
}

/// No PostgreSQL for `what`: fails the test with how to get one, unless the run opted out
/// (`PROMPTQ_SKIP_POSTGRES=1`, and not `PROMPTQ_REQUIRE_POSTGRES=1`), which skips it loudly.
fn no_postgres(what: &str, reason: &str) {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    if set("PROMPTQ_SKIP_POSTGRES") && !set("PROMPTQ_REQUIRE_POSTGRES") {
        eprintln!("\n!!! SKIPPING {what} (PROMPTQ_SKIP_POSTGRES=1): {reason}\n");
        return;
    }
    panic!(
        "no PostgreSQL for {what}: {reason}\n\
         The tests start a throwaway PostgreSQL server of their own; they need its programs:\n\
         \x20 install them: apt-get install -y postgresql (Debian/Ubuntu; any version under /usr/lib/postgresql/*/bin)\n\
         \x20 or use a server of yours: TEST_DATABASE_URL=postgres://USER@HOST/postgres (USER may create databases)\n\
         \x20 or skip the PostgreSQL half explicitly: PROMPTQ_SKIP_POSTGRES=1 cargo test"
    );
}

/// A running server and the migrated template database that tests copy.
pub struct PgServer {
    /// URL with `{db}` where the database name goes.
    url_pattern: String,
    template: String,
}

impl PgServer {
    pub fn url_for(&self, database: &str) -> String {
        self.url_pattern.replace("{db}", database)
    }
}

/// The server of this test binary, started on first use.
pub fn pg_server() -> Result<&'static PgServer, String> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            // Its own thread and runtime: this may be called from inside a test's runtime.
            std::thread::spawn(start_server)
                .join()
                .unwrap_or_else(|_| Err("starting PostgreSQL panicked".to_owned()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn start_server() -> Result<PgServer, String> {
    let url_pattern = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => pattern_from_url(&url)?,
        _ => start_throwaway_server()?,
    };
    let template = format!("tpl_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime.block_on(async {
        let admin = Store::connect(&url_pattern.replace("{db}", "postgres"))
            .await
            .map_err(|err| format!("cannot connect to PostgreSQL: {err}"))?;
        let Store::Postgres(pg) = &admin else {
            return Err("not a postgres URL".to_owned());
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {template}")))
            .execute(pg.pool())
            .await
            .map_err(|err| format!("cannot create the template database: {err}"))?;
        admin.close().await;
        let store = Store::open(&url_pattern.replace("{db}", &template))
            .await
            .map_err(|err| format!("cannot migrate the template database: {err}"))?;
        store.close().await;
        Ok(())
    })?;
    Ok(PgServer {
        url_pattern,
        template,
    })
}

/// `postgres://user@host/db?x` → `postgres://user@host/{db}?x`.
fn pattern_from_url(url: &str) -> Result<String, String> {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = before_query
        .find("://")
        .ok_or("TEST_DATABASE_URL is not a URL")?
        + 3;
    let path_start = before_query[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(before_query.len());
    Ok(format!("{}/{{db}}{query}", &before_query[..path_start]))
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no /usr/lib/postgresql (PostgreSQL server not installed)".to_owned())?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    candidates.sort_by_key(|bin| {
        bin.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .pop()
        .ok_or_else(|| "no initdb/pg_ctl under /usr/lib/postgresql/*/bin".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as `postgres` when we are root.
fn server_command(program: &Path, as_postgres: bool) -> Command {
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // The server must not inherit the test binary's stdout: the test runner waits for EOF.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("{what}: cannot run: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn start_throwaway_server() -> Result<String, String> {
    start_server_in("main").map(|server| server.url_pattern)
}

/// A server of its own, for a test that stops and restarts it.
pub struct DedicatedPg {
    url_pattern: String,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    options: String,
    as_postgres: bool,
}

impl DedicatedPg {
    /// A migrated database `db` on this server.
    pub async fn database(&self, db: &str) -> String {
        let admin = Store::connect(&self.url_pattern.replace("{db}", "postgres"))
            .await
            .expect("connect to the dedicated server");
        let Store::Postgres(pg) = &admin else {
            unreachable!()
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(pg.pool())
            .await
            .expect("create a database");
        admin.close().await;
        self.url_pattern.replace("{db}", db)
    }

    /// `pg_ctl stop -m fast`: every connection is cut.
    pub fn stop(&self) {
        let mut stop = server_command(&self.bin.join("pg_ctl"), self.as_postgres);
        stop.args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data);
        run(stop, "pg_ctl stop").expect("stop the dedicated server");
    }

    pub fn start(&self) {
        let mut start = server_command(&self.bin.join("pg_ctl"), self.as_postgres);
        start
            .args(["start", "-w", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(&self.options);
        run(start, "pg_ctl start").expect("start the dedicated server");
    }
}

/// A dedicated throwaway server named `name`, or `None` (loudly) where none can be had and the
/// run opted out with `PROMPTQ_SKIP_POSTGRES=1`; otherwise that fails.
pub fn dedicated_postgres(name: &str) -> Option<DedicatedPg> {
    match start_server_in(name) {
        Ok(server) => Some(server),
        Err(reason) => {
            no_postgres("this PostgreSQL test", &reason);
            None
        }
    }
}

fn start_server_in(name: &str) -> Result<DedicatedPg, String> {
    let bin = pg_bin_dir()?;
    let as_postgres = is_root();
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("promptq-pg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir:?}: {err}"))?;
    if as_postgres {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:postgres").arg(&dir);
                c
            },
            "chown the test server directory",
        )?;
    }
    let data = dir.join("data");
    let mut initdb = server_command(&bin.join("initdb"), as_postgres);
    initdb
        .arg("--no-sync")
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
        .arg("-D")
        .arg(&data);
    run(initdb, "initdb")?;
    let options = format!(
        "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let server = DedicatedPg {
        url_pattern: format!(
            "postgres://postgres@localhost/{{db}}?host={}",
            dir.display()
        ),
        log: dir.join("server.log"),
        bin,
        data,
        options,
        as_postgres,
    };
    let mut start = server_command(&server.bin.join("pg_ctl"), as_postgres);
    start
        .args(["start", "-w", "-D"])
        .arg(&server.data)
        .arg("-l")
        .arg(&server.log)
        .arg("-o")
        .arg(&server.options);
    run(start, "pg_ctl start")?;
    spawn_watchdog(&server.bin, &server.data, &dir, as_postgres);
    Ok(server)
}

/// Stops the server and removes its directory once this process is gone.
fn spawn_watchdog(bin: &Path, data: &Path, dir: &Path, as_postgres: bool) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        format!(
            "runuser -u postgres -- {} stop -D {} -m immediate",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "{} stop -D {} -m immediate",
            pg_ctl.display(),
            data.display()
        )
    };
    after_exit(&format!("{stop} >/dev/null 2>&1; rm -rf {}", dir.display()));
}

/// Runs the shell command `then` once this process is gone, however it exits.
fn after_exit(then: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {then}",
        pid = std::process::id(),
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
