//! The worker registry on SQLite: counts only. The processes sharing a SQLite file share one
//! machine and hold no session the database could see end, so leases bring a dead process's
//! jobs back and [`Workers::jobs_rescue_orphaned`] finds none.

use std::time::Duration;

use sqlx::Row;

use super::{SqliteStore, StoreResult, delay_of, ms, time};
use crate::store::workers::{NewWorker, Worker, WorkerId, Workers};
use crate::store::{Clock, Rescued};

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
            "INSERT INTO workers (host, pid, concurrency, holds_lock, started_at, seen_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?4) RETURNING id",
        )
        .bind(&new.host)
        .bind(i64::from(new.pid))
        .bind(new.concurrency as i64)
        .bind(ms(now))
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
        _now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<Rescued>> {
        Ok(Vec::new())
    }
}
