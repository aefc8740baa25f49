//! [`Schedule`]: a cron expression in a time zone, its slots and the keys of its periods.

use std::fmt;

use chrono::{DateTime, LocalResult, SubsecRound, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, Direction};

use super::{ScheduleError, TRIGGER_GRACE, Zone};
use crate::domain::BatchKey;

/// The keyword of `CRON_SCHEDULE` that turns the built-in scheduler off.
const OFF: &str = "off";
/// What `off` means for batch keys: one batch per local day, opened at midnight.
const MIDNIGHT: &str = "0 0 * * *";

/// A 5-field cron expression read in an IANA time zone, parsed once.
///
/// Its slots are the instants it fires at, with two rules for the days the clocks change:
/// - a wall-clock time that the zone skips (spring forward) is no slot, except for a schedule
///   with one fixed time of day, which fires at the first instant after the gap (croner's
///   rule, as in vixie cron), so that a daily schedule still has its day;
/// - a wall-clock time that the zone repeats (fall back) is a slot once, at its first
///   occurrence, so that batch keys, which carry local time, strictly increase from slot to
///   slot and a repeated hour never reopens a period that already ran.
///
/// `off` schedules like `0 0 * * *` (one batch per local day) but does not tick: only outside
/// triggers create its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Zone,
    daily: bool,
    ticks: bool,
}

impl Schedule {
    /// Parses a 5-field cron expression (`0 0 * * *`, `*/15 * * * *`, `0 12 * * 1-5`, names
    /// such as `MON-FRI` and `@daily` included) or `off`, read in `tz`.
    ///
    /// Refused: seconds or year fields (keys have minute resolution, so two slots in one minute
    /// would share a key), and expressions that never fire (`0 0 30 2 *`).
    pub fn parse(expr: &str, tz: Zone) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expr: expr.to_owned(),
            reason,
        };
        let off = expr.eq_ignore_ascii_case(OFF);
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(if off { MIDNIGHT } else { expr })
            .map_err(|err| invalid(err.to_string()))?;
        // A pattern like `0 0 30 2 *` parses but has no slot at all: every pass would fail on
        // it later, so it is refused here, where the user can still be told.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        let fires = reference.is_some_and(|at| {
            cron.find_next_occurrence(&at.with_timezone(&tz), true)
                .is_ok()
        });
        if !fires {
            return Err(invalid("it never fires".to_owned()));
        }
        let daily =
            cron.pattern.minutes.values().len() == 1 && cron.pattern.hours.values().len() == 1;
        Ok(Schedule {
            expr: if off { OFF.to_owned() } else { expr.to_owned() },
            cron,
            tz,
            daily,
            ticks: !off,
        })
    }

    /// The expression as given (trimmed), or `off`.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The zone the expression and the batch keys are read in.
    pub fn time_zone(&self) -> Zone {
        self.tz
    }

    /// Whether the schedule fires at most once per local day (its minute and hour fields each
    /// match one value), which makes its batch keys dates.
    pub fn is_daily(&self) -> bool {
        self.daily
    }

    /// Whether the built-in cron ticks on this schedule (`false` for `off`).
    pub fn ticks(&self) -> bool {
        self.ticks
    }

    /// The latest slot at or before `t`: the start of the period `t` belongs to.
    pub fn slot_at_or_before(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        self.search(t, Direction::Backward)
    }

    /// The first slot strictly after `t`: the end of the period `t` belongs to.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        self.search(t, Direction::Forward)
    }

    /// The key of the period that opens at `slot`: its local date for a daily schedule, its
    /// local date and minute otherwise. Give it a slot; any other instant gets the key its
    /// own local time would have, which names no period.
    pub fn batch_key(&self, slot: DateTime<Utc>) -> Result<BatchKey, ScheduleError> {
        let local = slot.with_timezone(&self.tz);
        let key = if self.daily {
            local.format("%Y-%m-%d")
        } else {
            local.format("%Y-%m-%dT%H:%M")
        };
        // Only a year outside 0..=9999 fails here, and croner's searches stop at 5000.
        key.to_string().parse().map_err(|_| self.out_of_range(slot))
    }

    /// The slot an outside trigger at `now` is for: the latest slot at or before
    /// `now + TRIGGER_GRACE`, so a trigger a little early lands in the slot it was meant for and
    /// one in the afternoon in today's.
    ///
    /// The look-ahead is capped at half the time between the slots around `now`: with slots
    /// closer than two graces (`*/5 * * * *`), a trigger at a slot plus or minus a few seconds
    /// would otherwise land on either side of a boundary and skip or repeat a period.
    pub fn trigger_slot(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        let current = self.slot_at_or_before(now)?;
        let upcoming = self.next_after(now)?;
        let look_ahead = TRIGGER_GRACE.min((upcoming - current) / 2);
        Ok(if upcoming - now <= look_ahead {
            upcoming
        } else {
            current
        })
    }

    /// When the built-in cron ticks next after `after`; `None` when it does not tick (`off`).
    pub fn next_tick(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        if !self.ticks {
            return Ok(None);
        }
        self.next_after(after).map(Some)
    }

    /// The tick the built-in cron owes on start or after a pause: the latest slot in
    /// `(last_tick, now]`, once, however many were missed (each missed period would be a
    /// batch nobody asked for; the latest is the one still current).
    ///
    /// Without a record of a last tick, the current slot counts as missed: due-ness by batch
    /// key makes that tick harmless when its batch already ran. `None` when nothing is owed,
    /// when the clock went back past `last_tick`, or when the schedule does not tick.
    pub fn catch_up(
        &self,
        last_tick: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        if !self.ticks {
            return Ok(None);
        }
        let latest = self.slot_at_or_before(now)?;
        Ok(match last_tick {
            Some(last) if last >= latest => None,
            _ => Some(latest),
        })
    }

    fn search(
        &self,
        t: DateTime<Utc>,
        direction: Direction,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        // croner walks whole seconds; slots are whole minutes, so dropping the fraction
        // changes no answer and keeps croner's own fold arithmetic on exact seconds.
        let mut from = t.trunc_subsecs(0).with_timezone(&self.tz);
        let mut inclusive = direction == Direction::Backward;
        // Each round moves strictly in `direction`, and only the repeated wall-clock stretch of
        // a fall-back day (an hour, at most a minute apart) sends it round again.
        loop {
            let found = match direction {
                Direction::Forward => self.cron.find_next_occurrence(&from, inclusive),
                Direction::Backward => self.cron.find_previous_occurrence(&from, inclusive),
            }
            .map_err(|_| self.out_of_range(t))?;
            if !self.is_repeat(&found) {
                return Ok(found.with_timezone(&Utc));
            }
            from = found;
            inclusive = false;
        }
    }

    /// Whether `at` is the second occurrence of its wall-clock time (the later half of a
    /// fall-back overlap): croner fires there for interval schedules, this module does not.
    fn is_repeat(&self, at: &DateTime<Zone>) -> bool {
        matches!(
            self.tz.from_local_datetime(&at.naive_local()),
            LocalResult::Ambiguous(_, later) if later == *at
        )
    }

    fn out_of_range(&self, at: DateTime<Utc>) -> ScheduleError {
        ScheduleError::OutOfRange {
            expr: self.expr.clone(),
            at,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz)
    }
}

#[cfg(test)]
mod tests;
