//! The secret that every `/api/*` request must present, and the check of where `serve` may
//! listen without one.
//!
//! A request is let through when its `Authorization` header is the `CRON_SECRET` itself (as the
//! original deployment's scripts send it) or `Bearer <CRON_SECRET>` (as Vercel Cron sends it).
//! The comparison runs in constant time for a given length. Nothing else authenticates: not a
//! query parameter (URLs end up in logs and browser histories), not a cookie (the dashboard's
//! session cookie opens its pages only: `dashboard::session`). With no secret configured
//! (loopback development) `/api/*` is open, to this machine's programs only (`super::guard`). This module must never log, echo or store the
//! presented header or the dashboard's typed secret.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::domain::Secret;

/// Whether a path is under the API (and so behind the secret).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Refuses `/api/*` requests that do not present the secret, known routes or not (an
/// unauthenticated caller learns nothing about which routes exist).
pub(crate) async fn require_secret(
    State(secret): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(secret) = &secret
        && is_api_path(request.uri().path())
        && !presents_secret(request.headers(), secret)
    {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// Whether `headers` carry `Authorization: <secret>` or `Authorization: Bearer <secret>`.
pub fn presents_secret(headers: &HeaderMap, secret: &Secret) -> bool {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return false;
    };
    let presented = value.as_bytes().trim_ascii();
    let expected = secret.expose().as_bytes();
    // The scheme is case-insensitive (RFC 9110); both forms are compared, without branching
    // on the outcome of the first, so that the time taken says nothing about the secret.
    let bearer = match presented.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => presented[7..].trim_ascii(),
        _ => &[][..],
    };
    let as_is = presented.ct_eq(expected);
    let as_bearer = bearer.ct_eq(expected);
    bool::from(as_is | as_bearer) && !expected.is_empty()
}

/// Whether `presented` (the dashboard's login form) is the secret, surrounding whitespace aside.
/// Constant time for a given length, like [`presents_secret`].
pub fn is_secret(presented: &str, secret: &Secret) -> bool {
    let expected = secret.expose().as_bytes();
    bool::from(presented.as_bytes().trim_ascii().ct_eq(expected)) && !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accepts_the_secret_as_is_or_as_a_bearer_token() {
        let secret = Secret::new("s3cret");
        assert!(presents_secret(&with("s3cret"), &secret));
        assert!(presents_secret(&with("Bearer s3cret"), &secret));
        assert!(presents_secret(&with("bearer s3cret"), &secret));
        assert!(presents_secret(&with("  Bearer   s3cret "), &secret));
    }

    #[test]
    fn refuses_anything_else() {
        let secret = Secret::new("s3cret");
        assert!(!presents_secret(&HeaderMap::new(), &secret));
        for value in [
            "",
            "Bearer",
            "Bearer ",
            "s3cre",
            "s3cret2",
            "Basic s3cret",
            "Token s3cret",
            "Bearer s3cretx",
            "Bearers3cret",
        ] {
            assert!(!presents_secret(&with(value), &secret), "{value:?}");
        }
    }

    #[test]
    fn a_typed_secret_matches_only_itself() {
        let secret = Secret::new("s3cret");
        assert!(is_secret("s3cret", &secret));
        assert!(is_secret(" s3cret\n", &secret));
        for typed in ["", "s3cre", "s3cret2", "S3CRET", "Bearer s3cret"] {
            assert!(!is_secret(typed, &secret), "{typed:?}");
        }
    }

    #[test]
    fn api_paths_are_those_under_api() {
        assert!(is_api_path("/api"));
        assert!(is_api_path("/api/cron"));
        assert!(is_api_path("/api/nothing/here"));
        assert!(!is_api_path("/apix"));
        assert!(!is_api_path("/healthz"));
        assert!(!is_api_path("/"));
    }
}
