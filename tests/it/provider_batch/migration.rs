//! Migration 0011 (the `submitted` state) on a database that already holds jobs: SQLite
//! rebuilds `prompt_jobs`, PostgreSQL swaps its CHECK; either way every row, index and
//! constraint is as it was, and only the new state is newly allowed.

use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Row};

use promptq::store::Store;

/// The columns of `prompt_jobs` as migration 0010 left them, in order.
const COLUMNS: &str = "id, prompt_id, model_id, run_index, batch_key, status, error_message, \
    attempt_count, max_attempts, scheduled_for, next_attempt_at, lease_expires_at, started_at, \
    finished_at, created_at, rate_limited_count, prompt_version_id, gen_params, worker_id";

/// A migrator of the shipped migrations of `backend` up to `version`.
async fn migrations_up_to(backend: &str, version: i64) -> Migrator {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&source).expect("the migrations") {
        let path = entry.expect("a migration").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let number: i64 = name
            .split('_')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if number >= 1 && number <= version {
            std::fs::copy(&path, dir.path().join(name)).expect("copy a migration");
        }
    }
    Migrator::new(dir.path())
        .await
        .expect("read the migrations")
}

/// Jobs in every state, an attempt, an answer and a provider batch link, at 0010's schema.
/// `t` turns milliseconds since the epoch into the backend's time literal.
fn seed_sql(t: &dyn Fn(i64) -> String) -> Vec<String> {
    let jobs = [
        (
            "0", "queued", "0", "NULL", "NULL", "NULL", "0", "NULL", "NULL",
        ),
        (
            "1",
            "processing",
            "1",
            "5000",
            "2000",
            "NULL",
            "0",
            "'{\"temperature\":0.1}'",
            "7",
        ),
        (
            "2",
            "succeeded",
            "1",
            "NULL",
            "2000",
            "3000",
            "0",
            "NULL",
            "NULL",
        ),
        (
            "3", "failed", "3", "NULL", "2000", "3000", "1", "NULL", "NULL",
        ),
        (
            "4", "skipped", "0", "NULL", "NULL", "3000", "0", "NULL", "NULL",
        ),
    ];
    let time = |v: &str| {
        if v == "NULL" {
            v.to_owned()
        } else {
            t(v.parse().unwrap())
        }
    };
    let mut sql = vec![
        format!(
            "INSERT INTO models (id, name, provider, model, params, active, created_at, updated_at)
             VALUES (1, 'm', 'openai', 'gpt-4o-mini', '{{}}', TRUE, {0}, {0})",
            t(0)
        ),
        format!(
            "INSERT INTO prompts (id, text, runs, active, created_at, updated_at)
             VALUES (1, 'q', 5, TRUE, {0}, {0})",
            t(0)
        ),
    ];
    for (run, status, attempts, lease, started, finished, limited, params, worker) in jobs {
        sql.push(format!(
            "INSERT INTO prompt_jobs (prompt_id, model_id, run_index, batch_key, status,
                error_message, attempt_count, max_attempts, scheduled_for, next_attempt_at,
                lease_expires_at, started_at, finished_at, created_at, rate_limited_count,
                prompt_version_id, gen_params, worker_id)
             VALUES (1, 1, {run}, '2025-01-01', '{status}', 'was {status}', {attempts}, 3,
                {}, {}, {}, {}, {}, {}, {limited}, NULL, {params}, {worker})",
            t(1000),
            t(1000),
            time(lease),
            time(started),
            time(finished),
            t(1000),
        ));
    }
    sql.push(format!(
        "INSERT INTO job_attempts (job_id, attempt, finished_at, outcome, error_message)
         VALUES (4, 1, {}, 'failed', 'boom')",
        t(3000)
    ));
    sql.push(format!(
        "INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text,
            latency_ms, created_at) VALUES (3, 1, 1, '2025-01-01', 2, 'an answer', 5, {})",
        t(3000)
    ));
    sql.push("INSERT INTO provider_batch_jobs (job_id, attempt, batch_id) VALUES (2, 1, 1)".into());
    sql
}

/// The first column of each row `sql` answers, as text.
macro_rules! texts {
    ($pool:expr, $sql:expr) => {
        sqlx::query(AssertSqlSafe($sql.to_owned()))
            .fetch_all($pool)
            .await
            .expect("read the database")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<String>>()
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_row_and_index() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open");
    migrations_up_to("sqlite", 10)
        .await
        .run(&pool)
        .await
        .expect("migrate to 0010");
    for statement in seed_sql(&|ms| ms.to_string()) {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("seed");
    }
    let rows = format!("SELECT json_array({COLUMNS}) FROM prompt_jobs ORDER BY id");
    // Every object but the rebuilt table's own definition (its CHECK is what changes), and
    // each index of the table with whether it is unique and partial.
    let schema = "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master
         WHERE name NOT IN ('prompt_jobs', '_sqlx_migrations')
         UNION ALL SELECT 'index ' || name || ' ' || \"unique\" || origin || partial
         FROM pragma_index_list('prompt_jobs')
         UNION ALL SELECT 'count ' || (SELECT count(*) FROM job_attempts) || ' '
            || (SELECT count(*) FROM responses) || ' ' || (SELECT count(*) FROM provider_batch_jobs)
         ORDER BY 1";
    // What must not change: the jobs' rows, the table's indexes, every other object.
    let before = (texts!(&pool, rows), texts!(&pool, schema));
    // Migration 0011 alone: later ones add tables and indexes on purpose.
    migrations_up_to("sqlite", 11)
        .await
        .run(&pool)
        .await
        .expect("migrate to 0011");
    pool.close().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .expect("reopen");
    let after = (texts!(&pool, rows), texts!(&pool, schema));
    let url = format!("sqlite:{}", path.display());
    let store = Store::open(&url).await.expect("migrate to the latest");
    store.close().await;
    assert_eq!(before.0.len(), 5);
    assert_eq!(before, after);
    let checks: Vec<String> = sqlx::query_scalar("SELECT * FROM pragma_integrity_check")
        .fetch_all(&pool)
        .await
        .expect("integrity check");
    assert_eq!(checks, ["ok"]);
    sqlx::query("UPDATE prompt_jobs SET status = 'submitted' WHERE run_index = 1")
        .execute(&pool)
        .await
        .expect("the new state is allowed");
    sqlx::query("UPDATE prompt_jobs SET status = 'lost' WHERE run_index = 1")
        .execute(&pool)
        .await
        .expect_err("an unknown state is still refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_row_and_index() {
    use sqlx::postgres::PgPoolOptions;
    let server = match crate::support::pg_server() {
        Ok(server) => server,
        Err(reason) => {
            let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
            assert!(
                set("PROMPTQ_SKIP_POSTGRES") && !set("PROMPTQ_REQUIRE_POSTGRES"),
                "no PostgreSQL: {reason}"
            );
            eprintln!("SKIPPING the PostgreSQL migration test: {reason}");
            return;
        }
    };
    let name = format!("mig11_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&server.url_for("postgres"))
        .await
        .expect("connect to the test server");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0"
    )))
    .execute(&admin)
    .await
    .expect("an empty database");
    let url = server.url_for(&name);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect");
    migrations_up_to("postgres", 10)
        .await
        .run(&pool)
        .await
        .expect("migrate to 0010");
    let time = |ms: i64| format!("to_timestamp({ms} / 1000.0)");
    for statement in seed_sql(&time) {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("seed");
    }
    let rows = format!(
        "SELECT row_to_json(r)::text FROM (SELECT {COLUMNS} FROM prompt_jobs ORDER BY id) r"
    );
    let schema = "SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes
            WHERE schemaname = 'public'
         UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' '
            || CASE WHEN conname = 'prompt_jobs_status_check' THEN ''
                    ELSE pg_get_constraintdef(oid) END
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION ALL SELECT 'column ' || table_name || ' ' || column_name || ' ' || data_type
            || ' ' || ordinal_position FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'
         UNION ALL SELECT 'count ' || (SELECT count(*) FROM job_attempts) || ' '
            || (SELECT count(*) FROM responses) || ' ' || (SELECT count(*) FROM provider_batch_jobs)
         ORDER BY 1";
    let before = (texts!(&pool, rows), texts!(&pool, schema));

    // Migration 0011 alone: later ones change indexes on purpose (0013: a range index on the
    // answers' batch key).
    migrations_up_to("postgres", 11)
        .await
        .run(&pool)
        .await
        .expect("migrate to 0011");
    let after = (texts!(&pool, rows), texts!(&pool, schema));
    assert_eq!(before.0.len(), 5);
    assert_eq!(before, after);
    let store = Store::open(&url).await.expect("migrate to the latest");
    store.close().await;
    sqlx::query("UPDATE prompt_jobs SET status = 'submitted' WHERE run_index = 1")
        .execute(&pool)
        .await
        .expect("the new state is allowed");
    sqlx::query("UPDATE prompt_jobs SET status = 'lost' WHERE run_index = 1")
        .execute(&pool)
        .await
        .expect_err("an unknown state is still refused");
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop the database");
}
