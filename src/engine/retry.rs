//! What happens after an attempt: the outcome of a model call, and when to try again.
//!
//! Pure decisions, no I/O: a success is stored (priced by the model's `params.price` when the
//! provider reported no cost); a permanent error fails the job at once; a
//! transient error is retried with exponential backoff and full jitter (capped), never sooner
//! than the provider's `Retry-After`, until the job's attempts are spent. An account-level
//! error (bad key, no credit) waits out the provider's cool-down, spending its attempt. A rate limit (429)
//! delays a job without spending its attempt (it is counted apart, as rate-limited), up to
//! [`RATE_LIMIT_FREE_ATTEMPTS`] in all, so a burst of 429s never turns into failed jobs.
//!
//! No wait decided here exceeds [`MAX_WAIT`], and every instant is computed with checked
//! arithmetic ([`later`]): what a provider sends can delay a job, never wedge it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, RngExt};

use crate::domain::price::settle_cost;
use crate::domain::{ClaimedJob, Finish, Outcome};
pub use crate::providers::MAX_WAIT;
use crate::providers::{Completion, ProviderError};

/// Claims a job may spend on rate limits before they start to count as attempts. A model
/// that keeps answering 429 is paused long before ([`super::limits::STORM_STRIKES`]).
pub const RATE_LIMIT_FREE_ATTEMPTS: i32 = 20;

/// `now + wait`, with the wait capped at [`MAX_WAIT`] and no overflow whatever the inputs.
pub fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    let wait = TimeDelta::from_std(wait.min(MAX_WAIT)).unwrap_or(TimeDelta::zero());
    now.checked_add_signed(wait).unwrap_or(now)
}

/// Whether this failed attempt is the job's last: `decide` fails the job rather than
/// scheduling another attempt.
pub fn ends_job(job: &ClaimedJob, error: &ProviderError) -> bool {
    // Attempts spent, this one included: a claim counts unless it is refunded.
    let spent = job.job.attempt_count;
    if error.account_level {
        return spent >= job.job.max_attempts;
    }
    if !error.is_retryable() {
        return true;
    }
    !refunds(job, error) && spent >= job.job.max_attempts
}

/// A rate-limited attempt is handed back without spending the job's attempts.
fn refunds(job: &ClaimedJob, error: &ProviderError) -> bool {
    error.rate_limited
        && !error.account_level
        && job.job.rate_limited_count < RATE_LIMIT_FREE_ATTEMPTS
}

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
                let wait = wait.min(MAX_WAIT);
                let spread = (wait.as_millis() as u64 / 10).min(1000);
                wait.saturating_add(Duration::from_millis(rng.random_range(0..=spread)))
                    .min(MAX_WAIT)
            }
            None => self.backoff(attempt, rng).min(MAX_WAIT),
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
        Ok(completion) => {
            let mut response = completion.into_response();
            // The price is in the params the claim already read: no query on the hot path.
            settle_cost(&mut response, job.model.spec.spend().price.as_ref(), false);
            Outcome::Succeeded(Box::new(response))
        }
        Err(error) if ends_job(job, &error) => Outcome::Failed(error.to_attempt_error()),
        // An account that cannot pay or authenticate may be fixed (a new key, more credit):
        // the job waits out the provider's cool-down rather than failing at once, but the
        // attempt counts, so a provider that stays broken fails its jobs in the end.
        Err(error) if error.account_level => Outcome::Retry {
            at: later(now, super::limits::ACCOUNT_COOL_DOWN),
            error: error.to_attempt_error(),
            refund_attempt: false,
        },
        Err(error) => Outcome::Retry {
            at: later(now, policy.delay(job.attempt, &error, rng)),
            refund_attempt: refunds(job, &error),
            error: error.to_attempt_error(),
        },
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
    fn no_wait_overflows_or_exceeds_the_cap() {
        let now = Utc::now();
        assert_eq!(later(now, Duration::MAX), now + TimeDelta::hours(1));
        let end = DateTime::<Utc>::MAX_UTC;
        assert_eq!(later(end, Duration::from_secs(5)), end);
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut error = ProviderError::new(crate::providers::ErrorKind::Retryable, "x".into());
        error.retry_after = Some(Duration::MAX);
        assert_eq!(policy.delay(1, &error, &mut rng), MAX_WAIT);
    }

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
