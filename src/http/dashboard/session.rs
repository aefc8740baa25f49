//! Dashboard sessions: the login form, the session cookie, and the same-origin check of every
//! form post.
//!
//! Logging in posts the `CRON_SECRET` in a form body (never in a URL), compared in constant
//! time ([`crate::http::auth::is_secret`]) after a token of the process-wide guessing budget
//! is taken ([`super::limiter`]). The answer sets `promptq_session`, `HttpOnly` (no script can
//! read it), `SameSite=Strict` (no other site's page can make the browser send it), `Path=/`,
//! and `Secure` when the browser came over HTTPS ([`over_https`]). Its value is not the secret but
//! `<expiry>.<HMAC-SHA256(key = secret, "promptq dashboard session v1:<expiry>")>`:
//! - a stolen cookie does not reveal the secret (HMAC does not give its key back) and stops
//!   working at its expiry;
//! - nothing is stored server-side, so every process behind a load balancer accepts it;
//! - rotating the secret logs everyone out, since old tokens no longer verify.
//!
//! The price of being stateless: logging out deletes the browser's cookie but cannot revoke a
//! copy taken earlier; that copy lives until its expiry ([`SESSION_TTL`]) or a secret rotation.
//!
//! Every unsafe request (POST) to the dashboard must come from one of its own pages: its
//! `Origin` header (or, when a browser sends none, its `Referer`) must name the host the request
//! was sent to, or `APP_URL`'s. With `SameSite=Strict` this is the CSRF defence: a forged form
//! on another site neither carries the cookie nor passes the check. The cookie never opens
//! `/api/*`: that stays behind the `Authorization` header alone.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, REFERER, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, extract::rejection::FormRejection};
use hmac::{Hmac, KeyInit, Mac};
use maud::html;
use serde::Deserialize;
use sha2::Sha256;

use super::PageError;
use super::html::{Frame, document};
use super::limiter::LoginLimiter;
use crate::app::App;
use crate::domain::Secret;
use crate::http::auth::is_secret;
use crate::http::guard::authority_of;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "promptq_session";

/// How long a login lasts: a working day and then some.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the MAC covers besides the expiry; the version lets a later format refuse this one.
const LABEL: &[u8] = b"promptq dashboard session v1:";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret, expires: i64) -> HmacSha256 {
    // HMAC takes a key of any length: this never fails.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(LABEL);
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The session token valid until `expires` (Unix seconds).
pub fn session_token(secret: &Secret, expires: i64) -> String {
    let tag = mac(secret, expires).finalize().into_bytes();
    let mut token = format!("{expires}.");
    for byte in tag {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

/// Whether `token` was made with `secret` and has not expired at `now` (Unix seconds).
/// The tag is checked in constant time.
pub fn token_valid(token: &str, secret: &Secret, now: i64) -> bool {
    let Some((expires, tag)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    let Some(tag) = decode_hex(tag) else {
        return false;
    };
    expires > now && mac(secret, expires).verify_slice(&tag).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// Whether the request carries a valid session cookie.
pub fn has_session(headers: &HeaderMap, secret: &Secret, now: i64) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE_NAME && token_valid(value, secret, now))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sends requests without a valid session to the login form (the dashboard is open when no
/// secret is configured: loopback development, like the API).
pub(super) async fn require_session(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> Response {
    match &app.config().cron_secret {
        Some(secret) if !has_session(request.headers(), secret, now()) => {
            Redirect::to("/login").into_response()
        }
        _ => next.run(request).await,
    }
}

/// Refuses unsafe requests that do not come from one of the dashboard's own pages.
pub(super) async fn same_origin(State(app): State<App>, request: Request, next: Next) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    if from_this_site(
        request.headers(),
        authority.as_deref(),
        app.config().app_url.as_deref(),
    ) {
        next.run(request).await
    } else {
        PageError::Forbidden(
            "This form was not sent from a page of this dashboard, so it was refused. \
             Reload the page and try again."
                .into(),
        )
        .into_response()
    }
}

/// Whether an unsafe request comes from a page of this site: its `Origin` (else its `Referer`)
/// names the host it was sent to (`Host`, else the request's authority), or `APP_URL`'s.
pub fn from_this_site(headers: &HeaderMap, authority: Option<&str>, app_url: Option<&str>) -> bool {
    let text = |value: &HeaderValue| value.to_str().ok().map(str::to_owned);
    // A present Origin decides alone: a mismatched one must not be rescued by the Referer.
    let Some(source) = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(text)
    else {
        return false;
    };
    let Some(source) = authority_of(&source) else {
        return false;
    };
    let same = |candidate: &str| candidate.eq_ignore_ascii_case(source);
    let host = headers.get(HOST).and_then(text);
    host.as_deref().or(authority).is_some_and(same)
        || app_url.and_then(authority_of).is_some_and(same)
}

/// Whether the browser reached us over HTTPS: `APP_URL` is https, the request itself was
/// (a TLS-terminating listener), or, with `TRUST_PROXY`, the proxy's `X-Forwarded-Proto` says
/// so. Without `TRUST_PROXY` that header is ignored: anyone can send it.
pub fn over_https(app: &App, headers: &HeaderMap, uri: &Uri) -> bool {
    let config = app.config();
    let forwarded = || {
        headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            // A chain of proxies lists the client's side first.
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    };
    config
        .app_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
        || uri.scheme_str() == Some("https")
        || (config.trust_proxy && forwarded())
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let header = format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    // The value is digits, a dot and hex digits: always a valid header.
    HeaderValue::from_str(&header).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        div.login {
            h1 { "Log in" }
            @if let Some(message) = message {
                p.err { (message) }
            }
            form method="post" action="/login" id="login" {
                label for="secret" { "Secret (the server's CRON_SECRET)" }
                input type="password" id="secret" name="secret" autocomplete="current-password"
                    required autofocus;
                button type="submit" class="primary" { "Log in" }
            }
        }
    };
    let frame = Frame {
        title: "Log in",
        refresh: false,
        nav: false,
        logout: false,
    };
    (status, Html(document(&frame, body).into_string())).into_response()
}

/// `GET /login`: the form, unless there is nothing to log in to or the session is valid.
pub(super) async fn login_form(State(app): State<App>, headers: HeaderMap) -> Response {
    match &app.config().cron_secret {
        Some(secret) if !has_session(&headers, secret, now()) => login_page(StatusCode::OK, None),
        _ => Redirect::to("/").into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    secret: String,
}

/// `POST /login`: a session cookie for the right secret, the form again with 401 otherwise,
/// and 429 without looking at the secret once the guessing budget is spent ([`LoginLimiter`]).
pub(super) async fn login(
    State(app): State<App>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(secret) = &app.config().cron_secret else {
        return Redirect::to("/").into_response();
    };
    let Ok(Form(form)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("Send the form with a secret."),
        );
    };
    if let Err(wait) = limiter.try_take() {
        tracing::warn!("dashboard login refused: too many failed logins");
        let mut response = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed logins: wait a minute and try again."),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return response;
    }
    if !is_secret(&form.secret, secret) {
        tracing::warn!("dashboard login failed: wrong secret");
        return login_page(StatusCode::UNAUTHORIZED, Some("That is not the secret."));
    }
    limiter.give_back();
    let ttl = SESSION_TTL.as_secs();
    let token = session_token(secret, now() + ttl as i64);
    let mut response = Redirect::to("/").into_response();
    let secure = over_https(&app, &headers, &uri);
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&token, ttl, secure));
    response
}

/// `POST /logout`: deletes the browser's cookie.
pub(super) async fn logout(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    let mut response = Redirect::to("/login").into_response();
    let secure = over_https(&app, &headers, &uri);
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie("", 0, secure));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_only_with_its_secret() {
        let secret = Secret::new("s3cret-value");
        let token = session_token(&secret, 1_000);
        assert!(token.starts_with("1000."));
        assert!(!token.contains("s3cret"));
        assert!(token_valid(&token, &secret, 999));
        assert!(!token_valid(&token, &secret, 1_000));
        assert!(!token_valid(&token, &Secret::new("rotated"), 999));
        // A longer life cannot be claimed by editing the expiry.
        let forged = token.replacen("1000.", "9999.", 1);
        assert!(!token_valid(&forged, &secret, 999));
        for junk in [
            "",
            ".",
            "1000",
            "1000.zz",
            "x.00",
            &token[..token.len() - 2],
        ] {
            assert!(!token_valid(junk, &secret, 0), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let secret = Secret::new("k");
        let token = session_token(&secret, 100);
        let mut headers = HeaderMap::new();
        let value = format!("a=b; {COOKIE_NAME}={token}; c=d");
        headers.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        assert!(has_session(&headers, &secret, 50));
        assert!(!has_session(&HeaderMap::new(), &secret, 50));
    }

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_this_sites_pages_may_post() {
        let host = (HOST, "dash.example:3000");
        let ok =
            |pairs: &[(axum::http::HeaderName, &str)]| from_this_site(&headers(pairs), None, None);
        assert!(ok(&[host.clone(), (ORIGIN, "http://dash.example:3000")]));
        assert!(ok(&[host.clone(), (ORIGIN, "https://DASH.example:3000")]));
        assert!(ok(&[
            host.clone(),
            (REFERER, "http://dash.example:3000/jobs/1")
        ]));
        assert!(!ok(std::slice::from_ref(&host)));
        assert!(!ok(&[host.clone(), (ORIGIN, "null")]));
        assert!(!ok(&[host.clone(), (ORIGIN, "http://evil.example")]));
        assert!(!ok(&[
            host.clone(),
            (ORIGIN, "http://dash.example:3000.evil.example")
        ]));
        assert!(!ok(&[host.clone(), (ORIGIN, "http://dash.example")]));
        assert!(!ok(&[
            host.clone(),
            (REFERER, "http://evil.example/?dash.example:3000")
        ]));
        // A present Origin decides, whatever the Referer says.
        assert!(!ok(&[
            host.clone(),
            (ORIGIN, "http://evil.example"),
            (REFERER, "http://dash.example:3000/")
        ]));
        // Behind a proxy that rewrites Host, APP_URL names the public origin.
        let proxied = headers(&[(HOST, "10.0.0.5:3000"), (ORIGIN, "https://q.example.com")]);
        assert!(from_this_site(
            &proxied,
            None,
            Some("https://q.example.com")
        ));
        assert!(!from_this_site(&proxied, None, None));
        // HTTP/2 carries the host in the request's authority, not in a Host header.
        let h2 = headers(&[(ORIGIN, "https://q.example.com")]);
        assert!(from_this_site(&h2, Some("q.example.com"), None));
    }
}
