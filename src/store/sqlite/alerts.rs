//! SQLite's side of [`Alerts`]: the outbox on the one writer, so that a claim's select and
//! update are one statement no other process can interleave with.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{SqliteStore, delay_of, ms};
use crate::store::StoreResult;
use crate::store::driver_alerts::{
    ALERT_COLUMNS, Alert, AlertCounts, AlertRow, Alerts, NewAlert, alerts_from_rows,
};

impl Alerts for SqliteStore {
    async fn alert_insert(&self, new: &NewAlert, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO alerts (dedupe_key, kind, batch_key, message, details,
                 next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&new.dedupe_key)
        .bind(new.kind.as_str())
        .bind(&new.batch_key)
        .bind(&new.message)
        .bind(new.details.to_string())
        .bind(ms(now))
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn alerts_claim(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Vec<Alert>> {
        let mut tx = self.begin().await?;
        let rows: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE alerts SET status = 'delivering', attempts = attempts + 1,
                 lease_expires_at = ?3
             WHERE id IN (SELECT id FROM alerts
                 WHERE (status = 'pending' AND next_attempt_at <= ?2)
                    OR (status = 'delivering' AND lease_expires_at <= ?2)
                 ORDER BY id LIMIT ?1)
             RETURNING {ALERT_COLUMNS}"
        )))
        .bind(limit)
        .bind(ms(now))
        .bind(ms(now + delay_of(lease)))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        alerts_from_rows(rows)
    }

    async fn alert_delivered(
        &self,
        id: i64,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'delivered', delivered_at = ?3, lease_expires_at = NULL,
                 last_error = NULL
             WHERE id = ?1 AND attempts = ?2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(ms(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alert_retry(
        &self,
        id: i64,
        attempt: i32,
        at: DateTime<Utc>,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'pending', next_attempt_at = ?3, last_error = ?4,
                 lease_expires_at = NULL
             WHERE id = ?1 AND attempts = ?2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(ms(at))
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alert_failed(&self, id: i64, attempt: i32, error: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'failed', last_error = ?3, lease_expires_at = NULL
             WHERE id = ?1 AND attempts = ?2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alerts_count(&self) -> StoreResult<AlertCounts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")
            .fetch_all(&self.readers)
            .await?;
        let mut counts = AlertCounts::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            match status.as_str() {
                "pending" | "delivering" => counts.pending += n,
                "failed" => counts.failed += n,
                _ => counts.delivered += n,
            }
        }
        Ok(counts)
    }

    async fn alerts_recent(&self, limit: i64) -> StoreResult<Vec<Alert>> {
        let rows: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id DESC LIMIT ?1"
        )))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        let mut alerts = alerts_from_rows(rows)?;
        alerts.reverse();
        Ok(alerts)
    }
}
