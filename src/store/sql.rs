//! What both SQL dialects share, written once: the time type, the filters and selectors, and
//! the rows that decode the same way on SQLite and PostgreSQL.
//!
//! Query fragments are built with one generic helper over [`sqlx::QueryBuilder`], bound by
//! what the dialect can encode; only the table alias differs between the backends' queries
//! (`j.` where PostgreSQL joins, nothing on SQLite).

use chrono::{DateTime, Utc};
use sqlx::{Database, Postgres, QueryBuilder, Sqlite};

pub(crate) use super::rows::*;
pub(crate) use super::time::{Time, from_millis};

use super::{JobFilter, JobSelector, ResponseFilter};

/// A dialect the shared fragments can be written in: one that binds ids, texts and [`Time`].
/// (Methods rather than `Encode` bounds: bounds on a trait's own `where` are not implied, so
/// every generic function would have to repeat them.)
pub(crate) trait Dialect: Database + Sized {
    fn bind_id(query: &mut QueryBuilder<Self>, id: i64);
    fn bind_text(query: &mut QueryBuilder<Self>, text: String);
    fn bind_time(query: &mut QueryBuilder<Self>, at: Time);
    fn builder(sql: String) -> QueryBuilder<Self>;
    /// ` AND …` that leads a filter on `status` (jobs table `alias`) to this database's own
    /// index or list of the jobs in it, if it has one beyond the status column.
    fn status_narrowing(status: crate::domain::JobStatus, alias: &str) -> Option<String>;
}

macro_rules! dialect {
    ($db:ty, $lists:expr) => {
        impl Dialect for $db {
            fn status_narrowing(status: crate::domain::JobStatus, alias: &str) -> Option<String> {
                $lists(status, alias)
            }
            fn bind_id(query: &mut QueryBuilder<Self>, id: i64) {
                query.push_bind(id);
            }
            fn bind_text(query: &mut QueryBuilder<Self>, text: String) {
                query.push_bind(text);
            }
            fn bind_time(query: &mut QueryBuilder<Self>, at: Time) {
                query.push_bind(at);
            }
            fn builder(sql: String) -> QueryBuilder<Self> {
                QueryBuilder::new(sql)
            }
        }
    };
}

dialect!(Sqlite, |_, _| None);
// PostgreSQL's due and running lists, and its index of jobs with an error (a failed job
// always has one): see its migration 0017.
dialect!(Postgres, |status, alias| match status {
    crate::domain::JobStatus::Queued =>
        Some(format!(" AND {alias}id IN (SELECT job_id FROM job_queue)")),
    crate::domain::JobStatus::Processing => {
        Some(format!(" AND {alias}id IN (SELECT job_id FROM job_claims)"))
    }
    crate::domain::JobStatus::Failed => Some(format!(" AND {alias}error_message IS NOT NULL")),
    _ => None,
});

/// Pushes ` AND {column} = ` and binds `id`.
fn and_id<DB: Dialect>(query: &mut QueryBuilder<DB>, column: String, id: i64) {
    query.push(column);
    DB::bind_id(query, id);
}

/// Pushes ` AND {column} = ` and binds `text`.
fn and_text<DB: Dialect>(query: &mut QueryBuilder<DB>, column: String, text: String) {
    query.push(column);
    DB::bind_text(query, text);
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

/// ` AND …` for each filter of a job query; `alias` is the jobs table's (`j.` or empty).
pub(crate) fn push_job_filter<DB: Dialect>(
    query: &mut QueryBuilder<DB>,
    filter: &JobFilter,
    alias: &str,
) {
    if let Some(id) = filter.job_id {
        and_id(query, format!(" AND {alias}id = "), id);
    }
    if let Some(key) = &filter.batch_key {
        and_text(query, format!(" AND {alias}batch_key = "), key.clone());
    }
    if let Some(id) = filter.prompt_id {
        and_id(query, format!(" AND {alias}prompt_id = "), id);
    }
    if let Some(id) = filter.model_id {
        and_id(query, format!(" AND {alias}model_id = "), id);
    }
    if let Some(status) = filter.status {
        // Written out, not bound: a status a partial index covers (SQLite's `failed`, `queued`,
        // `processing`) can use it only where the planner sees the value, and a `JobStatus` is
        // one of a few fixed words. PostgreSQL finds them through its lists or error index.
        query.push(format!(" AND {alias}status = '{}'", status.as_str()));
        if let Some(narrowing) = DB::status_narrowing(status, alias) {
            query.push(narrowing);
        }
    }
}

/// Whether the jobs `filter` selects are few and reached through an index of their own (a
/// batch's through the job key, one job, a rare status): a page of them is best found there
/// and sorted. Walking the primary key in id order instead, as PostgreSQL plans a page of a
/// batch, reads every older batch first (a year of jobs: 0.5 s for the newest batch).
fn narrowed_by_index(filter: &JobFilter) -> bool {
    filter.batch_key.is_some()
        || filter.job_id.is_some()
        || filter
            .status
            .is_some_and(|status| status != crate::domain::JobStatus::Succeeded)
}

/// ` AND …` narrowing a retry or cancel (`UPDATE prompt_jobs`, no alias) to its jobs.
pub(crate) fn push_selector<DB: Dialect>(query: &mut QueryBuilder<DB>, selector: &JobSelector) {
    match selector {
        JobSelector::One(id) => and_id(query, " AND id = ".into(), *id),
        JobSelector::Batch { batch_key, status } => {
            and_text(query, " AND batch_key = ".into(), batch_key.clone());
            if let Some(status) = status {
                and_text(query, " AND status = ".into(), status.as_str().to_owned());
            }
        }
    }
}

/// ` LIMIT … OFFSET …` of a page.
fn push_page<DB: Dialect>(query: &mut QueryBuilder<DB>, page: super::Page) {
    and_id(query, " LIMIT ".into(), page.limit);
    and_id(query, " OFFSET ".into(), page.offset);
}

/// `SELECT … FROM responses` with each filter of `filter`, newest first, one page.
pub(crate) fn responses_query<DB: Dialect>(
    filter: &ResponseFilter,
    page: super::Page,
) -> QueryBuilder<DB> {
    // The page's ids first, then the columns of those rows alone: selected whole, every row
    // an OFFSET skips was read and projected with its prompt-version subqueries (a page
    // 500,000 answers deep: 8 s).
    let mut query = DB::builder(format!(
        "SELECT {RESPONSE_COLUMNS} FROM responses WHERE id IN (SELECT r.id FROM responses r \
         WHERE 1 = 1"
    ));
    if let Some(id) = filter.prompt_id {
        and_id(&mut query, " AND r.prompt_id = ".into(), id);
    }
    if let Some(id) = filter.model_id {
        and_id(&mut query, " AND r.model_id = ".into(), id);
    }
    if let Some(key) = &filter.batch_key {
        and_text(&mut query, " AND r.batch_key = ".into(), key.clone());
    }
    if let Some(id) = filter.job_id {
        and_id(&mut query, " AND r.job_id = ".into(), id);
    }
    if let Some(from) = filter.created_from {
        query.push(" AND r.created_at >= ");
        DB::bind_time(&mut query, Time(from));
    }
    if let Some(before) = filter.created_before {
        query.push(" AND r.created_at < ");
        DB::bind_time(&mut query, Time(before));
    }
    if let Some(id) = filter.below_id {
        and_id(&mut query, " AND r.id < ".into(), id);
    }
    // A batch's answers (or a job's) are found through their own index and sorted, as
    // jobs are (see `narrowed_by_index`): an older batch is not reached through every newer one.
    let narrowed = filter.batch_key.is_some() || filter.job_id.is_some();
    query.push(if narrowed {
        " ORDER BY r.id + 0 DESC"
    } else {
        " ORDER BY r.id DESC"
    });
    push_page(&mut query, page);
    query.push(") ORDER BY id DESC");
    query
}

/// `SELECT columns FROM prompt_jobs [j]` with each filter, one page by id; `alias` is `j.` or
/// empty, as `columns` expects.
pub(crate) fn jobs_page_query<DB: Dialect>(
    columns: &str,
    alias: &str,
    filter: &JobFilter,
    page: super::Page,
) -> QueryBuilder<DB> {
    let table = alias.trim_end_matches('.');
    // The page's ids first (an index-only scan when nothing filters), then the columns of
    // those rows alone: selected whole, every row an OFFSET skips was read and projected with
    // its prompt-version subquery (a page 500,000 jobs deep: 4.5 s).
    let mut query = DB::builder(format!(
        "SELECT {columns} FROM prompt_jobs {table} WHERE {alias}id IN \
         (SELECT p.id FROM prompt_jobs p WHERE 1 = 1"
    ));
    push_job_filter(&mut query, filter, "p.");
    query.push(if narrowed_by_index(filter) {
        " ORDER BY p.id + 0"
    } else {
        " ORDER BY p.id"
    });
    push_page(&mut query, page);
    query.push(format!(") ORDER BY {alias}id"));
    query
}

/// `(status, count)` of the matching jobs; `alias` is the jobs table's (`j.` or empty).
pub(crate) fn jobs_summary_query<DB: Dialect>(filter: &JobFilter, alias: &str) -> QueryBuilder<DB> {
    let table = alias.trim_end_matches('.');
    if let Some(status) = filter.status {
        // One status: a count that needs no column of the rows, so that the partial index of
        // a rare status answers it alone (`failed`: 11,000 jobs of a year's million).
        let mut query = DB::builder(format!(
            "SELECT '{}' AS status, count(*) AS n FROM prompt_jobs {table} WHERE 1 = 1",
            status.as_str()
        ));
        push_job_filter(&mut query, filter, alias);
        return query;
    }
    let mut query = DB::builder(format!(
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
