//! The HTTP face of promptq (axum): the original serverless API (`/api/cron`,
//! `/api/jobs/process`, `/api/jobs/status`), the management API around it, `/healthz`,
//! `/metrics` and the OpenAPI document.
//!
//! [`router`] builds the whole thing on an [`App`]; the server (`promptq serve`) and the
//! serverless entry point (`api/serverless.rs`, feature `vercel`) serve the same router. The
//! layers, outermost first: request tracing (method and path only), a 500 for a handler's panic,
//! the secret scrubber for error bodies, the `Host` and `Origin` checks ([`guard`]), the `CRON_SECRET` check of every `/api/*` path (so an
//! unauthenticated caller always gets 401), the 1 MiB body limit. Handlers parse, call one use case of [`App`] and map its result through
//! [`error::ApiError`]; this module must never touch SQL or a provider, and never answer with
//! internals or a secret.

pub mod auth;
pub mod catalog;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod guard;
pub mod insights;
pub mod jobs;
pub mod openapi;
pub mod ops;

use std::net::SocketAddr;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::domain::Secret;
use error::ApiError;

/// The largest request body accepted: 1 MiB (a prompt is at most 100 kB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The API on `app`, with every layer: ready for `axum::serve` or a serverless runtime.
pub fn router(app: App) -> Router {
    router_with(app, Router::new())
}

/// The API plus `extra` routes (the dashboard), under the same layers: `extra`'s `/api/*`
/// paths, if any, need the secret too; its other paths do their own authentication.
pub fn router_with(app: App, extra: Router) -> Router {
    let secret = app.config().cron_secret.clone();
    let guard = guard::Guard {
        open: secret.is_none(),
        app_url: app.config().app_url.clone(),
    };
    Router::new()
        .route("/api/cron", get(jobs::cron_get).post(jobs::cron_post))
        .route("/api/jobs/process", post(jobs::process))
        .route("/api/jobs/dispatch", post(jobs::dispatch))
        .route("/api/jobs/status", get(jobs::status))
        .route("/api/jobs/retry", post(jobs::retry))
        .route("/api/jobs/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}", get(jobs::detail))
        .route("/api/responses", get(jobs::responses))
        .route(
            "/api/models",
            get(catalog::list_models).post(catalog::create_model),
        )
        .route(
            "/api/models/{id}",
            get(catalog::get_model)
                .patch(catalog::update_model)
                .delete(catalog::delete_model),
        )
        .route(
            "/api/prompts",
            get(catalog::list_prompts).post(catalog::create_prompt),
        )
        .route(
            "/api/prompts/{id}",
            get(catalog::get_prompt)
                .patch(catalog::update_prompt)
                .delete(catalog::delete_prompt),
        )
        .merge(insights::routes())
        .route("/api/openapi.json", get(ops::openapi_json))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .with_state(app)
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The last layer added runs first.
        // tower-http's limit answers 413 at once for a declared length over the limit, and
        // cuts a body sent without one (chunked) where it crosses it; the extractors see that
        // as a 413 of their own. axum's default limit would only repeat it.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::map_response(error::json_payload_too_large))
        .layer(middleware::from_fn_with_state(
            secret.clone(),
            auth::require_secret,
        ))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .layer(middleware::from_fn_with_state(secret, error::scrub_secret))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span of a request: its method and path only. Not the query string (a misguided client
/// may put a secret there) and not the headers (the secret is in one).
fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
}

/// A success wrapper: `{"success": true, …the fields of T}`.
#[derive(Debug, Serialize)]
pub struct Success<T> {
    pub success: bool,
    #[serde(flatten)]
    pub body: T,
}

pub fn success<T>(body: T) -> Json<Success<T>> {
    Json(Success {
        success: true,
        body,
    })
}

/// Unknown routes: 404 in the API's error shape, or an HTML page for a browser that asked for
/// a page outside `/api` (a mistyped dashboard link should not answer in JSON).
async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let path = uri.path();
    if wants_html && method == Method::GET && !path.starts_with("/api/") && path != "/api" {
        return dashboard::not_found_page(path);
    }
    ApiError::NotFound(format!("no route for {method} {path}")).into_response()
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// The shortest `CRON_SECRET` accepted off loopback: the dashboard's login form lets anyone
/// who reaches it guess, and 16 random characters are out of reach of any guessing rate.
pub const MIN_SECRET_CHARS: usize = 16;

/// Whether `serve` may listen on `bind`: anywhere with a secret of at least
/// [`MIN_SECRET_CHARS`] characters, only on a loopback address without one (the API would be
/// open to anyone who can reach it) or with a shorter one.
pub fn check_bind(bind: SocketAddr, secret: Option<&Secret>) -> Result<(), String> {
    if bind.ip().is_loopback() {
        return Ok(());
    }
    match secret {
        None => Err(format!(
            "refusing to listen on {bind} without CRON_SECRET: every /api/* route would be open \
             to anyone who can reach it. Set CRON_SECRET, or bind a loopback address (127.0.0.1)."
        )),
        Some(secret) if secret.expose().chars().count() < MIN_SECRET_CHARS => Err(format!(
            "refusing to listen on {bind} with a CRON_SECRET of {} characters: off loopback it \
             must have at least {MIN_SECRET_CHARS} (e.g. `openssl rand -hex 24`), since anyone who \
             reaches the server can try to guess it.",
            secret.expose().chars().count()
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bind_needs_a_secret_off_loopback() {
        let secret = Secret::new("a-secret-of-16ch");
        let loopback: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let loopback6: SocketAddr = "[::1]:3000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:3000".parse().unwrap();
        assert!(check_bind(loopback, None).is_ok());
        assert!(check_bind(loopback6, None).is_ok());
        assert!(check_bind(any, None).is_err());
        assert!(check_bind(lan, None).is_err());
        assert!(check_bind(any, Some(&secret)).is_ok());
        assert!(check_bind(lan, Some(&secret)).is_ok());
        let message = check_bind(any, None).unwrap_err();
        assert!(message.contains("CRON_SECRET"), "{message}");
        let short = Secret::new("fifteen-chars-x");
        assert!(check_bind(loopback, Some(&short)).is_ok());
        let message = check_bind(any, Some(&short)).unwrap_err();
        assert!(message.contains("at least 16"), "{message}");
        assert!(
            !message.contains("fifteen"),
            "the secret must not be echoed: {message}"
        );
    }
}
