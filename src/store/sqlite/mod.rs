//! The embedded backend: one SQLite file, no setup at all.
//!
//! SQLite allows one writer at a time, so this store keeps exactly one writer connection
//! (writes queue in the pool instead of spinning on `SQLITE_BUSY`) and a few reader
//! connections, in WAL mode so that readers never block the writer. Every write transaction
//! starts with `BEGIN IMMEDIATE`: another process on the same file (a `promptq cron` beside a
//! `promptq serve`) then waits for the lock instead of failing half-way. Because the writer is
//! single, "select the due jobs, then update them" inside one such transaction is as atomic as
//! Postgres' `SKIP LOCKED` claim. Timestamps are INTEGER milliseconds since the Unix epoch.
//!
//! Each connection holds its own schema, prepared statements and page cache, on a thread of
//! its own: a process opens as many readers as it runs reads side by side ([`Readers`]), and
//! the writer keeps a small page cache, since the file's pages stay in the operating system's
//! cache and the writer mostly appends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::sql::{ClaimModels, Time, job_from_row, parse_status, push_job_filter, push_selector};
use super::{
    ABANDONED, Backend, ClaimOne, ClaimSize, Clock, EnqueueOptions, EnqueueReport, JobFilter,
    JobSelector, Lifecycle, ModelPatch, NewModel, NewPrompt, Page, Pause, PauseScope, PromptPatch,
    Readers, Rescued, ResponseFilter, SKIPPED_CANCELLED, StoreError, StoreResult, StoredResponse,
};
use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, JobStatus, Model, ModelId, PlannedBatch, Prompt,
    PromptId, ScheduledPrompt, Summary,
};

/// The alert outbox.
mod alerts;
/// Provider batches (Batch APIs).
mod batches;
mod catalog;
mod claim;
mod finish;
mod insights;
mod jobs;
mod pacing;
/// Whether another process of this machine still runs.
mod process;
/// Retention: counts and bounded prune batches.
mod prune;
mod queue;
/// What answers cost (budgets, estimates).
mod spend;
/// Read-only aggregates (status figures, queue gauges).
mod stats;
/// Wake-ups when another process commits to the file.
mod watch;
/// Worker registry (leases alone bring a dead process's jobs back here).
mod workers;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

type SqliteTx = sqlx::Transaction<'static, Sqlite>;

const JOB_COLUMNS: &str = "id, prompt_id, model_id, run_index, batch_key, status, error_message, \
    attempt_count, max_attempts, rate_limited_count, scheduled_for, next_attempt_at, \
    lease_expires_at, started_at, finished_at, created_at, \
    (SELECT v.hash FROM prompt_versions v WHERE v.id = prompt_jobs.prompt_version_id) \
        AS prompt_version";

const MODEL_COLUMNS: &str = "id, name, provider, model, params, active, created_at";

// An all-models prompt shows the models its next batch would run on: those active now.
const PROMPT_COLUMNS: &str = "p.id, p.text, p.runs, p.active, p.schedule, p.last_run_at, \
    p.last_batch_key, p.created_at, p.all_models, \
    CASE WHEN p.all_models THEN (SELECT json_group_array(id) FROM \
        (SELECT m.id FROM models m WHERE m.active AND m.deleted_at IS NULL ORDER BY m.id)) \
    ELSE (SELECT json_group_array(model_id) FROM \
        (SELECT pm.model_id FROM prompt_models pm WHERE pm.prompt_id = p.id ORDER BY pm.model_id)) \
    END AS model_ids";

/// What a claim needs of a picked job besides the job row itself.
struct Picked {
    prompt_text: String,
    model: Arc<Model>,
}

/// The writer's page cache: 256 KiB (a negative `cache_size` is KiB; SQLite's default is
/// 2,000). Measured on a worker draining 2,000 jobs: its peak memory fell by 0.6 MB, and
/// neither enqueues nor drains slowed.
const WRITER_CACHE_SIZE: &str = "-256";

impl SqliteStore {
    pub async fn open(path: &str, readers: Readers) -> StoreResult<Self> {
        if path.is_empty() || path.starts_with(":memory:") {
            return Err(StoreError::InvalidUrl(
                "DATABASE_URL sqlite:PATH needs a file path (an in-memory database cannot be shared by the writer and the readers)".to_owned(),
            ));
        }
        let path = path.strip_prefix("//").unwrap_or(path);
        let options = SqliteConnectOptions::new()
            .filename(Path::new(path))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash; only a power loss can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().pragma("cache_size", WRITER_CACHE_SIZE))
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(match readers {
                Readers::One => 1,
                Readers::Several => 4,
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { writer, readers })
    }

    async fn begin(&self) -> Result<SqliteTx, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

impl Lifecycle for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        self.version_unversioned_prompts().await
    }

    async fn clock_now(&self) -> StoreResult<DateTime<Utc>> {
        // Every process sharing the file shares this machine's clock.
        Ok(Utc::now())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

fn attempts_json(attempts: &[(JobId, i32)]) -> String {
    serde_json::Value::Array(
        attempts
            .iter()
            .map(|(id, attempt)| serde_json::json!([id, attempt]))
            .collect(),
    )
    .to_string()
}

fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    super::sql::from_millis(ms)
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(time)
}

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

/// Reads a model from columns named with `prefix` (`m_` when joined to a job).
fn model_from_row(row: &SqliteRow, prefix: &str) -> Result<Model, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    let provider: String = row.try_get(column("provider").as_str())?;
    let params: String = row.try_get(column("params").as_str())?;
    Ok(Model {
        id: row.try_get(column("id").as_str())?,
        name: row.try_get(column("name").as_str())?,
        provider: provider
            .parse()
            .map_err(|err: crate::domain::ParseError| decode_error(err.0))?,
        model: row.try_get(column("model").as_str())?,
        params: serde_json::from_str(&params)
            .map_err(|err| decode_error(format!("model params are not JSON: {err}")))?,
        active: row.try_get(column("active").as_str())?,
        created_at: time(row.try_get(column("created_at").as_str())?),
        spec: Default::default(),
    }
    .with_spec())
}

/// What the jobs of a claim share a model by: its id, and the generation params of the job's
/// enqueue (as stored) where the job has a prompt version.
type ModelKey = (i64, Option<Option<String>>);

/// The model of a picked job, with the generation params of the job's enqueue (a job from
/// before versions runs the model as it is now, as it always did).
fn snapshot_model(
    row: &SqliteRow,
    models: &mut ClaimModels<ModelKey>,
) -> Result<Arc<Model>, sqlx::Error> {
    let snapshot = if row
        .try_get::<Option<i64>, _>("prompt_version_id")?
        .is_some()
    {
        Some(row.try_get::<Option<String>, _>("gen_params")?)
    } else {
        None
    };
    models.get_or_build((row.try_get("m_id")?, snapshot), |(_, snapshot)| {
        let model = model_from_row(row, "m_")?;
        let Some(snapshot) = snapshot else {
            return Ok(model);
        };
        let snapshot = snapshot
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|err| decode_error(format!("job generation params are not JSON: {err}")))?;
        Ok(model.with_generation_params(snapshot))
    })
}

/// A duration as a `chrono` one, at most a year, so that adding it to an instant cannot
/// overflow whatever a caller computed.
fn delay_of(duration: Duration) -> chrono::Duration {
    const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
    chrono::Duration::from_std(duration.min(YEAR)).unwrap_or(chrono::Duration::days(366))
}

fn prompt_from_row(row: &SqliteRow) -> Result<Prompt, sqlx::Error> {
    let model_ids: String = row.try_get("model_ids")?;
    Ok(Prompt {
        id: row.try_get("id")?,
        text: row.try_get("text")?,
        model_ids: serde_json::from_str(&model_ids)
            .map_err(|err| decode_error(format!("prompt model ids: {err}")))?,
        all_models: row.try_get("all_models")?,
        runs: row.try_get("runs")?,
        active: row.try_get("active")?,
        schedule: row.try_get("schedule")?,
        last_run_at: opt_time(row.try_get("last_run_at")?),
        last_batch_key: row.try_get("last_batch_key")?,
        created_at: time(row.try_get("created_at")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens a fresh file with `readers`, runs twelve reads at once on it, and says how many
    /// reader connections that opened.
    async fn readers_opened_by_twelve_reads(readers: Readers) -> u32 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("readers.db");
        let store = SqliteStore::open(&path.display().to_string(), readers)
            .await
            .expect("open");
        let reads = (0..12).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                // Held for a while, so that the reads overlap.
                sqlx::query(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                             WHERE i < 200000) SELECT count(*) FROM n",
                )
                .execute(&store.readers)
                .await
                .expect("read")
            })
        });
        for read in reads.collect::<Vec<_>>() {
            read.await.expect("task");
        }
        let opened = store.readers.size();
        store.close().await;
        opened
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_reading_one_at_a_time_keeps_one_reader() {
        assert_eq!(readers_opened_by_twelve_reads(Readers::One).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_reads_side_by_side_on_several_readers() {
        let opened = readers_opened_by_twelve_reads(Readers::Several).await;
        assert!((2..=4).contains(&opened), "{opened} readers");
    }
}
