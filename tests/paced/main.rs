//! Tests that measure a delivered rate, in a binary of their own so that no other test runs
//! beside them, and one at a time within it (each holds [`SERIAL`]): run side by side on two
//! cores, each starves the others' claim loops and leaves slots unused (measured: 82-84 % of
//! the limit with five at once, 97 % alone).

#[path = "../support/mod.rs"]
mod support;

mod litellm;
mod rate_at_scale;
mod window;

/// Held by every test of this binary for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
