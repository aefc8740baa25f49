//! The operator's routes: `/healthz` for load balancers, `/metrics` for Prometheus, and the
//! OpenAPI document.
//!
//! `/healthz` and `/metrics` are open, like a load balancer's and Prometheus' probes expect:
//! they carry counts and timings, never a prompt, a response, an id or a secret. Keep it so:
//! anything more belongs under `/api`, behind the secret. Neither touches the database but
//! through the use cases.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::OpenApi;

use super::error::{ApiError, ApiResult};
use crate::app::App;

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = crate::metrics::CONTENT_TYPE;

/// The answer of `/healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// 200 `{"status":"ok"}` when the database answers, else 503 `{"status":"unavailable"}`.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = super::openapi::HealthDoc), (status = 503, body = super::openapi::HealthDoc)))]
pub async fn healthz(State(app): State<App>) -> Response {
    match app.health().await {
        Ok(()) => Json(Health { status: "ok" }).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                }),
            )
                .into_response()
        }
    }
}

/// Counters of this process and gauges of the queue, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 503, body = super::openapi::ErrorDoc)))]
pub async fn metrics(State(app): State<App>) -> ApiResult<Response> {
    let gauges = app.queue_gauges().await?;
    let text = app
        .metrics()
        .render(&gauges)
        .map_err(|_| ApiError::Internal("the metrics could not be encoded".to_owned()))?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response())
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = Object),
        (status = 401, body = super::openapi::ErrorDoc)))]
pub async fn openapi_json() -> Response {
    // Generated once: it only depends on the code.
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        super::openapi::ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
        .into_response()
}
