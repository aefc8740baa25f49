//! What happens after an attempt: the outcome of a model call, and when to try again.
//!
//! Pure decisions, no I/O: a success is stored; a permanent error fails the job at once; a
//! transient error is retried with exponential backoff and full jitter (capped), never sooner
//! than the provider's `Retry-After`, until the job's attempts are spent. An account-level
//! error (bad key, no credit) waits out the provider's cool-down, spending its attempt. A rate limit (429)
//! delays a job without spending its attempt, up to [`RATE_LIMIT_FREE_ATTEMPTS`] in all, so a
//! burst of 429s never turns into failed jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::domain::{ClaimedJob, Finish, Outcome};
use crate::providers::{Completion, ProviderError};

/// Attempts a job may spend on rate limits before they start to count.
pub const RATE_LIMIT_FREE_ATTEMPTS: i32 = 50;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to this long.
    pub base: Duration,
    /// No retry waits longer than this (unless the provider asks for more).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base · 2^(attempt-1))]`, so that jobs failing
    /// together do not come back together.
    pub fn backoff(&self, attempt: i32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.clamp(1, 30) as u32 - 1;
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(if millis == 0 {
            0
        } else {
            rng.random_range(0..=millis)
        })
    }

    /// The delay before the next attempt: what the provider asked for plus up to 10% (at
    /// most 1 s) of spread, else the jittered backoff.
    pub fn delay(&self, attempt: i32, error: &ProviderError, rng: &mut impl Rng) -> Duration {
        let hinted = error
            .retry_after
            .or_else(|| error.rate_limit.as_ref().and_then(|hint| hint.wait_hint()));
        match hinted {
            Some(wait) => {
                let spread = (wait.as_millis() as u64 / 10).min(1000);
                wait + Duration::from_millis(rng.random_range(0..=spread))
            }
            None => self.backoff(attempt, rng),
        }
    }
}

/// The outcome of one attempt of `job`, finished at `now`.
pub fn decide(
    job: &ClaimedJob,
    result: Result<Completion, ProviderError>,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Finish {
    let outcome = match result {
        Ok(completion) => Outcome::Succeeded(Box::new(completion.into_response())),
        // An account that cannot pay or authenticate may be fixed (a new key, more credit):
        // the job waits out the provider's cool-down rather than failing at once, but the
        // attempt counts, so a provider that stays broken fails its jobs in the end.
        Err(error) if error.account_level && job.attempt < job.job.max_attempts => Outcome::Retry {
            at: now
                + chrono::Duration::from_std(super::limits::ACCOUNT_COOL_DOWN)
                    .unwrap_or(chrono::Duration::MAX),
            error: error.to_attempt_error(),
            refund_attempt: false,
        },
        Err(error) if !error.is_retryable() => Outcome::Failed(error.to_attempt_error()),
        Err(error) => {
            let refund = error.rate_limited && job.attempt < RATE_LIMIT_FREE_ATTEMPTS;
            if !refund && job.attempt >= job.job.max_attempts {
                Outcome::Failed(error.to_attempt_error())
            } else {
                let delay = policy.delay(job.attempt, &error, rng);
                Outcome::Retry {
                    at: now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                    error: error.to_attempt_error(),
                    refund_attempt: refund,
                }
            }
        }
    };
    Finish {
        job_id: job.job.id,
        attempt: job.attempt,
        finished_at: now,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..40 {
            let ceiling = Duration::from_secs(1)
                .saturating_mul(2u32.saturating_pow(attempt.min(30) as u32 - 1))
                .min(policy.cap);
            for _ in 0..50 {
                assert!(policy.backoff(attempt, &mut rng) <= ceiling);
            }
        }
        // Jitter spreads: not every draw is the same.
        let draws: std::collections::HashSet<_> =
            (0..20).map(|_| policy.backoff(5, &mut rng)).collect();
        assert!(draws.len() > 10);
    }
}
