//! Finishing a batch of attempts on PostgreSQL in one statement, whatever its size.
//!
//! The batch travels as one array per column (`unnest`): the fenced status change, the
//! attempt records and the response inserts are data-modifying CTEs of one statement, so they
//! commit together, or not at all. A success writes its answer and no attempt record (the
//! answer records the attempt); the fence lets one attempt of a job succeed at most once, so
//! the answer needs no `ON CONFLICT` (a speculative insertion costs a WAL record per row).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Db;

use crate::domain::{Finish, FinishResult, Outcome};
use crate::store::sql::parse_status;
use crate::store::{Clock, OutcomeColumns, StoreResult};

/// Writes the finishes at `now`; a retry keeps the delay its worker chose, counted from `now`.
pub(super) async fn finish_batch(
    pool: &Db,
    finishes: &[Finish],
    now: Clock,
) -> StoreResult<Vec<FinishResult>> {
    let columns = FinishColumns::from(finishes);
    let responses = ResponseColumns::from(finishes);
    // One statement: the fenced status change, the attempt record and the response insert
    // commit together, or not at all.
    let rows = sqlx::query(
            "WITH input AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[],
                    $5::timestamptz[], $6::text[], $7::int[], $8::text[], $23::bool[])
                    WITH ORDINALITY
                    AS t(job_id, attempt, outcome, finished_at, next_attempt_at, error_class,
                         http_status, error_message, refund, ord)
            ), clock AS (
                SELECT COALESCE($25::timestamptz, now()) AS now
            ), updated AS (
                -- A retry keeps the delay its worker chose, counted from the database's now.
                UPDATE prompt_jobs j SET
                    status = CASE i.outcome WHEN 'retry' THEN 'queued' ELSE i.outcome END,
                    -- A failed job always has an error (its index holds the errored jobs).
                    error_message = CASE WHEN i.outcome = 'failed'
                        THEN COALESCE(i.error_message, 'failed') ELSE i.error_message END,
                    finished_at = CASE WHEN i.outcome = 'retry' THEN NULL ELSE c.now END,
                    next_attempt_at = COALESCE(c.now + LEAST(i.next_attempt_at - i.finished_at,
                        interval '366 days'), j.next_attempt_at),
                    rate_limited_count = j.rate_limited_count + CASE WHEN i.refund THEN 1 ELSE 0 END,
                    lease_expires_at = NULL
                FROM input i, clock c
                -- Each job is found by its key: `id = ANY` gives the planner the ids to look
                -- up (joined to the input alone, statistics that say no job is processing —
                -- those of a batch analysed at its enqueue — made it scan the whole job table
                -- on every finish). The job must hold an open attempt (`processing`, or
                -- `submitted` in a provider batch): written as none of the other states, on an
                -- expression, so that the planner does not read it from those statistics
                -- (nor, before migration 0017, walk a partial index of processing jobs). Read
                -- as no job at all, the
                -- plain test made it join each job found to every input row (365 jobs: 133,000
                -- comparisons, 140 ms a finish). A new state must be named here.
                WHERE j.id = ANY($1::bigint[]) AND j.id = i.job_id
                    AND (j.status || '') NOT IN ('queued', 'succeeded', 'failed', 'skipped')
                    AND j.attempt_count = i.attempt
                RETURNING j.id, j.attempt_count, j.status, j.started_at, j.prompt_id, j.model_id,
                    j.batch_key, j.run_index, j.prompt_version_id, c.now AS finished_at
            ), attempts AS (
                INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome,
                    http_status, error_class, error_message)
                SELECT u.id, i.attempt, u.started_at, u.finished_at, i.outcome, i.http_status,
                    i.error_class, i.error_message
                FROM updated u JOIN input i ON i.job_id = u.id AND i.attempt = u.attempt_count
                WHERE i.outcome <> 'succeeded'
            ), response_input AS (
                SELECT * FROM unnest($9::bigint[], $24::int[], $10::text[], $11::text[], $12::text[],
                    $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
                    $18::float8[], $19::bigint[], $20::text[], $21::text[], $22::text[],
                    $26::int[])
                    AS r(job_id, attempt, text, served_model, finish_reason, prompt_tokens,
                         completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
                         cost_usd, latency_ms, provider_request_id, citations, raw, http_status)
            ), inserted AS (
                INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text,
                    served_model, finish_reason, prompt_tokens, completion_tokens, total_tokens,
                    cached_tokens, reasoning_tokens, cost_usd, latency_ms, provider_request_id,
                    citations, raw, created_at, prompt_version_id, http_status)
                SELECT r.job_id, u.prompt_id, u.model_id, u.batch_key, u.run_index, r.text,
                    r.served_model, r.finish_reason, r.prompt_tokens, r.completion_tokens,
                    r.total_tokens, r.cached_tokens, r.reasoning_tokens, r.cost_usd,
                    r.latency_ms, r.provider_request_id, r.citations, r.raw, u.finished_at,
                    u.prompt_version_id, r.http_status
                FROM response_input r
                JOIN updated u ON u.id = r.job_id AND u.attempt_count = r.attempt
                -- A job that somehow has an answer already keeps it (never two answers).
                WHERE NOT EXISTS (SELECT 1 FROM responses x WHERE x.job_id = r.job_id)
                RETURNING id, job_id
            )
            -- A job the fence turned away is looked up by its key for its status; the others
            -- are not read again. The answers are joined by the input's key: the statistics
            -- of a batch analysed at its enqueue make the planner expect one updated job, and
            -- it then joined every updated job to every answer.
            SELECT i.job_id, u.id IS NOT NULL AS applied,
                COALESCE(u.status, (SELECT j.status FROM prompt_jobs j WHERE j.id = i.job_id))
                    AS status,
                ins.id AS response_id
            FROM input i
            LEFT JOIN updated u ON u.id = i.job_id AND u.attempt_count = i.attempt
            LEFT JOIN inserted ins ON ins.job_id = i.job_id AND u.id IS NOT NULL
            ORDER BY i.ord",
        )
        .bind(&columns.job_ids)
        .bind(&columns.attempts)
        .bind(&columns.outcomes)
        .bind(&columns.finished_at)
        .bind(&columns.next_attempt_at)
        .bind(&columns.error_classes)
        .bind(&columns.http_statuses)
        .bind(&columns.error_messages)
        .bind(&responses.job_ids)
        .bind(&responses.texts)
        .bind(&responses.served_models)
        .bind(&responses.finish_reasons)
        .bind(&responses.prompt_tokens)
        .bind(&responses.completion_tokens)
        .bind(&responses.total_tokens)
        .bind(&responses.cached_tokens)
        .bind(&responses.reasoning_tokens)
        .bind(&responses.costs)
        .bind(&responses.latencies)
        .bind(&responses.request_ids)
        .bind(&responses.citations)
        .bind(&responses.raws)
        .bind(&columns.refunds)
        .bind(&responses.attempts)
        .bind(now.fixed())
        .bind(&responses.http_statuses)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let status: Option<String> = row.try_get("status")?;
            Ok(FinishResult {
                job_id: row.try_get("job_id")?,
                applied: row.try_get("applied")?,
                status: status.as_deref().map(parse_status).transpose()?,
                response_id: row.try_get("response_id")?,
            })
        })
        .collect()
}

/// The finishes of a batch as one array per column, for `unnest`.
struct FinishColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    outcomes: Vec<&'static str>,
    finished_at: Vec<DateTime<Utc>>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    error_classes: Vec<Option<&'static str>>,
    http_statuses: Vec<Option<i32>>,
    error_messages: Vec<Option<&'a str>>,
    refunds: Vec<bool>,
}

impl<'a> From<&'a [Finish]> for FinishColumns<'a> {
    fn from(finishes: &'a [Finish]) -> Self {
        let mut columns = FinishColumns {
            job_ids: Vec::with_capacity(finishes.len()),
            attempts: Vec::with_capacity(finishes.len()),
            outcomes: Vec::with_capacity(finishes.len()),
            finished_at: Vec::with_capacity(finishes.len()),
            next_attempt_at: Vec::with_capacity(finishes.len()),
            error_classes: Vec::with_capacity(finishes.len()),
            http_statuses: Vec::with_capacity(finishes.len()),
            error_messages: Vec::with_capacity(finishes.len()),
            refunds: Vec::with_capacity(finishes.len()),
        };
        for finish in finishes {
            columns.job_ids.push(finish.job_id);
            columns.attempts.push(finish.attempt);
            columns.finished_at.push(finish.finished_at);
            let parts = OutcomeColumns::of(&finish.outcome);
            columns.outcomes.push(parts.name);
            columns.next_attempt_at.push(parts.next_attempt_at);
            columns
                .error_classes
                .push(parts.error.map(|e| e.class.as_str()));
            columns.http_statuses.push(parts.http_status.map(i32::from));
            columns
                .error_messages
                .push(parts.error.map(|e| e.message.as_str()));
            columns.refunds.push(parts.refund_attempt);
        }
        columns
    }
}

/// The responses of the successful finishes of a batch, one array per column.
#[derive(Default)]
struct ResponseColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    texts: Vec<&'a str>,
    served_models: Vec<Option<&'a str>>,
    finish_reasons: Vec<Option<&'a str>>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    total_tokens: Vec<Option<i64>>,
    cached_tokens: Vec<Option<i64>>,
    reasoning_tokens: Vec<Option<i64>>,
    costs: Vec<Option<f64>>,
    latencies: Vec<i64>,
    request_ids: Vec<Option<&'a str>>,
    citations: Vec<Option<&'a str>>,
    raws: Vec<Option<&'a str>>,
    http_statuses: Vec<Option<i32>>,
}

impl<'a> From<&'a [Finish]> for ResponseColumns<'a> {
    fn from(finishes: &'a [Finish]) -> Self {
        let mut columns = ResponseColumns::default();
        for finish in finishes {
            let Outcome::Succeeded(response) = &finish.outcome else {
                continue;
            };
            columns.job_ids.push(finish.job_id);
            columns.attempts.push(finish.attempt);
            columns.texts.push(&response.text);
            columns.served_models.push(response.served_model.as_deref());
            columns
                .finish_reasons
                .push(response.finish_reason.as_deref());
            columns.prompt_tokens.push(response.prompt_tokens);
            columns.completion_tokens.push(response.completion_tokens);
            columns.total_tokens.push(response.total_tokens);
            columns.cached_tokens.push(response.cached_tokens);
            columns.reasoning_tokens.push(response.reasoning_tokens);
            columns.costs.push(response.cost_usd);
            columns.latencies.push(response.latency_ms);
            columns
                .request_ids
                .push(response.provider_request_id.as_deref());
            columns.citations.push(response.citations.as_deref());
            columns.raws.push(response.raw.as_deref());
            columns
                .http_statuses
                .push(response.http_status.map(i32::from));
        }
        columns
    }
}
