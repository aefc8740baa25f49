//! The user's actions on jobs (cancel, retry) and the job and response queries, on PostgreSQL.

use super::*;
use crate::store::AttemptRecord;
use crate::store::Jobs;
use crate::store::sql::{
    ATTEMPTS_OF_JOB, AttemptRow, ResponseRow, jobs_page_query, jobs_summary_query, responses_query,
    summary_of,
};

impl Jobs for PostgresStore {
    async fn jobs_cancel(&self, selector: &JobSelector, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Postgres>::new(
            "UPDATE prompt_jobs SET status = 'skipped', finished_at = ",
        );
        query
            .push_bind(now)
            .push(", error_message = ")
            .push_bind(SKIPPED_CANCELLED)
            .push(" WHERE id IN (SELECT job_id FROM job_queue) AND status = 'queued'");
        push_selector(&mut query, selector);
        Ok(query.build().execute(&self.pool).await?.rows_affected())
    }

    async fn jobs_retry(
        &self,
        selector: &JobSelector,
        extra_attempts: i32,
        now: impl Into<Clock> + Send,
    ) -> StoreResult<u64> {
        let now: Clock = now.into();
        let mut tx = self.pool.begin().await?;
        let mut query = QueryBuilder::<Postgres>::new(
            "UPDATE prompt_jobs SET status = 'queued', finished_at = NULL, max_attempts = attempt_count - rate_limited_count + ",
        );
        query
            .push_bind(extra_attempts)
            .push(", next_attempt_at = COALESCE(")
            .push_bind(now.fixed())
            .push("::timestamptz, now()) WHERE status IN ('failed', 'skipped')");
        push_selector(&mut query, selector);
        let retried = query.build().execute(&mut *tx).await?.rows_affected();
        if retried > 0 {
            notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(retried)
    }

    async fn jobs_due_ids(
        &self,
        now: impl Into<Clock> + Send,
        limit: i64,
        except: &[ModelId],
    ) -> StoreResult<Vec<JobId>> {
        let now: Clock = now.into();
        Ok(sqlx::query_scalar(
            "SELECT q.job_id FROM job_queue q JOIN prompt_jobs j ON j.id = q.job_id
             WHERE q.next_attempt_at <= COALESCE($1::timestamptz, now())
                AND q.model_id <> ALL($3::bigint[]) AND j.status = 'queued'
             ORDER BY q.next_attempt_at, q.job_id LIMIT $2",
        )
        .bind(now.fixed())
        .bind(limit)
        .bind(except)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn job_get(&self, id: JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM prompt_jobs j WHERE j.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| job_from_row(&row)).transpose()?)
    }

    async fn jobs_list(&self, filter: &JobFilter, page: Page) -> StoreResult<Vec<Job>> {
        let rows = jobs_page_query::<Postgres>(JOB_COLUMNS, "j.", filter, page)
            .build()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    async fn jobs_summary(&self, filter: &JobFilter) -> StoreResult<Summary> {
        let rows = jobs_summary_query::<Postgres>(filter, "j.")
            .build_query_as()
            .fetch_all(&self.pool)
            .await?;
        Ok(summary_of(rows)?)
    }

    async fn jobs_count_expired(&self, now: impl Into<Clock> + Send) -> StoreResult<i64> {
        let now: Clock = now.into();
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM job_claims r JOIN prompt_jobs j ON j.id = r.job_id
             WHERE j.status = 'processing'
                AND j.lease_expires_at < COALESCE($1::timestamptz, now())",
        )
        .bind(now.fixed())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn job_attempts(&self, id: JobId) -> StoreResult<Vec<AttemptRecord>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_OF_JOB)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn jobs_queued_exist(&self, models: &[ModelId], except: JobId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM job_queue q JOIN prompt_jobs j ON j.id = q.job_id
                WHERE j.status = 'queued' AND q.job_id <> $2 AND q.model_id = ANY($1))",
        )
        .bind(models)
        .bind(except)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn responses_list(
        &self,
        filter: &ResponseFilter,
        page: Page,
    ) -> StoreResult<Vec<StoredResponse>> {
        let rows: Vec<ResponseRow> = responses_query::<Postgres>(filter, page)
            .build_query_as()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
