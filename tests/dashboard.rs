//! The dashboard over real HTTP: the API's router with the dashboard merged (as `promptq
//! serve` mounts it) on 127.0.0.1:0, a fresh database per test, on SQLite and on PostgreSQL;
//! and once in a real headless Chromium driven over the DevTools protocol against the real
//! `promptq serve` binary.
//!
//! What is checked: the login (wrong secret, cookie attributes, a token that is not the
//! secret, logout), that every page without a session goes to the login form, that the cookie
//! never opens `/api/*`, the same-origin check of form posts, HTML escaping of prompt text,
//! model names and errors, retrying from the pages, error pages (404, 400, 409, 503), the
//! store reads behind the overview, and a click-through in a browser.

mod support;

// A test crate's root looks for modules next to itself; these live under tests/dashboard/ (and
// the server harness is the HTTP API tests' own).
#[path = "dashboard/actions.rs"]
mod actions;
#[path = "dashboard/browser.rs"]
mod browser;
#[path = "dashboard/cdp.rs"]
mod cdp;
#[path = "http_api/harness.rs"]
mod harness;
#[path = "dashboard/login.rs"]
mod login;
#[path = "dashboard/pages.rs"]
mod pages;
#[path = "dashboard/store_reads.rs"]
mod store_reads;
#[path = "dashboard/web.rs"]
mod web;

/// Runs each named scenario (an `async fn(support::TestDb)` in a module of this crate) on
/// SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::sqlite().await;
                    crate::$module::$name(db).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::support::postgres().await else { return };
                    crate::$module::$name(db).await;
                }
            )*
        }
    };
}

on_both_databases!(
    login::a_wrong_secret_answers_401_and_sets_no_cookie,
    login::the_right_secret_sets_a_strict_http_only_cookie_that_is_not_the_secret,
    login::pages_without_a_session_redirect_to_the_login_form,
    login::the_cookie_never_opens_the_api,
    login::logging_out_clears_the_cookie,
    pages::the_overview_shows_batches_models_and_pauses,
    pages::text_from_users_and_providers_is_escaped,
    pages::a_batch_lists_its_jobs_by_status,
    pages::a_job_shows_its_attempts_and_response,
    pages::bad_paths_and_queries_answer_error_pages,
    pages::a_database_outage_answers_503,
    actions::retry_from_a_page_queues_a_failed_job,
    actions::retry_all_failed_of_a_batch,
    actions::posts_from_another_origin_are_refused,
    store_reads::batches_recent_lists_the_newest_batches_with_counts,
    store_reads::models_window_counts_and_percentiles_per_model,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_dashboard_is_open() {
    login::without_a_secret_the_dashboard_is_open(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_app_url_makes_the_cookie_secure() {
    login::an_https_app_url_makes_the_cookie_secure(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_opens_a_failed_job_and_retries_it() {
    browser::a_browser_logs_in_opens_a_failed_job_and_retries_it().await;
}
