//! What both SQL dialects share, written once: the time type, the filters and selectors, and
//! the rows that decode the same way on SQLite and PostgreSQL.
//!
//! Query fragments are built with one generic helper over [`sqlx::QueryBuilder`], bound by
//! what the dialect can encode; only the table alias differs between the backends' queries
//! (`j.` where PostgreSQL joins, nothing on SQLite).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Postgres, QueryBuilder, Sqlite, Type};

pub(crate) use super::rows::*;
pub(crate) use super::time::{Time, from_millis};

use super::{JobFilter, JobSelector, ResponseFilter};

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

/// `SELECT columns FROM prompt_jobs [j]` with each filter, one page by id; `alias` is `j.` or
/// empty, as `columns` expects.
pub(crate) fn jobs_page_query<DB: Dialect>(
    columns: &str,
    alias: &str,
    filter: &JobFilter,
    page: super::Page,
) -> QueryBuilder<DB>
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> Time: Encode<'t, DB> + Type<DB>,
    DB::Arguments: Default,
{
    let table = alias.trim_end_matches('.');
    let mut query = QueryBuilder::<DB>::new(format!(
        "SELECT {columns} FROM prompt_jobs {table} WHERE 1 = 1"
    ));
    push_job_filter(&mut query, filter, alias);
    query
        .push(format!(" ORDER BY {alias}id LIMIT "))
        .push_bind(page.limit)
        .push(" OFFSET ")
        .push_bind(page.offset);
    query
}

/// `(status, count)` of the matching jobs; `alias` is the jobs table's (`j.` or empty).
pub(crate) fn jobs_summary_query<DB: Dialect>(filter: &JobFilter, alias: &str) -> QueryBuilder<DB>
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> Time: Encode<'t, DB> + Type<DB>,
    DB::Arguments: Default,
{
    let table = alias.trim_end_matches('.');
    let mut query = QueryBuilder::<DB>::new(format!(
        "SELECT {alias}status, count(*) AS n FROM prompt_jobs {table} WHERE 1 = 1"
    ));
    push_job_filter(&mut query, filter, alias);
    query.push(format!(" GROUP BY {alias}status"));
    query
}

/// Folds `(status, count)` rows into a summary.
pub(crate) fn summary_of(rows: Vec<(String, i64)>) -> Result<crate::domain::Summary, sqlx::Error> {
    let mut summary = crate::domain::Summary::default();
    for (status, n) in rows {
        summary.add(parse_status(&status)?, n);
    }
    Ok(summary)
}
