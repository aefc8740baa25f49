//! The worker registry on PostgreSQL: each worker's lock lives on a session of its own, and a
//! worker whose lock any process can take is dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::queue::rescued_from_rows;
use super::{PostgresStore, StoreResult};
use crate::store::sql::Time;
use crate::store::workers::{NewWorker, Worker, WorkerId, Workers};
use crate::store::{Clock, ORPHANED, Rescued};

/// The first key of every worker lock (`pg_advisory_lock(int, int)`); the second is the id,
/// wrapped into an `int` (far past any real count of workers).
const WORKER_LOCK_CLASS: i32 = 0x7071_776b;

/// The session that holds this process's worker lock, and whom it holds it for.
pub(super) struct Presence {
    worker: WorkerId,
    session: PgConnection,
}

impl PostgresStore {
    /// Where a worker lock can be held: the server itself, never a transaction-mode pooler.
    fn session_options(&self) -> Option<PgConnectOptions> {
        match (&self.direct, self.pooled()) {
            (Some(direct), _) => Some(PgConnectOptions::clone(direct)),
            (None, true) => None,
            (None, false) => Some(PgConnectOptions::clone(
                &self.pool.inner().connect_options(),
            )),
        }
    }

    async fn register_with_lock(
        &self,
        options: &PgConnectOptions,
        new: &NewWorker,
        now: Clock,
    ) -> StoreResult<Presence> {
        let mut session = PgConnection::connect_with(options).await?;
        // The row becomes visible when this commits, and the lock (session-level) is held by
        // then: no rescuer ever sees this worker registered and unlocked.
        let mut tx = session.begin().await?;
        let worker: WorkerId = sqlx::query_scalar(
            "WITH w AS (
                INSERT INTO workers (host, pid, concurrency, holds_lock, started_at, seen_at)
                VALUES ($1, $2, $3, TRUE, COALESCE($4::timestamptz, now()),
                    COALESCE($4::timestamptz, now()))
                RETURNING id
            ) SELECT id FROM w WHERE pg_advisory_lock($5, (id % 2147483647)::int) IS NOT NULL",
        )
        .bind(&new.host)
        .bind(i64::from(new.pid))
        .bind(new.concurrency as i64)
        .bind(now.fixed())
        .bind(WORKER_LOCK_CLASS)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Presence { worker, session })
    }

    /// Whether `worker`'s lock session died (it is then dropped).
    async fn session_lost(&self, worker: WorkerId) -> bool {
        let mut presence = self.presence.lock().await;
        let Some(current) = presence.as_mut().filter(|p| p.worker == worker) else {
            return false;
        };
        if current.session.ping().await.is_ok() {
            return false;
        }
        presence.take();
        true
    }

    async fn register_without_lock(&self, new: &NewWorker, now: Clock) -> StoreResult<WorkerId> {
        Ok(sqlx::query_scalar(
            "INSERT INTO workers (host, pid, concurrency, holds_lock, started_at, seen_at)
             VALUES ($1, $2, $3, FALSE, COALESCE($4::timestamptz, now()),
                COALESCE($4::timestamptz, now()))
             RETURNING id",
        )
        .bind(&new.host)
        .bind(i64::from(new.pid))
        .bind(new.concurrency as i64)
        .bind(now.fixed())
        .fetch_one(&self.pool)
        .await?)
    }
}

impl Workers for PostgresStore {
    async fn worker_register(
        &self,
        new: &NewWorker,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<WorkerId> {
        let now: Clock = now.into();
        // Rows of workers stopped long ago are of no use to anyone.
        sqlx::query(
            "DELETE FROM workers WHERE stopped_at < COALESCE($1::timestamptz, now()) - interval '7 days'",
        )
        .bind(now.fixed())
        .execute(&self.pool)
        .await?;
        let Some(options) = self.session_options() else {
            return self.register_without_lock(new, now).await;
        };
        let presence = self.register_with_lock(&options, new, now).await?;
        let worker = presence.worker;
        let mut held = self.presence.lock().await;
        if let Some(old) = held.replace(presence) {
            let _ = old.session.close().await;
        }
        Ok(worker)
    }

    async fn worker_beat(
        &self,
        id: WorkerId,
        running: usize,
        held: usize,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<WorkerId> {
        let now: Clock = now.into();
        let mut worker = id;
        if self.session_lost(id).await {
            // The lock went with the session: other processes may hand this worker's jobs
            // back already (its calls' finishes will then change nothing). Go on as a new
            // worker.
            tracing::warn!(worker = id, "lost the worker's session; registering again");
            // The old row stays as it is: the next look for dead workers finds its lock free,
            // hands its claims back and marks it stopped.
            let stale: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT host, pid::bigint, concurrency::bigint FROM workers WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((host, pid, concurrency)) = stale {
                let new = NewWorker {
                    host,
                    pid: u32::try_from(pid).unwrap_or_default(),
                    concurrency: usize::try_from(concurrency).unwrap_or_default(),
                };
                worker = self.worker_register(&new, now).await?;
            }
        }
        // The report also reads the server's clock, for `now()`: a clock that drifts is
        // followed within a report.
        let sent = Utc::now();
        let clock = std::time::Instant::now();
        let server: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE workers SET seen_at = COALESCE($2::timestamptz, now()), running = $3, held = $4
             WHERE id = $1 RETURNING clock_timestamp()",
        )
        .bind(worker)
        .bind(now.fixed())
        .bind(running as i64)
        .bind(held as i64)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(server) = server {
            self.clock.observe(sent, clock.elapsed(), server);
        }
        Ok(worker)
    }

    async fn worker_stop(&self, id: WorkerId, now: impl Into<Clock> + Send) -> StoreResult<()> {
        let now: Clock = now.into();
        // Stopped first, then unlocked: a rescuer that takes the free lock finds it stopped.
        sqlx::query(
            "UPDATE workers SET stopped_at = COALESCE($2::timestamptz, now()) WHERE id = $1",
        )
        .bind(id)
        .bind(now.fixed())
        .execute(&self.pool)
        .await?;
        let mut presence = self.presence.lock().await;
        if presence.as_ref().is_some_and(|p| p.worker == id)
            && let Some(gone) = presence.take()
        {
            let _ = gone.session.close().await;
        }
        Ok(())
    }

    async fn workers_live(
        &self,
        now: impl Into<Clock> + Send,
        within: Duration,
    ) -> StoreResult<Vec<Worker>> {
        let now: Clock = now.into();
        let rows = sqlx::query(
            "SELECT id, host, pid, concurrency, holds_lock, started_at, seen_at, running, held
             FROM workers
             WHERE stopped_at IS NULL
                AND seen_at >= COALESCE($1::timestamptz, now()) - $2 * interval '1 millisecond'
             ORDER BY id",
        )
        .bind(now.fixed())
        .bind(i64::try_from(within.as_millis()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Worker {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: row.try_get::<i32, _>("pid")?.into(),
                    concurrency: row.try_get::<i32, _>("concurrency")?.into(),
                    holds_lock: row.try_get("holds_lock")?,
                    started_at: row.try_get::<Time, _>("started_at")?.into(),
                    seen_at: row.try_get::<Time, _>("seen_at")?.into(),
                    running: row.try_get::<i32, _>("running")?.into(),
                    held: row.try_get::<i32, _>("held")?.into(),
                })
            })
            .collect()
    }

    async fn jobs_rescue_orphaned(
        &self,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<Rescued>> {
        let now: Clock = now.into();
        // A worker's lock that this transaction can take is held by no session: its process
        // is gone. The taken locks go with the transaction.
        let rows = sqlx::query(rescue_update!(
            ", dead AS MATERIALIZED (
                SELECT w.id FROM workers w
                WHERE w.holds_lock AND w.stopped_at IS NULL
                    AND pg_try_advisory_xact_lock($3, (w.id % 2147483647)::int)
            ), stopped AS (
                UPDATE workers w SET stopped_at = c.now FROM dead, clock c WHERE w.id = dead.id
            )",
            "SELECT j.id FROM prompt_jobs j JOIN dead ON j.worker_id = dead.id
            WHERE j.status = 'processing'
            FOR UPDATE OF j SKIP LOCKED"
        ))
        .bind(now.fixed())
        .bind(ORPHANED)
        .bind(WORKER_LOCK_CLASS)
        .fetch_all(&self.pool)
        .await?;
        rescued_from_rows(&rows)
    }
}
