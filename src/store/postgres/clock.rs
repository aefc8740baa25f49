//! This process's reading of the PostgreSQL server's clock.
//!
//! Queue statements judge leases and due times by the server's `now()`. The times the engine
//! computes itself (when a rate-limited call may start, how long a model is paused, when a
//! handed-back or retried job falls due) are written to rows that every process shares and
//! compared with them, so they must be on the same clock: a worker whose clock ran a minute
//! ahead reserved its rate slots a minute into everyone else's future, and the others handed
//! their jobs back for a minute at a time. Each process therefore keeps the offset between its
//! clock and the server's, read when it connects and again at every worker report, and
//! [`ServerClock::now`] is its own clock moved by that offset.
//!
//! A reading is the server's `clock_timestamp()` against the middle of the local round trip,
//! so its error is at most half the round trip. Readings slower than both [`MAX_ROUND_TRIP`]
//! and twice the fastest round trip seen are not used (a wait for a pooled connection is not
//! the network; a distant server is never fast), and an offset within a reading's own error
//! counts as none: clocks that agree stay exactly as they are.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Readings whose round trip took longer are left out, unless no faster one was ever seen.
pub const MAX_ROUND_TRIP: Duration = Duration::from_millis(20);

/// The offset of the server's clock from this process's, in microseconds.
#[derive(Debug, Default)]
pub struct ServerClock {
    offset_micros: AtomicI64,
    /// The fastest round trip of a reading so far, in microseconds (0: none yet).
    fastest_micros: AtomicU64,
}

impl ServerClock {
    /// The server's time now, as far as this process can tell.
    pub fn now(&self) -> DateTime<Utc> {
        self.at(Utc::now())
    }

    /// `local`, a time on this process's clock, on the server's.
    pub fn at(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed));
        local.checked_add_signed(offset).unwrap_or(local)
    }

    /// Learns from one reading: the server said `server` in answer to a statement sent at
    /// `sent` (local clock) that took `round_trip` to come back.
    pub fn observe(&self, sent: DateTime<Utc>, round_trip: Duration, server: DateTime<Utc>) {
        let micros = u64::try_from(round_trip.as_micros()).unwrap_or(u64::MAX);
        let fastest = match self.fastest_micros.load(Ordering::Relaxed) {
            0 => micros,
            seen => seen.min(micros),
        };
        self.fastest_micros.store(fastest.max(1), Ordering::Relaxed);
        if round_trip > MAX_ROUND_TRIP.max(Duration::from_micros(fastest.saturating_mul(2))) {
            return;
        }
        let half = TimeDelta::from_std(round_trip / 2).unwrap_or_default();
        let Some(middle) = sent.checked_add_signed(half) else {
            return;
        };
        let offset = server - middle;
        let offset = if offset.abs() <= half {
            0
        } else {
            offset.num_microseconds().unwrap_or_default()
        };
        self.offset_micros.store(offset, Ordering::Relaxed);
    }

    /// The offset in force (the server's clock less this process's).
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_clock_a_minute_behind_the_server_is_moved_forward() {
        let clock = ServerClock::default();
        clock.observe(at(0), Duration::from_millis(2), at(60));
        assert_eq!(
            clock.offset(),
            TimeDelta::seconds(60) - TimeDelta::milliseconds(1)
        );
        assert_eq!(
            clock.at(at(100)),
            at(160) - TimeDelta::milliseconds(1),
            "local times are read on the server's clock"
        );
        clock.observe(at(0), Duration::from_millis(2), at(-90));
        assert_eq!(
            clock.offset(),
            TimeDelta::seconds(-90) - TimeDelta::milliseconds(1),
            "and a clock ahead is moved back"
        );
    }

    #[test]
    fn clocks_that_agree_within_the_reading_s_error_stay_as_they_are() {
        let clock = ServerClock::default();
        clock.observe(
            at(0),
            Duration::from_millis(4),
            at(0) + TimeDelta::microseconds(3_500),
        );
        assert_eq!(clock.offset(), TimeDelta::zero());
        clock.observe(at(0), Duration::from_millis(2), at(5));
        clock.observe(
            at(0),
            Duration::from_millis(2),
            at(0) + TimeDelta::microseconds(500),
        );
        assert_eq!(
            clock.offset(),
            TimeDelta::zero(),
            "a later reading that agrees undoes an earlier skew"
        );
    }

    #[test]
    fn slow_readings_are_not_used() {
        let clock = ServerClock::default();
        clock.observe(at(0), Duration::from_millis(2), at(30));
        let learned = clock.offset();
        clock.observe(at(0), MAX_ROUND_TRIP + Duration::from_millis(1), at(0));
        assert_eq!(clock.offset(), learned);
    }

    #[test]
    fn a_distant_server_is_read_at_its_own_round_trip() {
        let clock = ServerClock::default();
        let far = Duration::from_millis(60);
        clock.observe(at(0), far, at(30));
        assert_eq!(
            clock.offset(),
            TimeDelta::seconds(30) - TimeDelta::milliseconds(30)
        );
        clock.observe(at(0), far * 2, at(50));
        assert_eq!(
            clock.offset(),
            TimeDelta::seconds(50) - TimeDelta::milliseconds(60)
        );
        clock.observe(at(0), far * 2 + Duration::from_millis(1), at(0));
        assert_eq!(
            clock.offset(),
            TimeDelta::seconds(50) - TimeDelta::milliseconds(60),
            "beyond twice the fastest"
        );
    }
}
