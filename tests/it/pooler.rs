//! PostgreSQL behind a transaction-mode pooler (a PgBouncer, as serverless and managed
//! PostgreSQL hand it out): workers, `serve`, `migrate` and the CLI through it.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use promptq::app::App;
use promptq::store::Store;
use serde_json::{Value, json};

use crate::support::{self, PROMPTQ, pooler};

/// Two `promptq worker` processes drain one batch through the pooler, each job exactly once:
/// one knows the URL is pooled from its `pgbouncer=true` hint (and polls), the other from
/// `DATABASE_DIRECT_URL` (and listens there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_one_batch_with_no_job_run_twice() {
    let Some(db) = pooler::pooled_postgres().await else {
        return;
    };
    let Some(pooler) = pooler::pooler() else {
        return;
    };
    let models = [
        support::mock_model("a", "mock-a", json!({"latencyMs": 5})),
        support::mock_model("b", "mock-b", json!({"latencyMs": 5})),
    ];
    support::seed(&db.store, &models, 50, 2).await;
    let app = App::with_store(support::config(&db.url, &[]), db.store.clone()).expect("an app");
    let report = app
        .trigger_cron(None)
        .await
        .expect("enqueue through the pooler");
    assert_eq!(report.jobs_created, 200);

    let database = pooler::database_of(&db.url);
    let direct = pooler::direct_url_for(&database);
    let bare = pooler.bare_url_for(&database);
    let mut hinted = support::spawn_worker(&db.url, &[("WORKER_CONCURRENCY", "8")]);
    let mut told = support::spawn_worker(
        &bare,
        &[
            ("WORKER_CONCURRENCY", "8"),
            ("DATABASE_DIRECT_URL", &direct),
        ],
    );
    support::wait_until_done(&db.store, Duration::from_secs(90)).await;
    support::terminate(&mut hinted, Duration::from_secs(20));
    support::terminate(&mut told, Duration::from_secs(20));

    let summary = support::summary(&db.store).await;
    assert_eq!(
        (summary.total, summary.succeeded),
        (200, 200),
        "{summary:?}"
    );
    let jobs = support::all_jobs(&db.store).await;
    let twice: Vec<_> = jobs.iter().filter(|job| job.attempt_count != 1).collect();
    assert!(twice.is_empty(), "jobs claimed more than once: {twice:?}");
    let responses = support::all_responses(&db.store).await;
    let answered: HashSet<i64> = responses.iter().map(|r| r.job_id).collect();
    assert_eq!((responses.len(), answered.len()), (200, 200));
}

/// `promptq serve` through the pooler: `/api/cron` enqueues (and says so, twice), its workers
/// run the batch, and `/api/jobs/status` reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_cron_and_status_and_runs_the_batch() {
    let Some(db) = pooler::pooled_postgres().await else {
        return;
    };
    support::seed(
        &db.store,
        &[support::mock_model("m", "mock-m", json!({}))],
        3,
        2,
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = Command::new(PROMPTQ)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("CRON_SECRET", support::server::SECRET)
        .env("CRON_SCHEDULE", "off")
        .env("WORKER_CONCURRENCY", "4")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start promptq serve");
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("Authorization", support::server::SECRET)
            .send()
    };
    support::wait_until("serve to answer", Duration::from_secs(30), async || {
        get("/healthz").await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    let cron = get("/api/cron").await.expect("GET /api/cron");
    assert_eq!(cron.status(), 200);
    let cron: Value = cron.json().await.expect("JSON");
    assert_eq!(cron["jobsCreated"], json!(6), "{cron}");
    let batch = cron["batchKey"].as_str().expect("batchKey").to_owned();
    let again: Value = get("/api/cron")
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(again["jobsCreated"], json!(0), "{again}");

    let status_path = format!("/api/jobs/status?batchKey={batch}");
    support::wait_until("the batch to finish", Duration::from_secs(30), async || {
        let Ok(answer) = get(&status_path).await else {
            return false;
        };
        let status: Value = answer.json().await.unwrap_or_default();
        status["summary"]["succeeded"] == json!(6)
    })
    .await;
    support::terminate(&mut serve, Duration::from_secs(20));
}

/// `promptq migrate` through the pooler migrates a new database, again finds nothing to do,
/// agrees with sqlx's migrator on the direct URL, and leaves no advisory lock behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_through_the_pooler_leaves_no_lock() {
    let Some(pooler) = pooler::pooler() else {
        return;
    };
    let database = format!("m_{}", std::process::id());
    let direct = pooler::direct_url_for(&database);
    let admin = Store::connect(&pooler::direct_url_for("postgres"))
        .await
        .expect("the test server");
    admin
        .admin_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("an empty database");
    admin.close().await;

    let migrate = |url: &str, direct: Option<&str>| {
        let mut command = Command::new(PROMPTQ);
        command.arg("migrate").env_clear().env("DATABASE_URL", url);
        if let Some(direct) = direct {
            command.env("DATABASE_DIRECT_URL", direct);
        }
        command.output().expect("run promptq migrate")
    };
    for (url, direct) in [
        (pooler.url_for(&database), None),
        (pooler.url_for(&database), None),
        (pooler.bare_url_for(&database), Some(direct.as_str())),
    ] {
        let out = migrate(&url, direct);
        assert!(
            out.status.success(),
            "migrate {url} (direct: {direct:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let store = Store::connect(&direct)
        .await
        .expect("the database, directly");
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    // This database's locks only: workers of other tests hold theirs on the same server.
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pg.pool())
    .await
    .expect("pg_locks");
    assert_eq!(locks, 0, "an advisory lock outlived its migration");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pg.pool())
        .await
        .expect("the migrations table");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("the migrations")
        .count();
    assert_eq!(applied as usize, files);
    store.close().await;
}

/// A database error reaches the CLI's user with its cause, not as "internal error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_the_database_error() {
    let Some(db) = pooler::pooled_postgres().await else {
        return;
    };
    let direct = pooler::direct_url_for(&pooler::database_of(&db.url));
    let store = Store::connect(&direct)
        .await
        .expect("the database, directly");
    store
        .admin_execute("ALTER TABLE prompt_jobs RENAME TO prompt_jobs_elsewhere")
        .await
        .expect("hide the jobs table");
    store.close().await;
    let out = Command::new(PROMPTQ)
        .arg("status")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run promptq status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("prompt_jobs") && stderr.contains("does not exist"),
        "the cause is not shown: {stderr}"
    );
}

/// A pooled URL promptq was not told about: the collisions of named statements that follow
/// are reported with what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_pooled_url_is_named_in_the_error() {
    let Some(db) = pooler::pooled_postgres().await else {
        return;
    };
    let Some(pooler) = pooler::pooler() else {
        return;
    };
    let bare = Store::connect(&pooler.bare_url_for(&pooler::database_of(&db.url)))
        .await
        .expect("connect without the hint");
    let every = promptq::store::JobFilter::default();
    let mut seen = Vec::new();
    for _ in 0..50 {
        let reads = (0..16).map(|_| bare.jobs_summary(&every));
        let errors: Vec<String> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .filter_map(|read| read.err().map(|err| err.to_string()))
            .collect();
        seen.extend(errors);
        if seen.iter().any(|err| err.contains("sqlx_s_")) {
            break;
        }
    }
    let named: Vec<&String> = seen.iter().filter(|e| e.contains("sqlx_s_")).collect();
    assert!(
        !named.is_empty(),
        "no collision of named statements: {seen:?}"
    );
    for err in named {
        assert!(
            err.contains("DATABASE_DIRECT_URL") && err.contains("pgbouncer=true"),
            "{err}"
        );
    }
    bare.close().await;
}
