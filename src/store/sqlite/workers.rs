//! The worker registry on SQLite. The processes sharing a SQLite file hold no session the
//! database could see end, but they share one machine: a worker of this host that has not
//! reported for [`SILENT_BEFORE_PROCESS_CHECK`] and whose process no longer exists (no
//! `/proc/PID`, or only its zombie) died, and [`Workers::jobs_rescue_orphaned`] hands its jobs back at once instead
//! of after their lease. Both conditions are needed: a pid alone can be reused, or belong to
//! another PID namespace (two containers sharing the file under one host name), and a live
//! worker reports every second. Where there is no `/proc`, leases alone bring jobs back.

use std::time::Duration;

use sqlx::Row;

use super::queue::hand_back;
use super::{SqliteStore, StoreResult, delay_of, ms, time};
use crate::store::workers::{NewWorker, WORKER_BEAT, Worker, WorkerId, Workers};
use crate::store::{Clock, PROCESS_GONE, Rescued};

/// Whether no process `pid` runs on this machine: none exists, or only its zombie (killed, not
/// yet reaped by its parent).
fn process_gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| matches!(state, "Z" | "X")),
        Err(_) => true,
    }
}

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
        now: impl Into<Clock> + Send,
    ) -> StoreResult<Vec<Rescued>> {
        if !std::path::Path::new("/proc/self").exists() {
            return Ok(Vec::new());
        }
        let now = now.into().local();
        let silent_since = ms(now - delay_of(SILENT_BEFORE_PROCESS_CHECK));
        let here = NewWorker::this_process(0);
        let silent: Vec<(WorkerId, i64)> = sqlx::query_as(
            "SELECT id, pid FROM workers
             WHERE stopped_at IS NULL AND host = ?1 AND seen_at < ?2 AND pid <> ?3",
        )
        .bind(&here.host)
        .bind(silent_since)
        .bind(i64::from(here.pid))
        .fetch_all(&self.readers)
        .await?;
        let dead: Vec<WorkerId> = silent
            .into_iter()
            .filter(|&(_, pid)| process_gone(pid))
            .map(|(id, _)| id)
            .collect();
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let dead = serde_json::to_string(&dead).unwrap_or_else(|_| "[]".to_owned());
        let mut tx = self.begin().await?;
        // Judged again under the write lock: a worker that reported meanwhile is alive.
        let confirmed: Vec<WorkerId> = sqlx::query_scalar(
            "UPDATE workers SET stopped_at = ?1
             WHERE id IN (SELECT value FROM json_each(?2)) AND stopped_at IS NULL AND seen_at < ?3
             RETURNING id",
        )
        .bind(ms(now))
        .bind(&dead)
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

#[cfg(test)]
mod tests {
    use super::process_gone;

    #[test]
    fn a_killed_unreaped_process_is_gone_and_this_one_is_not() {
        assert!(!process_gone(i64::from(std::process::id())));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        assert!(!process_gone(pid));
        child.kill().unwrap();
        // Killed, not yet reaped: a zombie until `wait`.
        let mut gone = false;
        for _ in 0..100 {
            gone = process_gone(pid);
            if gone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(gone, "a zombie counts as gone");
        child.wait().unwrap();
        assert!(process_gone(pid));
    }
}
