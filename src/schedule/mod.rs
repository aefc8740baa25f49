//! Due-ness and batch keys from a cron expression: which prompts are due, and in which batch.
//!
//! A [`Schedule`] is a 5-field cron expression parsed once and read in an IANA time zone. The
//! instants it fires at are its *slots*; each slot opens a *period* that lasts until the next
//! slot, and a [`BatchKey`](crate::domain::BatchKey) names the period by the local time of its
//! slot: `YYYY-MM-DD` for a daily schedule, `YYYY-MM-DDTHH:MM` for a shorter one. A prompt is
//! due when the key of its schedule's current period is not its last batch key, so a trigger
//! that comes a little early, late or twice can neither skip nor duplicate a period. [`plan`]
//! turns a [`Trigger`] (an outside call, a tick of the built-in cron, an explicit backfill) and
//! the active prompts into the batches to create.
//!
//! This module is pure: time comes in as an argument and a plan goes out. It must never read
//! the clock, sleep, log, or touch a database or the network; the cron loop that sleeps until
//! [`Schedule::next_tick`] and the store that records the batches live with its callers.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use promptq::schedule::{Schedule, parse_time_zone};
//!
//! let tz = parse_time_zone("Europe/Paris").unwrap();
//! let daily = Schedule::parse("0 0 * * *", tz).unwrap();
//! // Paris midnight is 22:00 UTC in summer; a trigger 30 s early lands in the coming day.
//! let slot = daily.trigger_slot(Utc.with_ymd_and_hms(2025, 7, 13, 21, 59, 30).unwrap()).unwrap();
//! assert_eq!(daily.batch_key(slot).unwrap().as_str(), "2025-07-14");
//! ```

mod expr;
mod plan;
mod zone;

pub use expr::Schedule;
pub use plan::{
    Plan, PlannedBatch, PromptScheduleError, ScheduledPrompt, Trigger, period_start, plan,
};
pub use zone::{Zone, ZoneOffset};

use chrono::{DateTime, TimeDelta, Utc};

/// How far ahead an outside trigger looks for the slot it was meant for: a trigger at 23:58
/// for a midnight schedule belongs to the coming day, one at 00:03 to the day that just began.
/// Schedules whose slots are closer than two graces apart look ahead half a period instead, so
/// that a trigger still lands in the nearer slot (see [`Schedule::trigger_slot`]).
pub const TRIGGER_GRACE: TimeDelta = TimeDelta::minutes(5);

/// What can go wrong in scheduling; every message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A cron expression that does not parse, or that never fires: refuse it at the edge (400).
    #[error("invalid cron expression '{expr}': {reason}")]
    InvalidCron { expr: String, reason: String },
    /// A time zone that is not an IANA name.
    #[error(
        "invalid time zone '{name}': expected an IANA name such as UTC, Europe/Paris or America/New_York"
    )]
    InvalidTimeZone { name: String },
    /// No slot could be found near an instant: only instants far outside the years people
    /// schedule in (croner searches years 1 to 5000) get here.
    #[error("cron expression '{expr}' has no slot near {at}")]
    OutOfRange { expr: String, at: DateTime<Utc> },
    /// A batch key whose local time does not exist in the zone, even after a gap.
    #[error("batch key '{key}' names no instant in {tz}")]
    NoSuchInstant { key: String, tz: String },
}

/// Parses a time zone name (`TIMEZONE`): an IANA name (`Europe/Paris`, `UTC`), in any case.
pub fn parse_time_zone(name: &str) -> Result<Zone, ScheduleError> {
    Zone::named(name.trim()).ok_or_else(|| ScheduleError::InvalidTimeZone {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_parse_by_iana_name() {
        assert_eq!(parse_time_zone("UTC"), Ok(Zone::UTC));
        assert_eq!(
            parse_time_zone(" Europe/Paris "),
            Ok(Zone::named("Europe/Paris").unwrap())
        );
        let err = parse_time_zone("Europe/Pariss").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid time zone 'Europe/Pariss': expected an IANA name such as UTC, Europe/Paris or America/New_York"
        );
        assert!(parse_time_zone("").is_err());
        assert!(parse_time_zone("+02:00").is_err());
    }
}
