//! The security suite: each attack on promptq that a reviewer should see tried, one file per
//! theme, against the real binary or the real router over HTTP, on SQLite and PostgreSQL.
//!
//! - `keys`: a provider key reaches only the host it belongs to (API, CLI, stored rows).
//! - `secrets`: the `CRON_SECRET` and the keys never appear in an answer, a log line, a stored
//!   error or an export, and the HTTP fan-out never sends the secret in clear.
//!
//! The recording server that stands in for every provider is `tests/providers/fake.rs`;
//! `process` runs the binary with a chosen environment and keeps its log.

mod support;

// A test crate's root looks for modules next to itself; these live under tests/security/
// (and the fake provider under tests/providers/) so that Cargo does not take them for test
// crates of their own.
#[allow(dead_code)] // shared with the providers suite, which uses all of it
#[path = "providers/fake.rs"]
mod fake;
#[path = "security/process.rs"]
mod process;

#[path = "security/keys.rs"]
mod keys;
#[path = "security/secrets.rs"]
mod secrets;

// The web attacks (open mode, cross-origin and rebinding requests, login guessing, cookie
// flags, HTML/CSV/terminal injection, oversized and malformed bodies) are declared here:
// #[path = "security/web.rs"] mod web;
// #[path = "security/login.rs"] mod login;
// #[path = "security/injection.rs"] mod injection;
