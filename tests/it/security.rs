//! The security suite: each attack on promptq that a reviewer should see tried, one file per
//! theme, written as an attacker would send it, against the real binary or the real server over
//! HTTP, on SQLite and PostgreSQL where the store is touched.
//!
//! - `keys`: a provider key reaches only the host it belongs to (API, CLI, stored rows).
//! - `secrets`: the `CRON_SECRET` and the keys never appear in an answer, a log line, a stored
//!   error or an export, and the HTTP fan-out never sends the secret in clear.
//! - `web`: open mode refuses cross-site and DNS-rebinding requests; JSON bodies must say so.
//! - `login`: guessing the dashboard secret is rate-limited across clients; cookie flags.
//! - `injection`: HTML, CSV and terminal injection through stored text stay inert.
//!
//! The recording server that stands in for every provider is `tests/support/fake.rs`;
//! `process` runs the binary with a chosen environment and keeps its log.

mod process;

mod injection;
mod keys;
mod login;
mod secrets;
mod web;
