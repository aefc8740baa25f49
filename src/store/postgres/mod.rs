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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::sql::{ClaimModels, Time, job_from_row, parse_status, push_job_filter, push_selector};
use super::{
    ABANDONED, Backend, ClaimOne, ClaimSize, Clock, EnqueueOptions, EnqueueReport, JobFilter,
    JobSelector, Lifecycle, ModelPatch, NewModel, NewPrompt, Page, Pause, PauseScope, PromptPatch,
    Rescued, ResponseFilter, SKIPPED_CANCELLED, StoreError, StoreResult, StoredResponse,
};
use crate::domain::{
    ClaimedJob, Finish, FinishResult, Job, JobId, Model, ModelId, PlannedBatch, Prompt, PromptId,
    ScheduledPrompt, Summary,
};

/// The alert outbox.
mod alerts;
mod catalog;
mod clock;
mod db;
mod finish;
mod insights;
mod jobs;
mod lists;
/// Migrations over a transaction-mode pooler.
mod migrate;
mod pacing;
/// Retention: counts and bounded prune batches.
mod prune;
#[macro_use]
mod queue;
/// Provider batches (Batch APIs); after `queue`, whose claim statement it shares.
mod batches;
/// What answers cost (budgets, estimates).
mod spend;
/// Read-only aggregates (status figures, queue gauges).
mod stats;
mod wake;
/// Worker registry and the locks that tell a dead worker from a slow one.
mod workers;

pub use db::{Conn, Db, Tx};
pub use wake::JOBS_CHANNEL;
use wake::notify_jobs;
pub use workers::SESSION_SETTLE;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Key of the advisory lock that serialises enqueues (and keeps the cron to one process).
const ENQUEUE_LOCK: i64 = 0x7072_6f6d_7074_7101;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Db,
    /// `DATABASE_DIRECT_URL`: the server itself, past the pooler, for what needs a session
    /// (migrations under sqlx's session lock, LISTEN).
    direct: Option<std::sync::Arc<PgConnectOptions>>,
    /// The session holding this process's worker lock, once it registered as a worker.
    presence: std::sync::Arc<tokio::sync::Mutex<Option<workers::Presence>>>,
    /// The server's clock as this process reads it.
    clock: std::sync::Arc<clock::ServerClock>,
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
    /// Connects to `url`; `direct` (`DATABASE_DIRECT_URL`) names the server behind it when
    /// `url` goes through a transaction-mode pooler. `url` counts as pooled when `direct` is
    /// given or when it carries `pgbouncer=true`.
    pub async fn connect(url: &str, direct: Option<&str>) -> StoreResult<Self> {
        let (options, hinted) = connect_options(url)?;
        let direct = direct
            .map(connect_options)
            .transpose()?
            .map(|(options, _)| std::sync::Arc::new(options));
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = PostgresStore {
            pool: Db::new(pool, hinted || direct.is_some()),
            direct,
            presence: std::sync::Arc::default(),
            clock: std::sync::Arc::default(),
        };
        store.read_server_clock().await?;
        Ok(store)
    }

    /// The server's time now, as this process reads it (see [`clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reads the server's clock once, for [`PostgresStore::now`].
    async fn read_server_clock(&self) -> StoreResult<()> {
        let sent = Utc::now();
        let clock = std::time::Instant::now();
        let server: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?;
        self.clock.observe(sent, clock.elapsed(), server);
        let offset = self.clock.offset();
        if offset.abs() >= chrono::TimeDelta::seconds(1) {
            let seconds = offset.abs().num_milliseconds() as f64 / 1000.0;
            let side = if offset > chrono::TimeDelta::zero() {
                "behind"
            } else {
                "ahead of"
            };
            tracing::warn!(
                "this machine's clock is {seconds:.1} s {side} the database server's; promptq \
                 times its work by the server's clock"
            );
        }
        Ok(())
    }

    /// The pool, for tests' administrative statements.
    pub fn pool(&self) -> &PgPool {
        self.pool.inner()
    }

    /// The URL goes through a transaction-mode pooler.
    pub fn pooled(&self) -> bool {
        self.pool.pooled()
    }

    pub async fn admin_execute(&self, sql: &str) -> StoreResult<()> {
        // A plain statement (simple protocol): `CREATE DATABASE` cannot run in a transaction.
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.pool.inner())
            .await?;
        Ok(())
    }

    /// The process id of the backend serving one of this store's connections.
    pub async fn backend_pid(&self) -> StoreResult<i32> {
        Ok(sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&self.pool)
            .await?)
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
        match &self.direct {
            Some(direct) => {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(PgConnectOptions::clone(direct))
                    .await?;
                let ran = MIGRATOR.run(&pool).await;
                pool.close().await;
                ran?;
            }
            // sqlx's migrator holds a session lock and names its statements: neither survives
            // a transaction-mode pooler.
            None if self.pooled() => migrate::in_one_transaction(&self.pool, &MIGRATOR).await?,
            None => MIGRATOR.run(self.pool.inner()).await?,
        }
        self.version_unversioned_prompts().await?;
        lists::ensure_intact(&self.pool).await?;
        Ok(())
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

type PgTx = Tx;

/// Options for `url`, without the `pgbouncer` hint, and whether the hint said "pooled".
/// sqlx's `extra_float_digits` startup parameter is left out: poolers refuse unknown startup
/// parameters, and since PostgreSQL 12 the server's default already prints exact floats.
pub fn connect_options(url: &str) -> StoreResult<(PgConnectOptions, bool)> {
    let invalid = |err: &dyn std::fmt::Display| {
        StoreError::InvalidUrl(format!("not a valid PostgreSQL URL: {err}"))
    };
    let mut parsed = url::Url::parse(url).map_err(|err| invalid(&err))?;
    let mut hinted = false;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, value)| {
            let hint = key == "pgbouncer";
            hinted |= hint && matches!(value.as_ref(), "true" | "1" | "on");
            !hint
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let options: PgConnectOptions = parsed.as_str().parse().map_err(|err| invalid(&err))?;
    Ok((options.extra_float_digits(None), hinted))
}

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

/// What the jobs of a claim share a model by: its id, and the generation params of the job's
/// enqueue where the job has a prompt version.
type ModelKey = (i64, Option<Option<serde_json::Value>>);

fn claimed_from_row(
    row: &PgRow,
    models: &mut ClaimModels<ModelKey>,
) -> Result<ClaimedJob, sqlx::Error> {
    let job = job_from_row(row)?;
    // A job from before versions runs the model as it is now, as it always did.
    let snapshot = if row
        .try_get::<Option<i64>, _>("prompt_version_id")?
        .is_some()
    {
        Some(row.try_get::<Option<serde_json::Value>, _>("gen_params")?)
    } else {
        None
    };
    let model = models.get_or_build((row.try_get("m_id")?, snapshot), |(_, snapshot)| {
        let model = model_from_row(row, "m_")?;
        Ok::<_, sqlx::Error>(match snapshot {
            Some(params) => model.with_generation_params(params.clone()),
            None => model,
        })
    })?;
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
