//! The worker registry on SQLite. The processes sharing a SQLite file hold no session the
//! database could see end, but they share one machine, and [`Workers::jobs_rescue_orphaned`]
//! hands a dead worker's jobs back at once instead of after their lease. A worker of this host
//! is dead when its [`ProcessMark`] (recorded at registration) says for certain that its
//! process ended: same PID namespace and user as the process looking, and its pid gone, a
//! zombie, or another process's. A worker without a certain answer (another container under
//! the same host name, another user, no mark) is dead only once it has also not reported for
//! [`SILENT_BEFORE_PROCESS_CHECK`] and no process has its pid: a pid alone can be reused or
//! belong to another namespace, and a live worker reports every second. Where there is no
//! `/proc`, leases alone bring jobs back.

use std::time::Duration;

use sqlx::Row;

use super::process::{ProcessMark, process_gone};
use super::queue::hand_back;
use super::{SqliteStore, StoreResult, delay_of, ms, time};
use crate::store::workers::{NewWorker, WORKER_BEAT, Worker, WorkerId, Workers};
use crate::store::{Clock, PROCESS_GONE, Rescued};

/// How long a worker of this host must have been silent before its process is looked for.
pub const SILENT_BEFORE_PROCESS_CHECK: Duration = WORKER_BEAT.saturating_mul(5);

impl Workers for SqliteStore {
    async fn worker_register(
        &self,
        new: &NewWorker,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<WorkerId> {
        let now = now.into().local();
        let mut tx = self.begin().await?;
        // Rows of workers stopped long ago are of no use to anyone.
        sqlx::query("DELETE FROM workers WHERE stopped_at < ?1")
            .bind(ms(now - chrono::Duration::days(7)))
            .execute(&mut *tx)
            .await?;
        let id = sqlx::query_scalar(
            "INSERT INTO workers (host, pid, concurrency, holds_lock, started_at, seen_at, process)
             VALUES (?1, ?2, ?3, 0, ?4, ?4, ?5) RETURNING id",
        )
        .bind(&new.host)
        .bind(i64::from(new.pid))
        .bind(new.concurrency as i64)
        .bind(ms(now))
        .bind(ProcessMark::of(i64::from(new.pid)).map(|mark| mark.encode()))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn worker_beat(
        &self,
        id: WorkerId,
        running: usize,
        held: usize,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<WorkerId> {
        let now = now.into().local();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE workers SET seen_at = ?2, running = ?3, held = ?4 WHERE id = ?1")
            .bind(id)
            .bind(ms(now))
            .bind(running as i64)
            .bind(held as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn worker_stop(&self, id: WorkerId, now: impl Into<Clock> + Send) -> StoreResult<()> {
        let now = now.into().local();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE workers SET stopped_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn workers_live(
        &self,
        now: impl Into<Clock> + Send,
        within: Duration,
    ) -> StoreResult<Vec<Worker>> {
        let now = now.into().local();
        let rows = sqlx::query(
            "SELECT id, host, pid, concurrency, holds_lock, started_at, seen_at, running, held
             FROM workers WHERE stopped_at IS NULL AND seen_at >= ?1 ORDER BY id",
        )
        .bind(ms(now - delay_of(within)))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Worker {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: row.try_get("pid")?,
                    concurrency: row.try_get("concurrency")?,
                    holds_lock: row.try_get("holds_lock")?,
                    started_at: time(row.try_get("started_at")?),
                    seen_at: time(row.try_get("seen_at")?),
                    running: row.try_get("running")?,
                    held: row.try_get("held")?,
                })
            })
            .collect()
    }

    async fn jobs_rescue_orphaned(
        &self,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<Rescued>> {
        if !std::path::Path::new("/proc/self").exists() {
            return Ok(Vec::new());
        }
        let now = now.into().local();
        let silent_since = ms(now - delay_of(SILENT_BEFORE_PROCESS_CHECK));
        let here = NewWorker::this_process(0);
        let looking = ProcessMark::of_this_process();
        let others: Vec<(WorkerId, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT id, pid, seen_at, process FROM workers WHERE stopped_at IS NULL AND host = ?1",
        )
        .bind(&here.host)
        .fetch_all(&self.readers)
        .await?;
        // Ended for certain (see `process`), or silent and without a process of its pid.
        let mut ended = Vec::new();
        let mut silent_and_gone = Vec::new();
        for (id, pid, seen_at, mark) in others {
            let certain = looking
                .and_then(|looking| ProcessMark::decode(mark.as_deref()?)?.ended(pid, looking));
            match certain {
                Some(true) => ended.push(id),
                Some(false) => {}
                // This process is no other worker's proof of death.
                None if seen_at < silent_since
                    && pid != i64::from(here.pid)
                    && process_gone(pid) =>
                {
                    silent_and_gone.push(id)
                }
                None => {}
            }
        }
        if ended.is_empty() && silent_and_gone.is_empty() {
            return Ok(Vec::new());
        }
        let ended = serde_json::to_string(&ended).unwrap_or_else(|_| "[]".to_owned());
        let silent_and_gone =
            serde_json::to_string(&silent_and_gone).unwrap_or_else(|_| "[]".to_owned());
        let mut tx = self.begin().await?;
        // Judged again under the write lock: a silent worker that reported meanwhile is alive.
        let confirmed: Vec<WorkerId> = sqlx::query_scalar(
            "UPDATE workers SET stopped_at = ?1
             WHERE stopped_at IS NULL AND (id IN (SELECT value FROM json_each(?2))
                OR (id IN (SELECT value FROM json_each(?3)) AND seen_at < ?4))
             RETURNING id",
        )
        .bind(ms(now))
        .bind(&ended)
        .bind(&silent_and_gone)
        .bind(silent_since)
        .fetch_all(&mut *tx)
        .await?;
        let confirmed = serde_json::to_string(&confirmed).unwrap_or_else(|_| "[]".to_owned());
        let rescued = hand_back(
            &mut tx,
            now,
            PROCESS_GONE,
            "worker_id IN (SELECT value FROM json_each(?3))",
            Some(&confirmed),
        )
        .await?;
        tx.commit().await?;
        Ok(rescued)
    }
}
