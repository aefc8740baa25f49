//! Scratch databases: a fresh, empty database for each run of a benchmark, removed after it.

use crate::store::Store;

/// A database for one run of a benchmark.
pub struct ScratchDatabase {
    /// The URL to give the run.
    pub url: String,
    /// (server URL of the `postgres` database, name) to drop afterwards.
    server: Option<(String, String)>,
}

impl ScratchDatabase {
    /// A new empty database beside `db` (PostgreSQL: `CREATE DATABASE` on its server; SQLite:
    /// a file named after `tag`), or a file in `temp` when no database is given.
    pub async fn create(
        db: Option<&str>,
        temp: &std::path::Path,
        tag: &str,
    ) -> anyhow::Result<Self> {
        match db {
            Some(url) if url.starts_with("postgres") => {
                let name = format!("promptq_bench_{}_{tag}", std::process::id());
                let admin_url = replace_database(url, "postgres");
                let admin = Store::connect(&admin_url).await?;
                admin
                    .admin_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await?;
                admin
                    .admin_execute(&format!("CREATE DATABASE {name}"))
                    .await?;
                admin.close().await;
                Ok(ScratchDatabase {
                    url: replace_database(url, &name),
                    server: Some((admin_url, name)),
                })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = format!("{}.{tag}", url.trim_start_matches("sqlite:"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
                Ok(ScratchDatabase {
                    url: format!("sqlite:{path}"),
                    server: None,
                })
            }
            Some(other) => anyhow::bail!("--db must be sqlite:PATH or postgres://…, not {other}"),
            None => Ok(ScratchDatabase {
                url: format!("sqlite:{}", temp.join(format!("bench-{tag}.db")).display()),
                server: None,
            }),
        }
    }

    /// Drops a server's database; files are left to their temporary directory.
    pub async fn drop_if_server(&self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = &self.server {
            let admin = Store::connect(admin_url).await?;
            admin
                .admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            admin.close().await;
        }
        Ok(())
    }
}

/// `postgres://u@h:p/db?x` with another database name.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..path_start])
}
