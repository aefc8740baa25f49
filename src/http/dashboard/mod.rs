//! The dashboard: server-rendered HTML pages at `/`, behind the same secret as the API.
//!
//! - `GET /login`, `POST /login`, `POST /logout`: the session ([`session`]).
//! - `GET /`: the newest batches with their progress, each model's success rate and p50/p95
//!   latency over the newest batches (inline SVG), the pauses in force.
//! - `GET /batches?offset=`: every batch, newest first.
//! - `GET /batches/{key}?status=&offset=`: a batch's per-model summary and its jobs, filtered
//!   by status; `POST /batches/{key}/retry-failed` retries its failed jobs,
//!   `POST /batches/{key}/cancel-queued` cancels its queued ones.
//! - `GET /batches/{key}/prompts/{id}`: a prompt's answers in the batch, side by side.
//! - `GET /failed?batch=&offset=`: failed jobs, newest first, with their error and attempts.
//! - `GET /trackers`: the tracker groups; `GET /trackers/{id}?batch=&term=`: one group's trend
//!   chart, per-prompt excerpts with the mentions marked, cited domains and drift.
//! - `GET /jobs/{id}`: a job's attempts and stored response; `POST /jobs/{id}/retry`,
//!   `POST /jobs/{id}/cancel`.
//!
//! Pages reload themselves (a `<meta>` refresh, no script) while their jobs are queued or
//! running. Handlers call the use cases of [`App`] only, and write their markup as [`maud`]
//! templates, which escape every value they splice in ([`html`]). Errors are small HTML pages with the fitting status; a
//! missing session is a redirect to `/login`. This router sets no fallback: it is merged into
//! the API's ([`crate::http::router_with`]), whose layers (tracing, panic guard, secret
//! scrubber, body limit) wrap it too.

mod batches;
mod chart;
mod html;
mod job;
mod limiter;
mod listing;
mod pages;
pub mod session;
mod trackers;
mod trend;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use maud::{Markup, html};

use crate::app::{App, AppError};
use html::{Frame, document};

/// The dashboard's routes on `app`, for [`crate::http::router_with`].
pub fn router(app: App) -> Router {
    let behind_login = Router::new()
        .route("/", get(pages::overview))
        .route("/batches", get(batches::list))
        .route("/batches/{key}", get(pages::batch))
        .route("/batches/{key}/retry-failed", post(job::retry_batch))
        .route("/batches/{key}/cancel-queued", post(job::cancel_batch))
        .route("/batches/{key}/prompts/{id}", get(batches::compare))
        .route("/failed", get(pages::failed))
        .route("/trackers", get(trackers::list))
        .route("/trackers/{id}", get(trackers::show))
        .route("/jobs/{id}", get(job::show))
        .route("/jobs/{id}/retry", post(job::retry))
        .route("/jobs/{id}/cancel", post(job::cancel))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            session::require_session,
        ));
    // Route layers only: they must not wrap the API's fallback once merged.
    let limiter = std::sync::Arc::new(limiter::LoginLimiter::default());
    Router::new()
        .route(
            "/login",
            get(session::login_form)
                .post(session::login)
                .layer(axum::Extension(limiter)),
        )
        .route("/logout", post(session::logout))
        .merge(behind_login)
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            session::same_origin,
        ))
        .route_layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// No script may run, nothing may load from elsewhere, forms may post only here, no other site
/// may frame the pages (clickjacking of the retry buttons), and nothing is cached.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    with_security_headers(next.run(request).await)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Same-origin posts keep their Referer (the CSRF check's fallback); others get none.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The answer to a browser that asked for a page that does not exist: an HTML 404 (the API's
/// fallback answers everyone else in JSON).
pub fn not_found_page(path: &str) -> Response {
    with_security_headers(PageError::NotFound(format!("no page at {path}")).into_response())
}

/// A page: the frame around `body`, with the logout button when there is a session to end.
fn page(app: &App, title: &str, refresh: bool, body: Markup) -> Response {
    let frame = Frame {
        title,
        refresh,
        nav: true,
        logout: app.config().cron_secret.is_some(),
    };
    Html(document(&frame, body).into_string()).into_response()
}

/// What went wrong in a dashboard request, by the status of the error page it answers.
#[derive(Debug)]
pub enum PageError {
    /// 400: a malformed query or path.
    BadRequest(String),
    /// 403: a form posted from elsewhere.
    Forbidden(String),
    /// 404: an unknown job.
    NotFound(String),
    /// 409: e.g. retrying a job that is not failed.
    Conflict(String),
    /// 503: the database does not answer (logged).
    Unavailable(String),
    /// 500: a bug or a broken database (logged, never shown).
    Internal(String),
}

impl From<AppError> for PageError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::BadInput(message) => PageError::BadRequest(message),
            AppError::NotFound(message) => PageError::NotFound(message),
            AppError::Conflict(message) => PageError::Conflict(message),
            AppError::Unavailable(detail) => PageError::Unavailable(detail),
            AppError::Internal(detail) => PageError::Internal(detail),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::BadRequest(message) => (StatusCode::BAD_REQUEST, "Bad request", message),
            PageError::Forbidden(message) => (StatusCode::FORBIDDEN, "Refused", message),
            PageError::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            PageError::Conflict(message) => (StatusCode::CONFLICT, "Not possible now", message),
            PageError::Unavailable(detail) => {
                tracing::warn!(%detail, "dashboard: database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database unavailable",
                    "The database does not answer. This page will try again.".to_owned(),
                )
            }
            PageError::Internal(detail) => {
                tracing::error!(%detail, "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "Something went wrong; the details are in the server's log.".to_owned(),
                )
            }
        };
        let body = html! {
            h1 { (title) }
            p.err { (message) }
            p { a href="/" { "Back to the overview" } }
        };
        let frame = Frame {
            title,
            // A database outage is usually short: keep trying without the user.
            refresh: status == StatusCode::SERVICE_UNAVAILABLE,
            nav: true,
            logout: false,
        };
        (status, Html(document(&frame, body).into_string())).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;
