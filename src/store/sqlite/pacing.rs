//! Pauses and rate reservations (GCRA, `tat` in milliseconds) on SQLite.

use super::*;
use crate::store::sql::{PAUSES_ACTIVE, PauseRow};
use crate::store::{Pacing, RateGrant, lock_order};

impl Pacing for SqliteStore {
    async fn pause(
        &self,
        scope: PauseScope,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope) DO UPDATE SET
                until = max(pauses.until, excluded.until), reason = excluded.reason",
        )
        .bind(scope.key())
        .bind(ms(until))
        .bind(reason)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let moved = match scope {
            PauseScope::Model(id) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = ?2
                     WHERE model_id = ?1 AND status = 'queued' AND next_attempt_at < ?2",
            )
            .bind(id)
            .bind(ms(until))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Provider(kind) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = ?2
                     WHERE status = 'queued' AND next_attempt_at < ?2
                       AND model_id IN (SELECT id FROM models WHERE provider = ?1)",
            )
            .bind(kind.as_str())
            .bind(ms(until))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Endpoint(_) => 0,
        };
        tx.commit().await?;
        Ok(moved)
    }

    async fn pauses_active(&self, now: DateTime<Utc>) -> StoreResult<Vec<Pause>> {
        let rows: Vec<PauseRow> = sqlx::query_as(PAUSES_ACTIVE)
            .bind(Time(now))
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32> {
        let mut tx = self.begin().await?;
        // A new row is no pause yet (`until` = now): only the count starts.
        let strikes = sqlx::query_scalar(
            "INSERT INTO pauses (scope, until, reason, created_at, strikes)
             VALUES (?1, ?2, '', ?2, 1)
             ON CONFLICT (scope) DO UPDATE SET strikes = pauses.strikes + 1
             RETURNING strikes",
        )
        .bind(scope.key())
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(strikes)
    }

    async fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pauses SET strikes = 0 WHERE scope = ?1 AND strikes > 0")
            .bind(scope.key())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: Duration,
    ) -> StoreResult<DateTime<Utc>> {
        let cost_ms = i64::try_from(cost.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        let tat: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, tat) VALUES (?1, ?2 + ?3)
             ON CONFLICT (scope) DO UPDATE SET tat = max(rate_limits.tat, ?2) + ?3
             RETURNING tat",
        )
        .bind(scope)
        .bind(ms(now))
        .bind(cost_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(time(tat - cost_ms))
    }

    async fn rate_reserve_within(
        &self,
        costs: &[(String, Duration)],
        now: DateTime<Utc>,
        max_wait: Duration,
    ) -> StoreResult<RateGrant> {
        let costs = &lock_order(costs)[..];
        let mut tx = self.begin().await?;
        let mut start = ms(now);
        for (scope, _) in costs {
            let tat: Option<i64> =
                sqlx::query_scalar("SELECT tat FROM rate_limits WHERE scope = ?1")
                    .bind(scope)
                    .fetch_optional(&mut *tx)
                    .await?;
            start = start.max(tat.unwrap_or(i64::MIN));
        }
        if u64::try_from(start - ms(now)).unwrap_or(0) > max_wait.as_millis() as u64 {
            tx.rollback().await?;
            return Ok(RateGrant::Busy(time(start)));
        }
        for (scope, cost) in costs {
            // Rounded up: milliseconds are the column's unit, and a limit must not be exceeded.
            let cost_ms = i64::try_from(cost.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO rate_limits (scope, tat) VALUES (?1, ?2)
                 ON CONFLICT (scope) DO UPDATE SET tat = excluded.tat",
            )
            .bind(scope)
            .bind(start.saturating_add(cost_ms))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RateGrant::Reserved(time(start)))
    }

    async fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE rate_limits SET tat = CASE WHEN ?3 >= 0 THEN max(tat, ?2) + ?3
                ELSE max(tat + ?3, ?2) END
             WHERE scope = ?1",
        )
        .bind(scope)
        .bind(ms(now))
        .bind(delta.num_milliseconds())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
