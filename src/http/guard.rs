//! Keeps other sites' pages out: the `Host` check of open mode (against DNS rebinding) and the
//! `Origin` check of `/api/*` (against cross-site requests).
//!
//! A browser lets any page it shows send a "simple" request (GET, or a POST with a form or
//! `text/plain` body) to any address, the developer's own `127.0.0.1:3000` included, without
//! asking the server first. It cannot set `Authorization`, so with a `CRON_SECRET` such a request
//! gets 401; in open mode (no secret, loopback only) nothing else would stop it. Three rules do:
//! - **Host** (open mode only): a page on `evil.example` that rebinds its name to 127.0.0.1 sends
//!   `Host: evil.example`; only loopback names (`localhost`, `127.0.0.1`, `[::1]`, any port) and
//!   `APP_URL`'s host are answered, anything else gets 421 Misdirected Request. With a secret the
//!   secret is the defence and `Host` is left alone (proxies rewrite it).
//! - **Origin** (`/api/*`, always): a browser names the page that sent a cross-site request in
//!   `Origin`; one that is not this server (its `Host`, or `APP_URL`) gets 403. Scripts, curl and
//!   Vercel Cron send no `Origin` and are not affected.
//! - **Content type**: a JSON body must say `Content-Type: application/json`, which a page can
//!   only send after a CORS preflight that this server never grants (`super::extract`).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::is_api_path;
use super::error::ApiError;

/// What the guard needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Guard {
    /// No `CRON_SECRET`: the API and the dashboard are open to whoever reaches them.
    pub open: bool,
    /// `APP_URL`, the public base URL, when set.
    pub app_url: Option<String>,
}

pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(authority);
    if guard.open
        && let Some(host) = &host
        && !host_allowed(host, guard.app_url.as_deref())
    {
        return ApiError::MisdirectedRequest(format!(
            "this server answers only to localhost, 127.0.0.1 or [::1]{}, not to the host name \
             '{}': without CRON_SECRET other names are refused (DNS rebinding). Use \
             http://127.0.0.1, or set APP_URL to the name you use",
            if guard.app_url.is_some() {
                " and APP_URL's host"
            } else {
                ""
            },
            host.chars().take(100).collect::<String>()
        ))
        .into_response();
    }
    if is_api_path(request.uri().path())
        && !origin_allowed(headers, host.as_deref(), guard.app_url.as_deref())
    {
        return ApiError::Forbidden(
            "refused: this request came from another site's page (its Origin is not this server)"
                .to_owned(),
        )
        .into_response();
    }
    next.run(request).await
}

/// `host[:port]` without its port, lower-cased; IPv6 literals keep their brackets.
fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let name = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(name, _port)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` (a `Host` header) is a loopback name or `APP_URL`'s host, any port.
pub fn host_allowed(host: &str, app_url: Option<&str>) -> bool {
    let name = host_name(host);
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
        || app_url
            .and_then(authority_of)
            .is_some_and(|app| host_name(app) == name)
}

/// Whether a request's `Origin`, if any, is this server: the very `host` the request was sent
/// to, or `APP_URL`'s authority. No `Origin` (not a browser, or a same-origin GET) passes.
pub fn origin_allowed(headers: &HeaderMap, host: Option<&str>, app_url: Option<&str>) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(authority_of) else {
        // `null` (a sandboxed frame, a file: page) or garbage: never this server.
        return false;
    };
    let same = |candidate: &str| candidate.eq_ignore_ascii_case(origin);
    host.is_some_and(same) || app_url.and_then(authority_of).is_some_and(same)
}

/// `host[:port]` of an http(s) URL; `None` for anything else (`null`, other schemes).
pub fn authority_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_names_and_app_url_pass_the_host_check() {
        for host in [
            "localhost",
            "localhost:3000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:3000",
            "[::1]",
            "[::1]:3000",
            "localhost.",
        ] {
            assert!(host_allowed(host, None), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1.evil.example",
            "localhost.evil.example:3000",
            "[::2]:3000",
            "",
        ] {
            assert!(!host_allowed(host, None), "{host}");
        }
        assert!(host_allowed("q.example.com", Some("https://q.example.com")));
        assert!(host_allowed(
            "q.example.com:8443",
            Some("https://Q.example.com/")
        ));
        assert!(!host_allowed("evil.example", Some("https://q.example.com")));
    }

    #[test]
    fn only_this_servers_origin_passes() {
        let with = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            headers
        };
        let host = Some("127.0.0.1:3000");
        assert!(origin_allowed(&HeaderMap::new(), host, None));
        assert!(origin_allowed(&with("http://127.0.0.1:3000"), host, None));
        assert!(!origin_allowed(&with("http://evil.example"), host, None));
        assert!(!origin_allowed(&with("null"), host, None));
        assert!(!origin_allowed(&with("http://127.0.0.1:3001"), host, None));
        assert!(origin_allowed(
            &with("https://q.example.com"),
            Some("10.0.0.5:3000"),
            Some("https://q.example.com")
        ));
    }
}
