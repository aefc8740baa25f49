//! The worker registry on PostgreSQL: each worker's lock lives on a session of its own, and a
//! worker whose lock any process can take is dead, unless every session just ended together
//! (a server restart): a live worker that lost its session takes its lock back under the same
//! id, and judging others waits while that happens.

use std::time::{Duration, Instant};

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

/// How long after taking its lock back (its session was lost) a process leaves other
/// workers' free locks alone. A server restart or failover ends every session at once: the
/// live workers take their locks back at their first report once the server is back, and
/// until they have, a free lock says nothing about whether its worker is alive.
pub const SESSION_SETTLE: Duration = Duration::from_secs(10);

/// The session that holds this process's worker lock, and whom it holds it for.
pub(super) struct Presence {
    worker: WorkerId,
    /// `None` from the moment the session is found dead until the lock is held again.
    session: Option<PgConnection>,
    /// When the lock was held again after a lost session, if one was ever lost.
    regained_at: Option<Instant>,
}

impl Presence {
    fn new(worker: WorkerId, session: PgConnection) -> Self {
        Presence {
            worker,
            session: Some(session),
            regained_at: None,
        }
    }

    /// The lock session, unless this process lost its own too recently to judge others by
    /// their locks (or has not got it back yet).
    fn judging_session(&mut self) -> Option<&mut PgConnection> {
        if self
            .regained_at
            .is_some_and(|at| at.elapsed() < SESSION_SETTLE)
        {
            return None;
        }
        self.session.as_mut()
    }

    async fn close(self) {
        if let Some(session) = self.session {
            let _ = session.close().await;
        }
    }
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
        Ok(Presence::new(worker, session))
    }

    /// Takes `worker`'s lock again on a new session after its old one was lost, unless another
    /// process judged it dead meanwhile (and handed its jobs back): `false` then.
    async fn retake(&self, options: &PgConnectOptions, worker: WorkerId) -> StoreResult<bool> {
        let mut session = PgConnection::connect_with(options).await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1, ($2 % 2147483647)::int)")
                .bind(WORKER_LOCK_CLASS)
                .bind(worker)
                .fetch_one(&mut session)
                .await?;
        // Read after the lock is held: a rescuer marks the worker stopped while it holds the
        // same lock, so a rescue is either seen here or never starts.
        let live = locked
            && sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM workers WHERE id = $1 AND stopped_at IS NULL)",
            )
            .bind(worker)
            .fetch_one(&mut session)
            .await?;
        if !live {
            let _ = session.close().await;
            return Ok(false);
        }
        let mut presence = Presence::new(worker, session);
        presence.regained_at = Some(Instant::now());
        if let Some(old) = self.presence.lock().await.replace(presence) {
            old.close().await;
        }
        Ok(true)
    }

    /// Registers a new worker in place of `old`, whose lock another process took: with its
    /// host, pid and concurrency. The old row stays as it is (stopped by its rescuer).
    async fn register_again(&self, old: WorkerId, now: Clock) -> StoreResult<WorkerId> {
        let stale: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT host, pid::bigint, concurrency::bigint FROM workers WHERE id = $1",
        )
        .bind(old)
        .fetch_optional(&self.pool)
        .await?;
        let Some((host, pid, concurrency)) = stale else {
            return Ok(old);
        };
        let new = NewWorker {
            host,
            pid: u32::try_from(pid).unwrap_or_default(),
            concurrency: usize::try_from(concurrency).unwrap_or_default(),
        };
        self.worker_register(&new, now).await
    }

    /// Whether `worker`'s lock session is gone: found dead now (it is then dropped), or lost
    /// earlier and not held again yet (taking it back failed, say while the server was down).
    async fn session_lost(&self, worker: WorkerId) -> bool {
        let mut presence = self.presence.lock().await;
        let Some(current) = presence.as_mut().filter(|p| p.worker == worker) else {
            return false;
        };
        let Some(session) = current.session.as_mut() else {
            return true;
        };
        if session.ping().await.is_ok() {
            return false;
        }
        current.session = None;
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
            old.close().await;
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
            let retaken = match self.session_options() {
                Some(options) => self.retake(&options, id).await?,
                None => false,
            };
            if retaken {
                tracing::warn!(
                    worker = id,
                    "lost the worker's session; took its lock again"
                );
            } else {
                // Another process judged this worker dead and handed its jobs back (its
                // calls' finishes will change nothing): go on as a new worker.
                tracing::warn!(worker = id, "lost the worker's session; registering again");
                worker = self.register_again(id, now).await?;
                if let Some(presence) = self.presence.lock().await.as_mut() {
                    presence.regained_at = Some(Instant::now());
                }
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
            gone.close().await;
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
        // Judged on this process's own lock session: it runs only while that session lives,
        // so a restart of the server (which frees every lock at once) is never taken for the
        // death of every other worker; and not for a while after this process lost its own
        // session, while the others take their locks back. Only a process with a lock
        // session judges.
        let mut presence = self.presence.lock().await;
        let Some(own) = presence.as_mut() else {
            return Ok(Vec::new());
        };
        let worker = own.worker;
        let Some(session) = own.judging_session() else {
            return Ok(Vec::new());
        };
        // A worker's lock that this transaction can take is held by no session: its process
        // is gone. The taken locks go with the transaction. (This session's own lock is taken
        // again by it, not free: it is left out.)
        let rows = sqlx::query(rescue_update!(
            ", dead AS MATERIALIZED (
                SELECT w.id FROM workers w
                WHERE w.holds_lock AND w.stopped_at IS NULL AND w.id <> $4
                    AND pg_try_advisory_xact_lock($3, (w.id % 2147483647)::int)
            ), stopped AS (
                UPDATE workers w SET stopped_at = c.now FROM dead, clock c WHERE w.id = dead.id
            )",
            "SELECT j.id FROM job_claims r JOIN dead ON r.worker_id = dead.id
                JOIN prompt_jobs j ON j.id = r.job_id
            WHERE j.status = 'processing'
            FOR UPDATE OF j SKIP LOCKED"
        ))
        .bind(now.fixed())
        .bind(ORPHANED)
        .bind(WORKER_LOCK_CLASS)
        .bind(worker)
        .fetch_all(session)
        .await?;
        rescued_from_rows(&rows)
    }
}
