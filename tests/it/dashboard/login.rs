//! Logging in and out, the session cookie, and what the cookie may not open.

use super::web::{Dash, start, start_open};
use crate::support::TestDb;
use crate::support::server::SECRET;

use crate::support::on_both;

on_both!(
    threads = 2; owned;
    a_wrong_secret_answers_401_and_sets_no_cookie,
    the_right_secret_sets_a_strict_http_only_cookie_that_is_not_the_secret,
    pages_without_a_session_redirect_to_the_login_form,
    the_cookie_never_opens_the_api,
    logging_out_clears_the_cookie,
);

/// Every page of the dashboard, for checks that apply to all of them.
const PAGES: [&str; 6] = [
    "/",
    "/failed",
    "/failed?batch=2025-10-14",
    "/batches/2025-10-14",
    "/batches/2025-10-14?status=failed",
    "/jobs/1",
];

pub async fn a_wrong_secret_answers_401_and_sets_no_cookie(db: TestDb) {
    let dash = start(db, &[]).await;
    let form = dash.get("/login").await;
    let html = form.assert_html(200);
    assert!(
        html.contains("<form method=\"post\" action=\"/login\""),
        "{html}"
    );
    assert!(html.contains("type=\"password\""), "{html}");
    assert!(
        !html.contains("href=\"/failed\""),
        "no links that lead back here"
    );
    for wrong in [
        "",
        "nope",
        &SECRET[..SECRET.len() - 1],
        &format!("{SECRET}x"),
    ] {
        let answer = dash.post("/login", &[("secret", wrong)]).await;
        let html = answer.assert_html(401);
        assert!(html.contains("That is not the secret."), "{html}");
        assert!(answer.set_cookie.is_empty(), "{answer:?}");
        assert!(!html.contains(SECRET), "the page must not echo a secret");
    }
    // A form without the field is a bad request, not a crash.
    let empty = dash.post("/login", &[]).await;
    empty.assert_html(400);
    assert!(empty.set_cookie.is_empty());
}

pub async fn the_right_secret_sets_a_strict_http_only_cookie_that_is_not_the_secret(db: TestDb) {
    let mut dash = start(db, &[]).await;
    let answer = dash.login().await;
    assert_eq!(answer.set_cookie.len(), 1, "{answer:?}");
    let cookie = &answer.set_cookie[0];
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {cookie}");
    }
    assert!(
        !attributes.contains(&"Secure"),
        "plain http: no Secure: {cookie}"
    );
    assert!(
        attributes.iter().any(|a| a.starts_with("Max-Age=")),
        "{cookie}"
    );
    let value = attributes[0]
        .strip_prefix("promptq_session=")
        .expect("the cookie's name");
    assert!(value.len() > 32, "{value}");
    assert!(
        !value.contains(SECRET),
        "the cookie must not carry the secret"
    );
    assert!(
        !cookie.contains(SECRET),
        "the header must not carry the secret"
    );

    // The session opens every page; a tampered or foreign token does not.
    for path in PAGES {
        let page = dash.get(path).await;
        assert_ne!(page.status.as_u16(), 303, "{path}: {page:?}");
    }
    let overview = dash.get("/").await;
    overview.assert_html(200);
    let csp = overview.csp.as_deref().unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let mut tampered = value.to_owned();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == '0' { '1' } else { '0' });
    for cookie in [
        format!("promptq_session={tampered}"),
        format!("promptq_session={SECRET}"),
        "promptq_session=".to_owned(),
    ] {
        dash.get_with_cookie("/", &cookie)
            .await
            .assert_redirect("/login");
    }
    // Logged in, the login form sends back to the overview.
    dash.get("/login").await.assert_redirect("/");
}

pub async fn pages_without_a_session_redirect_to_the_login_form(db: TestDb) {
    let dash = start(db, &[]).await;
    for path in PAGES {
        dash.get(path).await.assert_redirect("/login");
    }
    // Actions too, even from the right origin.
    for path in ["/jobs/1/retry", "/batches/2025-10-14/retry-failed"] {
        dash.post(path, &[]).await.assert_redirect("/login");
    }
}

pub async fn the_cookie_never_opens_the_api(db: TestDb) {
    let mut dash = start(db, &[]).await;
    dash.login().await;
    for path in [
        "/api/jobs/status",
        "/api/models",
        "/api/cron",
        "/api/jobs/1",
    ] {
        let answer = dash.get(path).await;
        assert_eq!(answer.status.as_u16(), 401, "{path}: {answer:?}");
        assert!(answer.text.contains("\"success\":false"), "{answer:?}");
    }
    let retry = dash.post("/api/jobs/retry", &[("jobId", "1")]).await;
    assert_eq!(retry.status.as_u16(), 401, "{retry:?}");
}

pub async fn logging_out_clears_the_cookie(db: TestDb) {
    let mut dash = start(db, &[]).await;
    dash.login().await;
    let html = dash.get("/").await;
    assert!(html.text.contains("action=\"/logout\""), "{html:?}");
    let out = dash.post("/logout", &[]).await;
    out.assert_redirect("/login");
    let cleared = out.set_cookie.first().expect("a Set-Cookie");
    assert!(cleared.starts_with("promptq_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

pub async fn without_a_secret_the_dashboard_is_open(db: TestDb) {
    let dash = start_open(db).await;
    let overview = dash.get("/").await;
    let html = overview.assert_html(200);
    assert!(!html.contains("/logout"), "nothing to log out of");
    dash.get("/login").await.assert_redirect("/");
    dash.post("/login", &[("secret", "anything")])
        .await
        .assert_redirect("/");
    // The same-origin check still guards the actions (a page elsewhere could post here).
    let forged = dash
        .post_from("/jobs/1/retry", &[], Some("http://evil.example"))
        .await;
    forged.assert_html(403);
}

pub async fn an_https_app_url_makes_the_cookie_secure(db: TestDb) {
    let mut dash: Dash = start(db, &["--app-url", "https://promptq.example.com"]).await;
    let answer = dash.login().await;
    let cookie = &answer.set_cookie[0];
    assert!(cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
}
