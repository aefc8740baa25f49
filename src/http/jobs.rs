//! The queue's routes: the original three (`/api/cron`, `/api/jobs/process`,
//! `/api/jobs/status`) and the job management around them (detail, retry, cancel, responses).
//!
//! Each handler parses its input into domain values, calls one use case of [`App`] and maps the
//! result; none touches SQL or a provider. The request types live here because they are the
//! wire format; the answers are the use cases' own report types, serialized as they are.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson, empty_as_none};
use super::{Success, success};
use crate::app::{
    App, CronReport, FanOutReport, JobDetail, ProcessReport, StatusAnswer, StatusQuery,
};
use crate::app::{JobFilter, JobSelector, Page, ResponseFilter, StoredResponse};
use crate::config::DispatchMode;
use crate::domain::{BatchKey, JobId, JobStatus};

/// `?batchKey=` of `/api/cron`: the slot to backfill instead of the current one.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CronQuery {
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub batch_key: Option<BatchKey>,
}

/// The optional JSON body of `POST /api/cron`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronBody {
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`
    #[schema(value_type = Option<String>)]
    pub batch_key: Option<BatchKey>,
}

/// The answer of `/api/cron`: the scheduling pass, and with `DISPATCH=http` the fan-out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronAnswer {
    #[serde(flatten)]
    pub report: CronReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<FanOutReport>,
}

/// Creates the jobs of every due prompt for the current batch (or `batchKey`).
#[utoipa::path(get, path = "/api/cron", tag = "queue", params(CronQuery),
    responses((status = 200, body = super::openapi::CronAnswerDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 503, body = super::openapi::ErrorDoc)))]
pub async fn cron_get(
    State(app): State<App>,
    ApiQuery(query): ApiQuery<CronQuery>,
) -> ApiResult<Json<CronAnswer>> {
    run_cron(&app, query.batch_key).await
}

/// The same pass; `batchKey` may come in the query or the JSON body.
#[utoipa::path(post, path = "/api/cron", tag = "queue", params(CronQuery),
    request_body(content = Option<CronBody>),
    responses((status = 200, body = super::openapi::CronAnswerDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 503, body = super::openapi::ErrorDoc)))]
pub async fn cron_post(
    State(app): State<App>,
    ApiQuery(query): ApiQuery<CronQuery>,
    OptionalJson(body): OptionalJson<CronBody>,
) -> ApiResult<Json<CronAnswer>> {
    let from_body = body.and_then(|body| body.batch_key);
    let batch_key = match (query.batch_key, from_body) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::BadRequest(format!(
                "batchKey given twice with different values ('{a}' in the query, '{b}' in the body)"
            )));
        }
        (a, b) => a.or(b),
    };
    run_cron(&app, batch_key).await
}

async fn run_cron(app: &App, batch_key: Option<BatchKey>) -> ApiResult<Json<CronAnswer>> {
    let report = app.trigger_cron(batch_key).await?;
    // Serverless has no worker pool: the trigger itself hands every due job to its own
    // `POST /api/jobs/process` call, and waits, because a function may be frozen as soon as it
    // has answered.
    let dispatch = if app.config().dispatch == DispatchMode::Http {
        Some(app.fan_out().await)
    } else {
        None
    };
    // Between two triggers nothing else may run (serverless): alerts are checked and sent here.
    app.alert_pass().await;
    Ok(Json(CronAnswer { report, dispatch }))
}

/// One more fan-out pass (`DISPATCH=http`): sends the due jobs that an earlier pass had no time
/// left for, and hands on again if its own budget runs out.
#[utoipa::path(post, path = "/api/jobs/dispatch", tag = "queue",
    responses((status = 200, body = super::openapi::FanOutAnswerDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc, description = "DISPATCH is not http")))]
pub async fn dispatch(State(app): State<App>) -> ApiResult<Json<Success<FanOutReport>>> {
    if app.config().dispatch != DispatchMode::Http {
        return Err(ApiError::Conflict(
            "this service runs its jobs with workers (DISPATCH=workers), not by HTTP fan-out"
                .into(),
        ));
    }
    // Its own task: the invocation that handed over stops waiting after a few seconds, and
    // a dropped connection must not end the pass.
    let pass = tokio::spawn(async move { app.fan_out().await });
    let report = pass
        .await
        .map_err(|err| ApiError::Internal(format!("the fan-out pass failed: {err}")))?;
    Ok(success(report))
}

/// The body of `POST /api/jobs/process`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessBody {
    pub job_id: i64,
}

/// Claims one queued job, runs its model call and stores the outcome; a failed attempt is a
/// 200 whose `status` is `queued` (retry scheduled) or `failed`.
#[utoipa::path(post, path = "/api/jobs/process", tag = "queue", request_body = ProcessBody,
    responses((status = 200, body = super::openapi::ProcessReportDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc, description = "the job is not queued"),
        (status = 413, body = super::openapi::ErrorDoc), (status = 503, body = super::openapi::ErrorDoc)))]
pub async fn process(
    State(app): State<App>,
    ApiJson(body): ApiJson<ProcessBody>,
) -> ApiResult<Json<ProcessReport>> {
    Ok(Json(app.process_job(body.job_id).await?))
}

/// Filters and page of `/api/jobs/status`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusParams {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub job_id: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub batch_key: Option<BatchKey>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub prompt_id: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub model_id: Option<i64>,
    /// queued, processing, submitted, succeeded, failed or skipped
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub status: Option<JobStatus>,
    /// 1 to 1000, default 100
    #[serde(default, deserialize_with = "empty_as_none")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub offset: Option<i64>,
}

fn page(limit: Option<i64>, offset: Option<i64>) -> Page {
    let default = Page::default();
    Page {
        limit: limit.unwrap_or(default.limit),
        offset: offset.unwrap_or(default.offset),
    }
}

/// Counts of every matching job, one page of them, and per-model, token, cost and latency
/// figures over the same filter.
#[utoipa::path(get, path = "/api/jobs/status", tag = "queue", params(StatusParams),
    responses((status = 200, body = super::openapi::StatusAnswerDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 503, body = super::openapi::ErrorDoc)))]
pub async fn status(
    State(app): State<App>,
    ApiQuery(params): ApiQuery<StatusParams>,
) -> ApiResult<Json<StatusAnswer>> {
    let query = StatusQuery {
        filter: JobFilter {
            job_id: params.job_id,
            batch_key: params.batch_key.map(String::from),
            prompt_id: params.prompt_id,
            model_id: params.model_id,
            status: params.status,
        },
        page: page(params.limit, params.offset),
    };
    Ok(Json(app.status_answer(&query).await?))
}

/// One job with its attempts and its stored response.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "queue", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::JobDetailDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn detail(
    State(app): State<App>,
    ApiPath(id): ApiPath<JobId>,
) -> ApiResult<Json<Success<JobDetail>>> {
    Ok(success(app.job_detail(id).await?))
}

/// The body of retry and cancel: one job, or a batch (optionally only jobs in one status).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectBody {
    pub job_id: Option<i64>,
    #[schema(value_type = Option<String>)]
    pub batch_key: Option<BatchKey>,
    #[schema(value_type = Option<String>)]
    pub status: Option<JobStatus>,
}

impl SelectBody {
    fn selector(self) -> ApiResult<JobSelector> {
        match (self.job_id, self.batch_key, self.status) {
            (Some(id), None, None) => Ok(JobSelector::One(id)),
            (None, Some(batch_key), status) => Ok(JobSelector::Batch {
                batch_key: batch_key.into(),
                status,
            }),
            (Some(_), _, _) => Err(ApiError::BadRequest(
                "give either jobId, or batchKey with an optional status, not both".to_owned(),
            )),
            (None, None, _) => Err(ApiError::BadRequest("missing jobId or batchKey".to_owned())),
        }
    }
}

/// How many jobs a retry or a cancel changed.
#[derive(Debug, Serialize)]
pub struct Count {
    pub count: u64,
}

/// `failed | skipped → queued` with a fresh budget of attempts.
#[utoipa::path(post, path = "/api/jobs/retry", tag = "queue", request_body = SelectBody,
    responses((status = 200, body = super::openapi::CountDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc, description = "the job is neither failed nor skipped")))]
pub async fn retry(
    State(app): State<App>,
    ApiJson(body): ApiJson<SelectBody>,
) -> ApiResult<Json<Success<Count>>> {
    let count = app.retry(&body.selector()?).await?;
    Ok(success(Count { count }))
}

/// `queued → skipped`.
#[utoipa::path(post, path = "/api/jobs/cancel", tag = "queue", request_body = SelectBody,
    responses((status = 200, body = super::openapi::CountDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc, description = "the job is not queued")))]
pub async fn cancel(
    State(app): State<App>,
    ApiJson(body): ApiJson<SelectBody>,
) -> ApiResult<Json<Success<Count>>> {
    let count = app.cancel(&body.selector()?).await?;
    Ok(success(Count { count }))
}

/// Filters and page of `/api/responses`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResponsesParams {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub prompt_id: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub model_id: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub batch_key: Option<BatchKey>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub job_id: Option<i64>,
    /// 1 to 1000, default 100
    #[serde(default, deserialize_with = "empty_as_none")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub offset: Option<i64>,
}

/// One page of stored responses.
#[derive(Debug, Serialize)]
pub struct Responses {
    pub responses: Vec<StoredResponse>,
}

/// Stored responses, newest first, with text, tokens, cost, latency and the served model.
#[utoipa::path(get, path = "/api/responses", tag = "queue", params(ResponsesParams),
    responses((status = 200, body = super::openapi::ResponsesDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc)))]
pub async fn responses(
    State(app): State<App>,
    ApiQuery(params): ApiQuery<ResponsesParams>,
) -> ApiResult<Json<Success<Responses>>> {
    let filter = ResponseFilter {
        prompt_id: params.prompt_id,
        model_id: params.model_id,
        batch_key: params.batch_key.map(String::from),
        job_id: params.job_id,
        ..ResponseFilter::default()
    };
    let responses = app
        .responses(&filter, page(params.limit, params.offset))
        .await?;
    Ok(success(Responses { responses }))
}
