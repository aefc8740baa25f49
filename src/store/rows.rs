//! Rows that decode the same way on SQLite and PostgreSQL (`#[derive(sqlx::FromRow)]` once,
//! times as [`Time`]), and the plain selects that read them.

use std::sync::Arc;

use super::time::Time;
use super::{AttemptRecord, Pause, StoredResponse};
use crate::domain::{Job, JobStatus, Model, ParseError};

/// The models of one claim's jobs, each built once. A claim's jobs mostly run a few models
/// with the same generation params; they then share one copy of each (its params parsed
/// once) instead of holding one each: 200 jobs claimed on one model held 190 KB of copies.
pub(crate) struct ClaimModels<K> {
    built: Vec<(K, Arc<Model>)>,
}

/// How many distinct models a claim keeps for sharing; beyond them (jobs of many prompt
/// versions with params of their own) a job gets its own copy, as it would without sharing.
const SHARED_MODELS: usize = 16;

impl<K: PartialEq> ClaimModels<K> {
    pub(crate) fn new() -> Self {
        ClaimModels { built: Vec::new() }
    }

    /// The model for `key`, built from it by `build` unless this claim has built it already.
    pub(crate) fn get_or_build<E>(
        &mut self,
        key: K,
        build: impl FnOnce(&K) -> Result<Model, E>,
    ) -> Result<Arc<Model>, E> {
        if let Some((_, model)) = self.built.iter().find(|(seen, _)| *seen == key) {
            return Ok(Arc::clone(model));
        }
        let model = Arc::new(build(&key)?);
        if self.built.len() < SHARED_MODELS {
            self.built.push((key, Arc::clone(&model)));
        }
        Ok(model)
    }
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
            provider_batch_id: None,
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

/// The attempts of a job, in attempt order. A success has no attempt row of its own: it is
/// read from the job (its last claim) and its answer, unless an earlier version wrote one.
pub(crate) const ATTEMPTS_OF_JOB: &str = "SELECT job_id, attempt, started_at, finished_at, \
    outcome, http_status, error_class, error_message FROM ( \
    SELECT job_id, attempt, started_at, finished_at, outcome, http_status, error_class, \
        error_message, id AS seq FROM job_attempts WHERE job_id = $1 \
    UNION ALL \
    SELECT j.id, j.attempt_count, j.started_at, r.created_at, 'succeeded', r.http_status, \
        NULL, NULL, NULL FROM prompt_jobs j JOIN responses r ON r.job_id = j.id \
    WHERE j.id = $1 AND j.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM job_attempts a \
        WHERE a.job_id = j.id AND a.outcome = 'succeeded')) AS attempts \
    ORDER BY attempt, seq IS NULL, seq";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: i64) -> Model {
        Model {
            id,
            name: format!("m{id}"),
            provider: crate::domain::ProviderKind::Mock,
            model: "mock-1".into(),
            params: serde_json::json!({"latencyMs": 5}),
            active: true,
            created_at: chrono::Utc::now(),
            spec: Default::default(),
        }
    }

    #[test]
    fn a_claims_jobs_share_a_model_built_once_per_key() {
        let mut models = ClaimModels::new();
        let mut builds = 0;
        let mut get = |key: (i64, Option<&'static str>)| {
            models
                .get_or_build(key, |&(id, _)| {
                    builds += 1;
                    Ok::<_, ()>(model(id))
                })
                .expect("built")
        };
        let first = get((1, None));
        let again = get((1, None));
        let versioned = get((1, Some("{\"temperature\":0}")));
        let other = get((2, None));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &versioned));
        assert_eq!(other.id, 2);
        assert_eq!(builds, 3);
    }

    #[test]
    fn past_the_shared_few_each_job_gets_its_own_model() {
        let mut models = ClaimModels::new();
        for id in 0..SHARED_MODELS as i64 {
            models
                .get_or_build(id, |&id| Ok::<_, ()>(model(id)))
                .expect("built");
        }
        let beyond = SHARED_MODELS as i64;
        let one = models.get_or_build(beyond, |&id| Ok::<_, ()>(model(id)));
        let two = models.get_or_build(beyond, |&id| Ok::<_, ()>(model(id)));
        assert!(!Arc::ptr_eq(&one.expect("built"), &two.expect("built")));
        let kept = models.get_or_build(0, |_| Err(()));
        assert_eq!(kept.expect("kept, not built again").id, 0);
    }

    #[test]
    fn a_failed_build_is_the_claims_error() {
        let mut models = ClaimModels::<i64>::new();
        assert_eq!(
            models.get_or_build(1, |_| Err("bad params")),
            Err("bad params")
        );
    }
}
