//! Finishing a batch of attempts on SQLite in three set-based statements, whatever its size.
//!
//! The batch travels as JSON arrays read with `json_each`, so that the fenced status change,
//! the attempt records and the responses are one statement each instead of three per job:
//! through sqlx's SQLite driver every statement is a hop to the connection's thread, and at
//! thousands of jobs a second those hops were the cost. It runs inside the caller's
//! `BEGIN IMMEDIATE` transaction, so the three statements commit together. A success writes
//! its answer and no attempt record (the answer records the attempt), so a batch of successes
//! is two statements.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::Row;

use chrono::{DateTime, Utc};

use super::{SqliteTx, delay_of, ms, parse_status};
use crate::domain::{Finish, FinishResult, JobId, JobStatus, Outcome};
use crate::store::{OutcomeColumns, StoreResult};

/// Writes the finishes at `now`; a retry keeps the delay its worker chose, counted from `now`.
pub(super) async fn finish_batch(
    tx: &mut SqliteTx,
    finishes: &[Finish],
    now: DateTime<Utc>,
) -> StoreResult<Vec<FinishResult>> {
    let input: Vec<Value> = finishes
        .iter()
        .map(|finish| {
            let parts = OutcomeColumns::of(&finish.outcome);
            let next_attempt_at = parts.next_attempt_at.map(|at| {
                let delay = (at - finish.finished_at).to_std().unwrap_or_default();
                ms(now + delay_of(delay))
            });
            json!([
                finish.job_id,
                finish.attempt,
                parts.name,
                ms(now),
                next_attempt_at,
                parts.error.map(|e| e.class.as_str()),
                parts.http_status,
                parts.error.map(|e| e.message.as_str()),
                i32::from(parts.refund_attempt),
            ])
        })
        .collect();
    let input = Value::Array(input).to_string();

    // The fenced status change: only attempts that still own their job change anything.
    let rows = sqlx::query(
        "UPDATE prompt_jobs SET
            status = CASE i.value ->> 2 WHEN 'retry' THEN 'queued' ELSE i.value ->> 2 END,
            error_message = i.value ->> 7,
            finished_at = CASE WHEN i.value ->> 2 = 'retry' THEN NULL ELSE i.value ->> 3 END,
            next_attempt_at = COALESCE(i.value ->> 4, next_attempt_at),
            rate_limited_count = rate_limited_count + (i.value ->> 8),
            lease_expires_at = NULL
         FROM jsonb_each(?1) AS i
         WHERE prompt_jobs.id = i.value ->> 0
           AND prompt_jobs.status IN ('processing', 'submitted')
           AND prompt_jobs.attempt_count = i.value ->> 1
         RETURNING id, attempt_count, status",
    )
    .bind(&input)
    .fetch_all(&mut **tx)
    .await?;
    // Keyed by (job, attempt): a stale attempt of a job whose live attempt finishes in the same
    // batch must not pass for it.
    let mut applied: HashMap<(JobId, i32), JobStatus> = HashMap::with_capacity(rows.len());
    for row in &rows {
        applied.insert(
            (row.try_get("id")?, row.try_get("attempt_count")?),
            parse_status(&row.try_get::<String, _>("status")?)?,
        );
    }
    if applied.is_empty() {
        return stale_results(tx, finishes, &applied, &HashMap::new()).await;
    }
    let unsuccessful: Vec<i64> = finishes
        .iter()
        .filter(|f| !matches!(f.outcome, Outcome::Succeeded(_)))
        .filter(|f| applied.contains_key(&(f.job_id, f.attempt)))
        .map(|f| f.job_id)
        .collect();
    if !unsuccessful.is_empty() {
        sqlx::query(
            "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                http_status, error_class, error_message)
             SELECT j.id, i.value ->> 1, j.started_at, i.value ->> 3, i.value ->> 2,
                i.value ->> 6, i.value ->> 5, i.value ->> 7
             FROM jsonb_each(?1) AS i
             JOIN prompt_jobs j ON j.id = i.value ->> 0 AND j.attempt_count = i.value ->> 1
             WHERE j.id IN (SELECT value FROM json_each(?2))",
        )
        .bind(&input)
        .bind(Value::from(unsuccessful).to_string())
        .execute(&mut **tx)
        .await?;
    }

    let responses: Vec<Value> = finishes
        .iter()
        .filter(|finish| applied.contains_key(&(finish.job_id, finish.attempt)))
        .filter_map(|finish| match &finish.outcome {
            Outcome::Succeeded(r) => Some(json!([
                finish.job_id,
                r.text,
                r.served_model,
                r.finish_reason,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.cached_tokens,
                r.reasoning_tokens,
                r.cost_usd,
                r.latency_ms,
                r.provider_request_id,
                r.citations,
                r.raw,
                ms(now),
                r.http_status,
            ])),
            _ => None,
        })
        .collect();
    let mut response_ids = HashMap::new();
    if !responses.is_empty() {
        let rows = sqlx::query(
            "INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text,
                served_model, finish_reason, prompt_tokens, completion_tokens, total_tokens,
                cached_tokens, reasoning_tokens, cost_usd, latency_ms, provider_request_id,
                citations, raw, created_at, prompt_version_id, http_status)
             SELECT j.id, j.prompt_id, j.model_id, j.batch_key, j.run_index, r.value ->> 1,
                r.value ->> 2, r.value ->> 3, r.value ->> 4, r.value ->> 5, r.value ->> 6,
                r.value ->> 7, r.value ->> 8, r.value ->> 9, r.value ->> 10, r.value ->> 11,
                r.value ->> 12, r.value ->> 13, r.value ->> 14, j.prompt_version_id,
                r.value ->> 15
             FROM jsonb_each(?1) AS r
             JOIN prompt_jobs j ON j.id = r.value ->> 0
             WHERE TRUE
             ON CONFLICT (job_id) DO NOTHING
             RETURNING id, job_id",
        )
        .bind(Value::Array(responses).to_string())
        .fetch_all(&mut **tx)
        .await?;
        for row in &rows {
            response_ids.insert(
                row.try_get::<i64, _>("job_id")?,
                row.try_get::<i64, _>("id")?,
            );
        }
    }
    stale_results(tx, finishes, &applied, &response_ids).await
}

/// The result of every finish, in input order; stale ones report the job's current status.
async fn stale_results(
    tx: &mut SqliteTx,
    finishes: &[Finish],
    applied: &HashMap<(JobId, i32), JobStatus>,
    response_ids: &HashMap<JobId, i64>,
) -> StoreResult<Vec<FinishResult>> {
    let stale: Vec<JobId> = finishes
        .iter()
        .filter(|f| !applied.contains_key(&(f.job_id, f.attempt)))
        .map(|f| f.job_id)
        .collect();
    let mut current: HashMap<JobId, JobStatus> = HashMap::new();
    if !stale.is_empty() {
        let rows = sqlx::query(
            "SELECT id, status FROM prompt_jobs WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(Value::from(stale).to_string())
        .fetch_all(&mut **tx)
        .await?;
        for row in &rows {
            current.insert(
                row.try_get("id")?,
                parse_status(&row.try_get::<String, _>("status")?)?,
            );
        }
    }
    Ok(finishes
        .iter()
        .map(
            |finish| match applied.get(&(finish.job_id, finish.attempt)) {
                Some(status) => FinishResult {
                    job_id: finish.job_id,
                    applied: true,
                    status: Some(*status),
                    response_id: response_ids.get(&finish.job_id).copied(),
                },
                None => FinishResult {
                    job_id: finish.job_id,
                    applied: false,
                    status: current.get(&finish.job_id).copied(),
                    response_id: None,
                },
            },
        )
        .collect())
}
