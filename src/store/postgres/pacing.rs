//! Pauses and rate reservations (GCRA, `tat` as `timestamptz`) on PostgreSQL.

use super::*;
use crate::store::sql::{PAUSES_ACTIVE, PauseRow};
use crate::store::{Pacing, RateGrant, lock_order};

impl Pacing for PostgresStore {
    async fn pause(
        &self,
        scope: PauseScope,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, until, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope) DO UPDATE SET
                until = GREATEST(pauses.until, EXCLUDED.until), reason = EXCLUDED.reason",
        )
        .bind(scope.key())
        .bind(until)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let moved = match scope {
            PauseScope::Model(id) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = $2
                     WHERE id IN (SELECT job_id FROM job_queue
                            WHERE model_id = $1 AND next_attempt_at < $2)
                        AND status = 'queued' AND next_attempt_at < $2",
            )
            .bind(id)
            .bind(until)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            PauseScope::Provider(kind) => sqlx::query(
                "UPDATE prompt_jobs SET next_attempt_at = $2
                     WHERE id IN (SELECT job_id FROM job_queue WHERE next_attempt_at < $2
                            AND model_id IN (SELECT id FROM models WHERE provider = $1))
                        AND status = 'queued' AND next_attempt_at < $2",
            )
            .bind(kind.as_str())
            .bind(until)
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
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn pause_strike(&self, scope: PauseScope, now: DateTime<Utc>) -> StoreResult<i32> {
        // A new row is no pause yet (`until` = now): only the count starts.
        Ok(sqlx::query_scalar(
            "INSERT INTO pauses (scope, until, reason, created_at, strikes)
             VALUES ($1, $2, '', $2, 1)
             ON CONFLICT (scope) DO UPDATE SET strikes = pauses.strikes + 1
             RETURNING strikes",
        )
        .bind(scope.key())
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn pause_strikes_clear(&self, scope: PauseScope) -> StoreResult<()> {
        sqlx::query("UPDATE pauses SET strikes = 0 WHERE scope = $1 AND strikes > 0")
            .bind(scope.key())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rate_reserve(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        cost: Duration,
    ) -> StoreResult<DateTime<Utc>> {
        let micros = i64::try_from(cost.as_micros()).unwrap_or(i64::MAX);
        let tat: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, tat) VALUES ($1, $2 + $3 * interval '1 microsecond')
             ON CONFLICT (scope) DO UPDATE SET
                tat = GREATEST(rate_limits.tat, $2) + $3 * interval '1 microsecond'
             RETURNING tat",
        )
        .bind(scope)
        .bind(now)
        .bind(micros)
        .fetch_one(&self.pool)
        .await?;
        Ok(tat - chrono::Duration::microseconds(micros))
    }

    async fn rate_reserve_within(
        &self,
        costs: &[(String, Duration)],
        now: DateTime<Utc>,
        max_wait: Duration,
    ) -> StoreResult<RateGrant> {
        let costs = &lock_order(costs)[..];
        let scopes: Vec<&str> = costs.iter().map(|(scope, _)| scope.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rate_limits (scope, tat) SELECT s, $2 FROM unnest($1::text[]) AS s
             ORDER BY s ON CONFLICT (scope) DO NOTHING",
        )
        .bind(&scopes)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let tats: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT tat FROM rate_limits WHERE scope = ANY($1) ORDER BY scope FOR UPDATE",
        )
        .bind(&scopes)
        .fetch_all(&mut *tx)
        .await?;
        let start = tats.into_iter().fold(now, DateTime::max);
        if (start - now).to_std().unwrap_or_default() > max_wait {
            tx.rollback().await?;
            return Ok(RateGrant::Busy(start));
        }
        let next: Vec<DateTime<Utc>> = costs
            .iter()
            .map(|(_, cost)| {
                chrono::Duration::from_std(*cost)
                    .ok()
                    .and_then(|cost| start.checked_add_signed(cost))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            })
            .collect();
        sqlx::query(
            "UPDATE rate_limits r SET tat = t.tat
             FROM unnest($1::text[], $2::timestamptz[]) AS t(scope, tat) WHERE r.scope = t.scope",
        )
        .bind(&scopes)
        .bind(&next)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RateGrant::Reserved(start))
    }

    async fn rate_adjust(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        delta: chrono::TimeDelta,
    ) -> StoreResult<()> {
        let micros = delta.num_microseconds().unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE rate_limits SET tat = CASE WHEN $3 >= 0
                THEN GREATEST(tat, $2) + $3 * interval '1 microsecond'
                ELSE GREATEST(tat + $3 * interval '1 microsecond', $2) END
             WHERE scope = $1",
        )
        .bind(scope)
        .bind(now)
        .bind(micros)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
