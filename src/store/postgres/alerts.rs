//! PostgreSQL's side of [`Alerts`]: the outbox, claimed with `FOR UPDATE SKIP LOCKED` so that
//! concurrent deliverers in many processes each take different alerts without waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::store::StoreResult;
use crate::store::driver_alerts::{
    ALERT_COLUMNS, Alert, AlertCounts, AlertRow, Alerts, NewAlert, alerts_from_rows,
};

/// A lease as an interval, at most a day (a longer one is a mistake, not a wish).
fn lease_of(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease.min(Duration::from_secs(86_400)))
        .unwrap_or(chrono::Duration::days(1))
}

impl Alerts for PostgresStore {
    async fn alert_insert(&self, new: &NewAlert, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO alerts (dedupe_key, kind, batch_key, message, details,
                 next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&new.dedupe_key)
        .bind(new.kind.as_str())
        .bind(&new.batch_key)
        .bind(&new.message)
        .bind(new.details.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn alerts_claim(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Vec<Alert>> {
        let rows: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH picked AS (
                 SELECT id FROM alerts
                 WHERE (status = 'pending' AND next_attempt_at <= $2)
                    OR (status = 'delivering' AND lease_expires_at <= $2)
                 ORDER BY id LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             UPDATE alerts AS a SET status = 'delivering', attempts = a.attempts + 1,
                 lease_expires_at = $3
             FROM picked WHERE a.id = picked.id
             RETURNING {}",
            ALERT_COLUMNS
                .split(", ")
                .map(|c| format!("a.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(limit)
        .bind(now)
        .bind(now + lease_of(lease))
        .fetch_all(&self.pool)
        .await?;
        alerts_from_rows(rows)
    }

    async fn alert_delivered(
        &self,
        id: i64,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'delivered', delivered_at = $3, lease_expires_at = NULL,
                 last_error = NULL
             WHERE id = $1 AND attempts = $2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(now)
        .execute(&self.pool)
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
            "UPDATE alerts SET status = 'pending', next_attempt_at = $3, last_error = $4,
                 lease_expires_at = NULL
             WHERE id = $1 AND attempts = $2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alert_failed(&self, id: i64, attempt: i32, error: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'failed', last_error = $3, lease_expires_at = NULL
             WHERE id = $1 AND attempts = $2 AND status = 'delivering'",
        )
        .bind(id)
        .bind(attempt)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alerts_count(&self) -> StoreResult<AlertCounts> {
        let rows = sqlx::query("SELECT status, count(*) AS n FROM alerts GROUP BY status")
            .fetch_all(&self.pool)
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
            "SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut alerts = alerts_from_rows(rows)?;
        alerts.reverse();
        Ok(alerts)
    }
}
