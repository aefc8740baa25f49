//! A PgBouncer in transaction mode in front of the test server, for the tests of pooled
//! PostgreSQL: started on first use, by the test binaries that need one.
//!
//! Its pool is kept small (a few server connections per database) so that clients share
//! server connections from one transaction to the next, as they do behind a managed pooler.
//! It is configured as such a pooler is by default: no `ignore_startup_parameters`, so a
//! client that sends a startup parameter the pooler does not know is refused. It listens on a
//! private unix socket; it refuses to run as root, so it runs as `postgres` when we are root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use promptq::store::Store;

use super::{TestDb, is_root, no_postgres, pg_server, run};

/// The port in the name of the pooler's socket file.
const PORT: u16 = 6432;

pub struct Pooler {
    dir: PathBuf,
}

impl Pooler {
    /// The URL of `database` through the pooler, with the hint that says it is pooled.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/{database}?host={}&pgbouncer=true",
            self.dir.display()
        )
    }

    /// The same, without the hint: what a user who does not know about the pooler would set.
    pub fn bare_url_for(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/{database}?host={}",
            self.dir.display()
        )
    }
}

/// The pooler of this test binary, or `None` (loudly) where none can be had and the run opted
/// out of PostgreSQL with `PROMPTQ_SKIP_POSTGRES=1`; otherwise that fails.
pub fn pooler() -> Option<&'static Pooler> {
    static POOLER: OnceLock<Result<Pooler, String>> = OnceLock::new();
    match POOLER.get_or_init(start) {
        Ok(pooler) => Some(pooler),
        Err(reason) => {
            no_postgres("this pooled-PostgreSQL test", reason);
            None
        }
    }
}

/// A fresh, migrated database (made on the server directly) with a store that reaches it
/// through the pooler; the [`TestDb`]'s URL is the pooled one.
pub async fn pooled_postgres() -> Option<TestDb> {
    let direct = super::postgres().await?;
    let pooler = pooler()?;
    let database = database_of(&direct.url);
    direct.store.close().await;
    let url = pooler.url_for(&database);
    let store = Store::connect(&url)
        .await
        .expect("connect to the test database through the pooler");
    Some(TestDb {
        store,
        url,
        _dir: None,
    })
}

/// The database name in a test URL (`…/NAME?…`).
pub fn database_of(url: &str) -> String {
    let before_query = url.split('?').next().unwrap_or(url);
    before_query
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The direct URL of `database` on the test server.
pub fn direct_url_for(database: &str) -> String {
    pg_server()
        .expect("the test server runs once a pooled database exists")
        .url_for(database)
}

fn start() -> Result<Pooler, String> {
    let server = pg_server()?;
    let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .ok_or("no pgbouncer (install it: apt-get install -y pgbouncer)")?;
    let target: sqlx::postgres::PgConnectOptions = server
        .url_for("postgres")
        .parse()
        .map_err(|err| format!("the test server's URL: {err}"))?;
    let host = match target.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => target.get_host().to_owned(),
    };
    let as_postgres = is_root();
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("promptq-pgbouncer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir:?}: {err}"))?;
    let config = format!(
        "[databases]\n* = host={host} port={port} user={user}\n\n\
         [pgbouncer]\nlisten_addr =\nlisten_port = {PORT}\nunix_socket_dir = {dir}\n\
         auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
         default_pool_size = 4\nmax_client_conn = 1000\nadmin_users = postgres\n\
         logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
        port = target.get_port(),
        user = target.get_username(),
        dir = dir.display(),
    );
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|err| format!("cannot write {name}: {err}"))
    };
    write("pgbouncer.ini", &config)?;
    write(
        "userlist.txt",
        &format!("\"{}\" \"\"\n", target.get_username()),
    )?;
    if as_postgres {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(&dir);
        run(chown, "chown the pooler's directory")?;
    }
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&binary);
        c
    } else {
        Command::new(&binary)
    };
    command
        .arg("-d")
        .arg(dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run(command, "pgbouncer -d")?;
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            return Err(format!("pgbouncer did not open its socket: {log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    spawn_watchdog(&dir);
    Ok(Pooler { dir })
}

/// Stops the pooler and removes its directory once this process is gone.
fn spawn_watchdog(dir: &Path) {
    super::after_exit(&format!(
        "kill $(cat {dir}/pgbouncer.pid) >/dev/null 2>&1; sleep 0.5; rm -rf {dir}",
        dir = dir.display()
    ));
}
