//! What both SQL dialects share, written once: the time type, the filters and selectors, and
//! the rows that decode the same way on SQLite and PostgreSQL.
//!
//! Query fragments are built with one generic helper over [`sqlx::QueryBuilder`], bound by
//! what the dialect can encode; only the table alias differs between the backends' queries
//! (`j.` where PostgreSQL joins, nothing on SQLite).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Postgres, QueryBuilder, Sqlite, Type};

pub(crate) use super::time::{Time, from_millis};

use super::{AttemptRecord, JobFilter, JobSelector, Pause, ResponseFilter, StoredResponse};
use crate::domain::{Job, JobStatus, ParseError};

/// A dialect the shared fragments can be written in: one that binds ids, texts and [`Time`].
pub(crate) trait Dialect: Database
where
    for<'t> i64: Encode<'t, Self> + Type<Self>,
    for<'t> String: Encode<'t, Self> + Type<Self>,
    for<'t> &'static str: Encode<'t, Self> + Type<Self>,
    for<'t> Time: Encode<'t, Self> + Type<Self>,
{
}

impl Dialect for Sqlite {}
impl Dialect for Postgres {}

/// ` AND …` for each filter of a job query; `alias` is the jobs table's (`j.` or empty).
pub(crate) fn push_job_filter<DB: Dialect>(
    query: &mut QueryBuilder<DB>,
    filter: &JobFilter,
    alias: &str,
) where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> Time: Encode<'t, DB> + Type<DB>,
{
    if let Some(id) = filter.job_id {
        query.push(format!(" AND {alias}id = ")).push_bind(id);
    }
    if let Some(key) = &filter.batch_key {
        query
            .push(format!(" AND {alias}batch_key = "))
            .push_bind(key.clone());
    }
    if let Some(id) = filter.prompt_id {
        query
            .push(format!(" AND {alias}prompt_id = "))
            .push_bind(id);
    }
    if let Some(id) = filter.model_id {
        query.push(format!(" AND {alias}model_id = ")).push_bind(id);
    }
    if let Some(status) = filter.status {
        query
            .push(format!(" AND {alias}status = "))
            .push_bind(status.as_str());
    }
}

/// ` AND …` narrowing a retry or cancel (`UPDATE prompt_jobs`, no alias) to its jobs.
pub(crate) fn push_selector<DB: Dialect>(query: &mut QueryBuilder<DB>, selector: &JobSelector)
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> Time: Encode<'t, DB> + Type<DB>,
{
    match selector {
        JobSelector::One(id) => {
            query.push(" AND id = ").push_bind(*id);
        }
        JobSelector::Batch { batch_key, status } => {
            query.push(" AND batch_key = ").push_bind(batch_key.clone());
            if let Some(status) = status {
                query.push(" AND status = ").push_bind(status.as_str());
            }
        }
    }
}

/// The columns of a [`ResponseRow`], from `responses` (no alias).
pub(crate) const RESPONSE_COLUMNS: &str = "id, job_id, prompt_id, model_id, batch_key, \
    run_index, text, served_model, finish_reason, prompt_tokens, completion_tokens, \
    total_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, provider_request_id, \
    citations, raw, created_at, \
    (SELECT v.hash FROM prompt_versions v WHERE v.id = responses.prompt_version_id) \
        AS prompt_version, \
    (SELECT v.text FROM prompt_versions v WHERE v.id = responses.prompt_version_id) \
        AS prompt_text";

/// `SELECT … FROM responses` with each filter of `filter`, newest first, one page.
pub(crate) fn responses_query<DB: Dialect>(
    filter: &ResponseFilter,
    page: super::Page,
) -> QueryBuilder<DB>
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> Time: Encode<'t, DB> + Type<DB>,
    DB::Arguments: Default,
{
    let mut query = QueryBuilder::<DB>::new(format!(
        "SELECT {RESPONSE_COLUMNS} FROM responses WHERE 1 = 1"
    ));
    if let Some(id) = filter.prompt_id {
        query.push(" AND prompt_id = ").push_bind(id);
    }
    if let Some(id) = filter.model_id {
        query.push(" AND model_id = ").push_bind(id);
    }
    if let Some(key) = &filter.batch_key {
        query.push(" AND batch_key = ").push_bind(key.clone());
    }
    if let Some(id) = filter.job_id {
        query.push(" AND job_id = ").push_bind(id);
    }
    if let Some(from) = filter.created_from {
        query.push(" AND created_at >= ").push_bind(Time(from));
    }
    if let Some(before) = filter.created_before {
        query.push(" AND created_at < ").push_bind(Time(before));
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(page.limit)
        .push(" OFFSET ")
        .push_bind(page.offset);
    query
}

/// A job status read from the database.
pub(crate) fn parse_status(status: &str) -> Result<JobStatus, sqlx::Error> {
    status
        .parse()
        .map_err(|err: ParseError| sqlx::Error::Decode(Box::new(err)))
}

/// A `prompt_jobs` row as both backends select it (their `JOB_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: i64,
    prompt_id: i64,
    model_id: i64,
    run_index: i32,
    batch_key: String,
    status: String,
    error_message: Option<String>,
    attempt_count: i32,
    max_attempts: i32,
    rate_limited_count: i32,
    scheduled_for: Time,
    next_attempt_at: Time,
    lease_expires_at: Option<Time>,
    started_at: Option<Time>,
    finished_at: Option<Time>,
    created_at: Time,
    prompt_version: Option<String>,
}

impl TryFrom<JobRow> for Job {
    type Error = sqlx::Error;

    fn try_from(row: JobRow) -> Result<Job, sqlx::Error> {
        Ok(Job {
            id: row.id,
            prompt_id: row.prompt_id,
            model_id: row.model_id,
            run_index: row.run_index,
            batch_key: row.batch_key,
            status: parse_status(&row.status)?,
            error_message: row.error_message,
            // The column counts claims (the fence); the job shows the attempts spent.
            attempt_count: row.attempt_count - row.rate_limited_count,
            max_attempts: row.max_attempts,
            rate_limited_count: row.rate_limited_count,
            scheduled_for: row.scheduled_for.0,
            next_attempt_at: row.next_attempt_at.0,
            lease_expires_at: row.lease_expires_at.map(Into::into),
            started_at: row.started_at.map(Into::into),
            finished_at: row.finished_at.map(Into::into),
            created_at: row.created_at.0,
            prompt_version: row.prompt_version,
        })
    }
}

/// Reads a job from a row holding the job columns (and perhaps others).
pub(crate) fn job_from_row<'r, R: sqlx::Row>(row: &'r R) -> Result<Job, sqlx::Error>
where
    JobRow: sqlx::FromRow<'r, R>,
{
    Job::try_from(<JobRow as sqlx::FromRow<R>>::from_row(row)?)
}

/// A `job_attempts` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    job_id: i64,
    attempt: i32,
    started_at: Option<Time>,
    finished_at: Time,
    outcome: String,
    http_status: Option<i32>,
    error_class: Option<String>,
    error_message: Option<String>,
}

impl From<AttemptRow> for AttemptRecord {
    fn from(row: AttemptRow) -> Self {
        AttemptRecord {
            job_id: row.job_id,
            attempt: row.attempt,
            started_at: row.started_at.map(Into::into),
            finished_at: row.finished_at.0,
            outcome: row.outcome,
            http_status: row.http_status,
            error_class: row.error_class,
            error_message: row.error_message,
        }
    }
}

/// The attempts of a job, in attempt order.
pub(crate) const ATTEMPTS_OF_JOB: &str = "SELECT job_id, attempt, started_at, finished_at, \
    outcome, http_status, error_class, error_message FROM job_attempts WHERE job_id = $1 \
    ORDER BY attempt, id";

/// A `pauses` row.
#[derive(sqlx::FromRow)]
pub(crate) struct PauseRow {
    scope: String,
    until: Time,
    reason: String,
    strikes: i32,
}

impl From<PauseRow> for Pause {
    fn from(row: PauseRow) -> Self {
        Pause {
            scope: row.scope,
            until: row.until.0,
            reason: row.reason,
            strikes: row.strikes,
        }
    }
}

/// The pauses in force at `$1`, by scope.
pub(crate) const PAUSES_ACTIVE: &str =
    "SELECT scope, until, reason, strikes FROM pauses WHERE until > $1 ORDER BY scope";

/// A `responses` row as [`RESPONSE_COLUMNS`] selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct ResponseRow {
    id: i64,
    job_id: i64,
    prompt_id: i64,
    model_id: i64,
    batch_key: String,
    run_index: i32,
    text: String,
    served_model: Option<String>,
    finish_reason: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    total_tokens: Option<i64>,
    cached_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<f64>,
    latency_ms: i64,
    provider_request_id: Option<String>,
    citations: Option<String>,
    raw: Option<String>,
    created_at: Time,
    prompt_version: Option<String>,
    prompt_text: Option<String>,
}

impl From<ResponseRow> for StoredResponse {
    fn from(row: ResponseRow) -> Self {
        StoredResponse {
            id: row.id,
            job_id: row.job_id,
            prompt_id: row.prompt_id,
            model_id: row.model_id,
            batch_key: row.batch_key,
            run_index: row.run_index,
            text: row.text,
            served_model: row.served_model,
            finish_reason: row.finish_reason,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            total_tokens: row.total_tokens,
            cached_tokens: row.cached_tokens,
            reasoning_tokens: row.reasoning_tokens,
            cost_usd: row.cost_usd,
            latency_ms: row.latency_ms,
            provider_request_id: row.provider_request_id,
            citations: row.citations,
            raw: row.raw,
            created_at: row.created_at.0,
            prompt_version: row.prompt_version,
            prompt_text: row.prompt_text,
        }
    }
}

/// Rate limits in the one order every reservation locks them in (by scope, each once), so
/// that no two reservations can deadlock.
pub(crate) fn lock_order(
    costs: &[(String, std::time::Duration)],
) -> Vec<(String, std::time::Duration)> {
    let mut costs = costs.to_vec();
    costs.sort_by(|a, b| a.0.cmp(&b.0));
    costs.dedup_by(|a, b| a.0 == b.0);
    costs
}

/// An attempt's outcome as the columns both backends write.
pub(crate) struct OutcomeColumns<'a> {
    /// `succeeded`, `retry` or `failed`, as in `job_attempts.outcome`.
    pub name: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<&'a crate::domain::AttemptError>,
    pub http_status: Option<u16>,
    pub refund_attempt: bool,
}

impl<'a> OutcomeColumns<'a> {
    pub(crate) fn of(outcome: &'a crate::domain::Outcome) -> Self {
        use crate::domain::Outcome;
        match outcome {
            Outcome::Succeeded(response) => OutcomeColumns {
                name: "succeeded",
                next_attempt_at: None,
                error: None,
                http_status: response.http_status,
                refund_attempt: false,
            },
            Outcome::Retry {
                at,
                error,
                refund_attempt,
            } => OutcomeColumns {
                name: "retry",
                next_attempt_at: Some(*at),
                error: Some(error),
                http_status: error.http_status,
                refund_attempt: *refund_attempt,
            },
            Outcome::Failed(error) => OutcomeColumns {
                name: "failed",
                next_attempt_at: None,
                error: Some(error),
                http_status: error.http_status,
                refund_attempt: false,
            },
        }
    }
}
