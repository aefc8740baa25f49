//! The times at which jobs this process put back in the queue fall due, so that its claim
//! loop wakes for each of them rather than at the next poll.
//!
//! A job handed back to wait for its rate-limit slot, or scheduled for a retry, is due at a
//! known time. Remembering only the earliest such time loses the others once it has passed:
//! the loop then sleeps a whole poll interval while jobs are due, and a rate limit's slots go
//! unused (measured: gaps of one second every few seconds, 78–92 % of a configured `rpm`).
//! Every time is kept, at millisecond grain, until it has passed.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// Upcoming due times, in milliseconds since the epoch.
#[derive(Default)]
pub struct DueTimes {
    times: Mutex<BTreeSet<i64>>,
    /// Signalled when a time is added before every other: a loop asleep until a later one
    /// must recompute its sleep.
    pub sooner: Notify,
}

/// More than this many distinct future times are not kept: the poll interval covers the rest.
const MOST_KEPT: usize = 100_000;

impl DueTimes {
    /// Remembers that a job falls due at `at`.
    pub fn add(&self, at: DateTime<Utc>) {
        let at = at.timestamp_millis();
        let mut times = self.lock();
        if times.len() >= MOST_KEPT {
            return;
        }
        let first = times.first().is_none_or(|&first| at < first);
        times.insert(at);
        drop(times);
        if first {
            self.sooner.notify_one();
        }
    }

    /// How long until the next remembered time after `now` (zero if one has just passed,
    /// `None` if none is left). Times that have passed are forgotten.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        let now = now.timestamp_millis();
        let mut times = self.lock();
        let passed = times.range(..=now).next().is_some();
        let later = times.split_off(&(now.saturating_add(1)));
        *times = later;
        if passed {
            return Some(Duration::ZERO);
        }
        let next = *times.first()?;
        Some(Duration::from_millis(
            u64::try_from(next - now).unwrap_or(0),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i64>> {
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn every_time_wakes_the_loop_not_only_the_first() {
        let due = DueTimes::default();
        due.add(at(1_000));
        due.add(at(1_300));
        due.add(at(2_000));
        assert_eq!(due.wait(at(900)), Some(Duration::from_millis(100)));
        // The first has passed: wake now, and the next ones are still known.
        assert_eq!(due.wait(at(1_000)), Some(Duration::ZERO));
        assert_eq!(due.wait(at(1_000)), Some(Duration::from_millis(300)));
        assert_eq!(due.wait(at(1_500)), Some(Duration::ZERO));
        assert_eq!(due.wait(at(1_500)), Some(Duration::from_millis(500)));
        assert_eq!(due.wait(at(2_500)), Some(Duration::ZERO));
        assert_eq!(due.wait(at(2_500)), None);
    }

    #[test]
    fn times_at_the_ends_of_time_do_not_overflow() {
        let due = DueTimes::default();
        due.add(DateTime::<Utc>::MAX_UTC);
        due.add(DateTime::<Utc>::MIN_UTC);
        assert_eq!(due.wait(at(0)), Some(Duration::ZERO));
        assert!(
            due.wait(at(0))
                .is_some_and(|wait| wait > Duration::from_secs(1 << 40))
        );
    }
}
