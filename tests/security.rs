//! The security suite: each attack on promptq written as an attacker would send it, over real
//! HTTP against the real server (or the real binary), on SQLite and on PostgreSQL where the
//! store is touched.

mod support;

// A test crate's root looks for modules next to itself; these live under tests/security/ (and
// the server harness is the HTTP API tests' own).
#[path = "http_api/harness.rs"]
mod harness;
#[path = "security/injection.rs"]
mod injection;
#[path = "security/login.rs"]
mod login;
#[path = "security/web.rs"]
mod web;
