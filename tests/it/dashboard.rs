//! The dashboard over real HTTP: the API's router with the dashboard merged (as `promptq
//! serve` mounts it) on 127.0.0.1:0, a fresh database per test, on SQLite and on PostgreSQL;
//! and once in a real headless Chromium driven over the DevTools protocol against the real
//! `promptq serve` binary.
//!
//! What is checked: the login (wrong secret, cookie attributes, a token that is not the
//! secret, logout), that every page without a session goes to the login form, that the cookie
//! never opens `/api/*`, the same-origin check of form posts, HTML escaping of prompt text,
//! model names and errors, retrying and cancelling from the pages, error pages (404, 400, 409,
//! 503, an HTML 404 for unknown pages), the list of every batch, the failed list newest first,
//! a batch's per-model summary, a prompt's answers side by side, a running count of held jobs
//! only, well-nested HTML on every page, the store reads behind the overview, and a
//! click-through in a browser that also measures every page at a phone's and a desktop's width.

use crate::support;

mod actions;
mod browser;
mod cdp;
mod login;
mod markup;
mod pages;
mod reach;
mod store_reads;
mod tracker_browser;
mod trackers;
pub(crate) mod web;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_dashboard_is_open() {
    login::without_a_secret_the_dashboard_is_open(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_app_url_makes_the_cookie_secure() {
    login::an_https_app_url_makes_the_cookie_secure(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opens_a_tracker_page_at_two_widths() {
    tracker_browser::a_browser_opens_a_tracker_page_at_two_widths(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_opens_a_failed_job_and_retries_it() {
    browser::a_browser_logs_in_opens_a_failed_job_and_retries_it().await;
}
