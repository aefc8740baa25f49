//! The scale-out backend: many processes on many machines share one PostgreSQL.
//!
//! PostgreSQL is the coordination engine here, not a home-made one: claims take rows with
//! `FOR UPDATE SKIP LOCKED` so concurrent workers never wait on each other, concurrent
//! enqueues of one batch are serialised by a transaction-level advisory lock and deduplicated
//! by the unique job key, and bulk writes travel as arrays (`unnest`) so that 20,000 jobs or a
//! batch of finishes are one statement, not one round trip each. Every write made for an
//! attempt is fenced by `status = 'processing' AND attempt_count = <attempt>`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::sql::{Time, job_from_row, parse_status, push_job_filter, push_selector};
use super::{
    ABANDONED, Backend, ClaimOne, Clock, EnqueueOptions, EnqueueReport, JobFilter, JobSelector,
    Lifecycle, ModelPatch, NewModel, NewPrompt, Page, Pause, PauseScope, PromptPatch, Rescued,
    ResponseFilter, SKIPPED_CANCELLED, StoreError, StoreResult, StoredResponse,
};
use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, Model, ModelId, PlannedBatch, Prompt, PromptId,
    ScheduledPrompt, Summary,
};

mod catalog;
mod finish;
mod jobs;
mod pacing;
/// Retention: counts and bounded prune batches.
mod prune;
mod queue;
/// Read-only aggregates (status figures, queue gauges).
mod stats;
mod wake;

pub use wake::JOBS_CHANNEL;
use wake::notify_jobs;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Key of the advisory lock that serialises enqueues (and keeps the cron to one process).
const ENQUEUE_LOCK: i64 = 0x7072_6f6d_7074_7101;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

const JOB_COLUMNS: &str = "j.id, j.prompt_id, j.model_id, j.run_index, j.batch_key, j.status, \
    j.error_message, j.attempt_count, j.max_attempts, j.rate_limited_count, j.scheduled_for, \
    j.next_attempt_at, j.lease_expires_at, j.started_at, j.finished_at, j.created_at, \
    (SELECT v.hash FROM prompt_versions v WHERE v.id = j.prompt_version_id) AS prompt_version";

const MODEL_COLUMNS: &str = "id, name, provider, model, params, active, created_at";

// An all-models prompt shows the models its next batch would run on: those active now.
const PROMPT_COLUMNS: &str = "p.id, p.text, p.runs, p.active, p.schedule, p.last_run_at, \
    p.last_batch_key, p.created_at, p.all_models, \
    CASE WHEN p.all_models \
        THEN ARRAY(SELECT m.id FROM models m WHERE m.active AND m.deleted_at IS NULL ORDER BY m.id) \
        ELSE ARRAY(SELECT pm.model_id FROM prompt_models pm WHERE pm.prompt_id = p.id ORDER BY pm.model_id) \
    END AS model_ids";

impl PostgresStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for LISTEN connections and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn admin_execute(&self, sql: &str) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn wal_position(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Lifecycle for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        self.version_unversioned_prompts().await
    }

    async fn clock_now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

type PgTx = sqlx::Transaction<'static, Postgres>;

/// Reads a model from columns named with `prefix` (`m_` when joined to a job).
fn model_from_row(row: &PgRow, prefix: &str) -> Result<Model, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    let provider: String = row.try_get(column("provider").as_str())?;
    Ok(Model {
        id: row.try_get(column("id").as_str())?,
        name: row.try_get(column("name").as_str())?,
        provider: provider
            .parse()
            .map_err(|err: crate::domain::ParseError| sqlx::Error::Decode(Box::new(err)))?,
        model: row.try_get(column("model").as_str())?,
        params: row.try_get(column("params").as_str())?,
        active: row.try_get(column("active").as_str())?,
        created_at: row.try_get(column("created_at").as_str())?,
        spec: Default::default(),
    }
    .with_spec())
}

fn prompt_from_row(row: &PgRow) -> Result<Prompt, sqlx::Error> {
    Ok(Prompt {
        id: row.try_get("id")?,
        text: row.try_get("text")?,
        model_ids: row.try_get("model_ids")?,
        all_models: row.try_get("all_models")?,
        runs: row.try_get("runs")?,
        active: row.try_get("active")?,
        schedule: row.try_get("schedule")?,
        last_run_at: row.try_get("last_run_at")?,
        last_batch_key: row.try_get("last_batch_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn claimed_from_row(row: &PgRow) -> Result<ClaimedJob, sqlx::Error> {
    let job = job_from_row(row)?;
    let mut model = model_from_row(row, "m_")?;
    // A job from before versions runs the model as it is now, as it always did.
    if row
        .try_get::<Option<i64>, _>("prompt_version_id")?
        .is_some()
    {
        let snapshot: Option<serde_json::Value> = row.try_get("gen_params")?;
        model = model.with_generation_params(snapshot);
    }
    Ok(ClaimedJob {
        attempt: job.claim_number(),
        prompt_text: row.try_get("prompt_text")?,
        model,
        job,
    })
}

/// A duration as whole microseconds, for `$n * interval '1 microsecond'`; at most a year, so
/// that no delay a caller computes can overflow the database's interval arithmetic.
fn micros(duration: Duration) -> i64 {
    const YEAR_MICROS: i64 = 366 * 24 * 3600 * 1_000_000;
    i64::try_from(duration.as_micros()).map_or(YEAR_MICROS, |m| m.min(YEAR_MICROS))
}
