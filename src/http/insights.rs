//! The insights' routes: trackers (`/api/insights/trackers`, created, listed, read, changed,
//! deleted) and the per-batch report (`/api/insights/report`).
//!
//! Like the catalog's: a create answers 201, everything else 200, always with `"success": true`;
//! bodies are parsed strictly; the use cases check patterns and names. The OpenAPI mirrors of
//! the answers are at the end of this file (the answers are the use cases' own types).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, ApiQuery, empty_as_none};
use super::{Success, success};
use crate::app::{App, TrackerPatch, TrackerReport, TrackerView};
use crate::insights::{Term, TrackerId};

/// The routes, to merge into the API's router.
pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/api/insights/trackers",
            get(list_trackers).post(create_tracker),
        )
        .route(
            "/api/insights/trackers/{id}",
            get(get_tracker)
                .patch(update_tracker)
                .delete(delete_tracker),
        )
        .route("/api/insights/report", get(report))
}

/// A term: a name and its patterns (literal aliases, or regular expressions written `/…/`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TermBody {
    pub name: String,
    /// Empty: the name itself.
    #[serde(default)]
    pub patterns: Vec<String>,
}

fn terms(body: Vec<TermBody>) -> Vec<Term> {
    body.into_iter()
        .map(|t| Term {
            name: t.name,
            patterns: t.patterns,
        })
        .collect()
}

/// A tracker to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTracker {
    pub name: String,
    pub terms: Vec<TermBody>,
}

/// Changes to a tracker; absent fields stay. New terms re-analyse its past answers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateTracker {
    pub name: Option<String>,
    pub terms: Option<Vec<TermBody>>,
}

/// `?tracker=&batchKey=` of the report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// A tracker's id or name; default: every tracker.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub tracker: Option<String>,
    /// Default: the latest batch with answers.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub batch_key: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OneTracker {
    pub tracker: TrackerView,
}

#[derive(Debug, Serialize)]
pub struct Trackers {
    pub trackers: Vec<TrackerView>,
}

#[derive(Debug, Serialize)]
pub struct Reports {
    pub reports: Vec<TrackerReport>,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub id: i64,
}

/// Creates a tracker (201); a pattern that does not compile is a 400 naming it.
#[utoipa::path(post, path = "/api/insights/trackers", tag = "insights", request_body = CreateTracker,
    responses((status = 201, body = doc::OneTrackerDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 409, body = super::openapi::ErrorDoc, description = "the name is taken")))]
pub async fn create_tracker(
    State(app): State<App>,
    ApiJson(body): ApiJson<CreateTracker>,
) -> ApiResult<(StatusCode, Json<Success<OneTracker>>)> {
    let tracker = app.create_tracker(&body.name, &terms(body.terms)).await?;
    let tracker = app.tracker(&tracker.id.to_string()).await?;
    Ok((StatusCode::CREATED, success(OneTracker { tracker })))
}

/// Every tracker, with how far the analysis of its current version got.
#[utoipa::path(get, path = "/api/insights/trackers", tag = "insights",
    responses((status = 200, body = doc::TrackersDoc), (status = 401, body = super::openapi::ErrorDoc)))]
pub async fn list_trackers(State(app): State<App>) -> ApiResult<Json<Success<Trackers>>> {
    Ok(success(Trackers {
        trackers: app.trackers().await?,
    }))
}

/// One tracker.
#[utoipa::path(get, path = "/api/insights/trackers/{id}", tag = "insights", params(("id" = i64, Path)),
    responses((status = 200, body = doc::OneTrackerDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn get_tracker(
    State(app): State<App>,
    ApiPath(id): ApiPath<TrackerId>,
) -> ApiResult<Json<Success<OneTracker>>> {
    let tracker = app.tracker(&id.to_string()).await?;
    Ok(success(OneTracker { tracker }))
}

/// Changes a tracker; new terms bump its version and its answers are analysed again.
#[utoipa::path(patch, path = "/api/insights/trackers/{id}", tag = "insights", params(("id" = i64, Path)),
    request_body = UpdateTracker,
    responses((status = 200, body = doc::OneTrackerDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc),
        (status = 409, body = super::openapi::ErrorDoc)))]
pub async fn update_tracker(
    State(app): State<App>,
    ApiPath(id): ApiPath<TrackerId>,
    ApiJson(body): ApiJson<UpdateTracker>,
) -> ApiResult<Json<Success<OneTracker>>> {
    let patch = TrackerPatch {
        name: body.name,
        terms: body.terms.map(terms),
    };
    let tracker = app.update_tracker(id, patch).await?;
    let tracker = app.tracker(&tracker.id.to_string()).await?;
    Ok(success(OneTracker { tracker }))
}

/// Deletes a tracker and everything derived for it.
#[utoipa::path(delete, path = "/api/insights/trackers/{id}", tag = "insights", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::DeletedDoc), (status = 401, body = super::openapi::ErrorDoc),
        (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn delete_tracker(
    State(app): State<App>,
    ApiPath(id): ApiPath<TrackerId>,
) -> ApiResult<Json<Success<Deleted>>> {
    app.delete_tracker(id).await?;
    Ok(success(Deleted { id }))
}

/// The figures of a batch (default: the latest with answers) per tracker, per model and per
/// prompt × model, with the change from the batch before. Counts only the answers analysed
/// under each tracker's current version (`progress` says how many that is).
#[utoipa::path(get, path = "/api/insights/report", tag = "insights", params(ReportQuery),
    responses((status = 200, body = doc::ReportsDoc), (status = 400, body = super::openapi::ErrorDoc),
        (status = 401, body = super::openapi::ErrorDoc), (status = 404, body = super::openapi::ErrorDoc)))]
pub async fn report(
    State(app): State<App>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Json<Success<Reports>>> {
    let reports = app
        .insights_report(query.tracker.as_deref(), query.batch_key.as_deref())
        .await?;
    Ok(success(Reports { reports }))
}

/// The OpenAPI mirrors of the answers.
pub mod doc {
    #![allow(dead_code)] // read by utoipa's derive, never constructed

    use utoipa::ToSchema;

    /// A term.
    #[derive(ToSchema)]
    #[schema(as = Term)]
    pub struct TermDoc {
        name: String,
        patterns: Vec<String>,
    }

    /// How many stored answers the tracker's current version has analysed.
    #[derive(ToSchema)]
    #[schema(as = Progress)]
    pub struct ProgressDoc {
        analysed: i64,
        total: i64,
    }

    #[derive(ToSchema)]
    #[schema(as = Tracker, rename_all = "camelCase")]
    pub struct TrackerDoc {
        id: i64,
        name: String,
        terms: Vec<TermDoc>,
        /// Bumped by every change of the terms.
        version: i64,
        created_at: chrono::DateTime<chrono::Utc>,
        updated_at: chrono::DateTime<chrono::Utc>,
        progress: ProgressDoc,
        /// e.g. "analysed 12,000 of 40,000 answers"
        progress_text: String,
    }

    #[derive(ToSchema)]
    #[schema(as = OneTracker)]
    pub struct OneTrackerDoc {
        success: bool,
        tracker: TrackerDoc,
    }

    #[derive(ToSchema)]
    #[schema(as = Trackers)]
    pub struct TrackersDoc {
        success: bool,
        trackers: Vec<TrackerDoc>,
    }

    /// The change of a mention rate from the previous batch.
    #[derive(ToSchema)]
    #[schema(as = Change, rename_all = "camelCase")]
    pub struct ChangeDoc {
        previous_runs: u64,
        previous_mentioned: u64,
        previous_rate: f64,
        delta: f64,
        p_value: f64,
        /// `z-test` or `fisher`
        test: String,
        /// p < 0.05
        significant: bool,
    }

    #[derive(ToSchema)]
    #[schema(as = TermFigures, rename_all = "camelCase")]
    pub struct TermFiguresDoc {
        term: String,
        /// Runs naming the term (k of `runs`).
        mentioned: u64,
        mention_rate: f64,
        mentions: u64,
        share_of_voice: f64,
        avg_rank: Option<f64>,
        best_rank: Option<i64>,
        avg_list_position: Option<f64>,
        best_list_position: Option<i64>,
        change: Option<ChangeDoc>,
    }

    #[derive(ToSchema)]
    #[schema(as = DomainCount)]
    pub struct DomainCountDoc {
        domain: String,
        answers: u64,
    }

    /// A model over every prompt (no `promptId`), or one prompt × model.
    #[derive(ToSchema)]
    #[schema(as = ReportCell, rename_all = "camelCase")]
    pub struct CellDoc {
        prompt_id: Option<i64>,
        prompt_text: Option<String>,
        model_id: i64,
        model_name: Option<String>,
        runs: u64,
        terms: Vec<TermFiguresDoc>,
        top_domains: Vec<DomainCountDoc>,
    }

    #[derive(ToSchema)]
    #[schema(as = TrackerReport, rename_all = "camelCase")]
    pub struct TrackerReportDoc {
        tracker_id: i64,
        tracker: String,
        version: i64,
        batch_key: Option<String>,
        previous_batch_key: Option<String>,
        progress: ProgressDoc,
        progress_text: String,
        models: Vec<CellDoc>,
        prompts: Vec<CellDoc>,
        /// Per prompt × model with answers in both batches, the biggest movers first.
        drift: Vec<DriftDoc>,
    }

    /// How much a prompt × model's answers changed from the previous batch.
    #[derive(ToSchema)]
    #[schema(as = Drift, rename_all = "camelCase")]
    pub struct DriftDoc {
        prompt_id: i64,
        prompt_text: Option<String>,
        model_id: i64,
        model_name: Option<String>,
        runs: u64,
        previous_runs: u64,
        /// Cosine similarity of the two batches' word bigrams (runs averaged), 0 to 1.
        similarity: f64,
        /// 1 − similarity: 0 for the same answers, 1 when no word pair is shared.
        drift: f64,
        /// Terms named by some run now and by none in the previous batch.
        added: Vec<String>,
        /// Terms named by some run in the previous batch and by none now.
        dropped: Vec<String>,
    }

    #[derive(ToSchema)]
    #[schema(as = Reports)]
    pub struct ReportsDoc {
        success: bool,
        reports: Vec<TrackerReportDoc>,
    }
}
