//! Extractors that reject bad input the contract's way: 400 with a message saying what is
//! wrong (413 for a body over the limit), as an [`ApiError`].
//!
//! axum's own extractors answer 422 for a mistyped field and 415 for a missing content type,
//! in plain text; these wrap them. A JSON body must be sent with `Content-Type:
//! application/json` (or another `+json` type), else 415: a web page can send a `text/plain` or
//! form body to any address without asking, but a JSON one only after a CORS preflight that this
//! server never grants, so the header is what keeps other sites' pages out of an open API
//! (`super::guard`). A body-less POST needs no header. A query string or a body with a field the
//! route does not know is refused, so that a typo (`batch_key=`) is an error, not
//! a silently ignored filter. Nothing here interprets the values beyond their types: that is
//! the handlers' and the use cases' job.

use std::fmt::Display;
use std::str::FromStr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;

/// A JSON body, required.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent (an empty body reads as `None`).
pub struct OptionalJson<T>(pub Option<T>);

/// A query string; every field must be known.
pub struct ApiQuery<T>(pub T);

/// Path parameters (ids).
pub struct ApiPath<T>(pub T);

/// Whether `headers` declare a JSON body: `application/json` or `application/<x>+json`, any
/// parameters (`; charset=utf-8`), any case.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// The body, refused with 415 when it is not declared JSON: a non-blank body always, and a
/// blank one when it claims another type (a cross-site form post with no fields).
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let json = declares_json(request.headers());
    let typed = request.headers().contains_key(CONTENT_TYPE);
    let bytes = read_bytes(request, state).await?;
    if !json && (typed || !is_blank(&bytes)) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

async fn read_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the body: {}", rejection.body_text()))
            }
        })
}

/// Every body of this API is an object. serde would also read a struct from an array
/// (`[1]` as `{"jobId": 1}`); that is a mistyped body here, not a shorthand.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b == b'[') {
        return Err(ApiError::BadRequest(
            "the JSON body must be an object, not an array".to_owned(),
        ));
    }
    Json::<T>::from_bytes(bytes)
        .map(|Json(value)| value)
        .map_err(|rejection| {
            let what = match rejection {
                JsonRejection::JsonSyntaxError(_) => "malformed JSON body",
                _ => "invalid JSON body",
            };
            ApiError::BadRequest(format!("{what}: {}", detail(&rejection.body_text())))
        })
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if is_blank(&bytes) {
            return Err(ApiError::BadRequest(
                "missing JSON body (send an object, e.g. {\"jobId\": 1})".to_owned(),
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if is_blank(&bytes) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|value| OptionalJson(Some(value)))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::BadRequest(format!(
                    "invalid query string: {}",
                    detail(&rejection.body_text())
                ))
            })
    }
}

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("invalid path: {}", detail(&rejection.body_text())))
            })
    }
}

/// axum's rejection text without its own prefix ("Failed to deserialize the JSON body into
/// the target type: jobId: invalid type…" → "jobId: invalid type…").
fn detail(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// Reads a query parameter through its `FromStr`, an empty value as absent: forms and scripts
/// send `?promptId=&batchKey=2025-10-14` for "no prompt filter".
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let value: Option<String> = Option::deserialize(deserializer)?;
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Tells a field that is absent (`None`) from one set to null (`Some(None)`), for patches
/// that can clear a value.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
