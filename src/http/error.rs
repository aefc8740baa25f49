//! The one error type of the HTTP API and the one place where errors become statuses.
//!
//! Every failure a handler, an extractor or a middleware can meet is an [`ApiError`]; its
//! variants name the status they produce, and [`IntoResponse`] turns each into
//! `{"success": false, "error": "<message>"}`. The edge's layers answer in that shape too: a
//! handler's panic becomes a 500 ([`panic_response`]; the connection would otherwise just
//! drop), the body limit's 413 is rewritten as JSON, and one middleware scrubs the secret out
//! of error bodies (rejection messages may quote what the client sent).
//! This module must never put internals in a body: a 500 or a 503 says "internal error" or
//! "database unavailable", and the details go to the log only.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppError;
use crate::domain::Secret;

/// What went wrong in a request, by the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or names something invalid; the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the `Authorization` header is missing or does not carry the secret.
    #[error(
        "unauthorized: send the CRON_SECRET in the Authorization header (as is, or as a Bearer token)"
    )]
    Unauthorized,
    /// 404: an unknown id or an unknown route.
    #[error("{0}")]
    NotFound(String),
    /// 405: a known route with another method.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// 403: a request from another site's page (a cross-origin `Origin`).
    #[error("{0}")]
    Forbidden(String),
    /// 421: the `Host` names a server this one does not answer for (DNS rebinding).
    #[error("{0}")]
    MisdirectedRequest(String),
    /// 415: a body that is not declared `application/json`.
    #[error(
        "unsupported media type: send the JSON body with the header Content-Type: application/json"
    )]
    UnsupportedMediaType,
    /// 409: the request conflicts with the current state (a job that is not queued).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("request body too large (the limit is {limit} bytes)", limit = super::BODY_LIMIT)]
    PayloadTooLarge,
    /// 503: the database does not answer; the detail is logged.
    #[error("database unavailable")]
    Unavailable(String),
    /// 500: a bug or a broken database; the detail is logged, never answered.
    #[error("internal error")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::BadInput(message) => ApiError::BadRequest(message),
            AppError::NotFound(message) => ApiError::NotFound(message),
            AppError::Conflict(message) => ApiError::Conflict(message),
            AppError::Unavailable(detail) => ApiError::Unavailable(detail),
            AppError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub success: bool,
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "database unavailable"),
            _ => {}
        }
        let status = self.status();
        let body = Json(ErrorBody {
            success: false,
            error: self.to_string(),
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The answer to a handler's panic, for `tower_http`'s `CatchPanicLayer`: a 500 in the API's
/// error shape, saying nothing of the panic (its message may quote SQL or a value).
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a handler panicked".to_owned()).into_response()
}

/// Gives the 413 of `tower_http`'s body limit the API's error shape (the layer answers in
/// plain text); a 413 that is already JSON is left as it is.
pub(crate) async fn json_payload_too_large(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return ApiError::PayloadTooLarge.into_response();
    }
    response
}

/// The most of an error body the scrubber reads; error bodies are a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Replaces the secret in error bodies: a rejection message may quote a value the client sent,
/// and no error body may ever carry the secret, whoever put it there.
pub(crate) async fn scrub_secret(
    State(secret): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let Some(secret) = secret else {
        return response;
    };
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return ApiError::Internal("an error body could not be read".to_owned()).into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains(secret.expose()) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let scrubbed = text.replace(secret.expose(), "[redacted]");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(scrubbed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_its_status() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::MethodNotAllowed("PUT".into()), 405),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::PayloadTooLarge, 413),
            (ApiError::Internal("x".into()), 500),
            (ApiError::Unavailable("x".into()), 503),
        ];
        for (err, status) in cases {
            assert_eq!(err.into_response().status().as_u16(), status);
        }
    }

    #[test]
    fn internal_details_stay_out_of_the_message() {
        let err = ApiError::from(AppError::Internal("SELECT secret FROM x".into()));
        assert_eq!(err.to_string(), "internal error");
        let err = ApiError::from(AppError::Unavailable("connection refused".into()));
        assert_eq!(err.to_string(), "database unavailable");
    }
}
