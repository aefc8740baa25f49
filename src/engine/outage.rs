//! When this process last found the database unreachable: the lease sweep waits a while after.
//!
//! A running job's lease is renewed by its worker's heartbeat. While the database is down (a
//! restart, a failover) no renewal lands, and an outage longer than a lease leaves every
//! running job of every worker with an expired lease when it comes back. The first sweep after
//! it would then hand back the live workers' jobs before their next renewal, and every call
//! under way would be made again. So a process leaves expired leases alone for
//! [`AFTER_OUTAGE`] after a statement of its own last failed for want of the database, while
//! the workers renew theirs (a heartbeat that failed tries again a second later). A process
//! that never lost the database sweeps as before: a worker cut off from it alone for longer
//! than a lease is taken for hung.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// How long after the database was last unreachable this process sweeps no expired lease.
pub const AFTER_OUTAGE: Duration = Duration::from_secs(10);

/// The last moment a statement failed because the database could not be reached.
#[derive(Debug, Default)]
pub struct Outage {
    last: Mutex<Option<Instant>>,
}

impl Outage {
    /// Notes `result`'s failure if it says the database could not be reached.
    pub fn note<T>(&self, result: &Result<T, StoreError>) {
        if let Err(StoreError::Unavailable(_)) = result {
            self.noted_at(Instant::now());
        }
    }

    fn noted_at(&self, at: Instant) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Whether the database was unreachable within [`AFTER_OUTAGE`] of `now`.
    pub fn recent(&self, now: Instant) -> bool {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|at| now.saturating_duration_since(at) < AFTER_OUTAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_database_counts_and_only_for_a_while() {
        let outage = Outage::default();
        let now = Instant::now();
        assert!(!outage.recent(now));
        outage.note::<()>(&Err(StoreError::Conflict("taken".into())));
        outage.note(&Ok(()));
        assert!(!outage.recent(now), "other errors are not an outage");
        outage.note::<()>(&Err(StoreError::Unavailable("connection refused".into())));
        assert!(outage.recent(Instant::now()));
        assert!(!outage.recent(Instant::now() + AFTER_OUTAGE));
    }
}
