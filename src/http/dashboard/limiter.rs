//! The login form's guessing budget: one token bucket for the whole process, shared by every
//! client, so that parallel requests or many addresses cannot guess faster than it allows.
//!
//! Each login attempt takes a token *before* its secret is compared and gives it back when the
//! secret was right: failures spend the budget, a successful login does not. With the bucket
//! empty the form answers 429 without looking at the secret at all. The price is that someone
//! guessing also locks the form for everyone until tokens come back; the API (which takes the
//! secret in a header) is not affected, and the budget refills by itself. Twenty lines with a
//! mutex do this; a rate-limiting crate would bring keyed limiters and clocks we do not need.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins allowed in a burst.
pub const BURST: u32 = 10;
/// One more failed login is allowed after each such period (10 a minute).
pub const REFILL: Duration = Duration::from_secs(6);

#[derive(Debug)]
pub struct LoginLimiter {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            state: Mutex::new(Bucket {
                tokens: f64::from(BURST),
                at: Instant::now(),
            }),
        }
    }
}

impl LoginLimiter {
    /// Takes a token; `Err(wait)` with the time until the next one when there is none.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.at).as_secs_f64() / REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + earned).min(f64::from(BURST));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(REFILL.mul_f64(1.0 - bucket.tokens))
        }
    }

    /// Gives back a token taken by an attempt that succeeded.
    pub fn give_back(&self) {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.tokens = (bucket.tokens + 1.0).min(f64::from(BURST));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_and_success_costs_nothing() {
        let limiter = LoginLimiter::default();
        for _ in 0..BURST {
            assert!(limiter.try_take().is_ok());
        }
        let wait = limiter.try_take().expect_err("the bucket is empty");
        assert!(wait <= REFILL, "{wait:?}");
        limiter.give_back();
        assert!(limiter.try_take().is_ok());
        assert!(limiter.try_take().is_err());
    }
}
