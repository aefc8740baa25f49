//! Time zones by IANA name (`TIMEZONE`, `Europe/Paris`): a chrono [`TimeZone`] whose rules come
//! from the tz database bundled in the binary, read for a zone the first time it is named.
//!
//! The database is jiff's copy, kept as one byte string of TZif files. A generated table of
//! every transition of every zone (chrono-tz's form) holds a pointer per transition: ~0.9 MB
//! the loader writes at every start, so each process carried it privately whether it used a
//! zone or not. Here a process holds only the zones it names (a few kilobytes each), for the
//! rest of its life: the set of zones is finite, so the memory is bounded.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use jiff::tz::AmbiguousOffset;

/// An IANA time zone; `Copy`, like the instants computed in it.
#[derive(Clone, Copy)]
pub struct Zone(&'static Rules);

struct Rules {
    /// The database's spelling of the name.
    name: &'static str,
    tz: jiff::tz::TimeZone,
}

static UTC_RULES: Rules = Rules {
    name: "UTC",
    tz: jiff::tz::TimeZone::UTC,
};

/// Zones named so far, each read once and kept.
static NAMED: Mutex<Vec<&'static Rules>> = Mutex::new(Vec::new());

impl Zone {
    pub const UTC: Zone = Zone(&UTC_RULES);

    /// The zone of an IANA name (case-insensitive, as the database matches it), or `None`
    /// for a name the database does not hold, offsets such as `+02:00` included.
    pub fn named(name: &str) -> Option<Zone> {
        // The default needs no look-up: a look-up reads the database's index, some pages of
        // the binary that a process would otherwise never map.
        if name.eq_ignore_ascii_case(UTC_RULES.name) {
            return Some(Zone::UTC);
        }
        let mut named = NAMED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rules) = named
            .iter()
            .find(|rules| rules.name.eq_ignore_ascii_case(name))
        {
            return Some(Zone(rules));
        }
        let tz = jiff::tz::TimeZone::get(name).ok()?;
        let canonical = tz.iana_name()?;
        let name: &'static str = Box::leak(canonical.into());
        let rules: &'static Rules = Box::leak(Box::new(Rules { name, tz }));
        named.push(rules);
        Some(Zone(rules))
    }

    /// When `date` starts here: midnight, or the first valid time after it where a clock
    /// change skips midnight (looked for in steps of 15 minutes, the finest any zone uses).
    pub fn start_of_day(self, date: NaiveDate) -> Option<chrono::DateTime<chrono::Utc>> {
        let midnight = date.and_time(NaiveTime::MIN);
        (0..=24 * 4)
            .map(|quarter| midnight + chrono::Duration::minutes(15 * quarter))
            .find_map(|local| self.from_local_datetime(&local).earliest())
            .map(|time| time.with_timezone(&chrono::Utc))
    }

    /// The name as the database spells it.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    fn offset(self, offset: jiff::tz::Offset) -> ZoneOffset {
        // IANA offsets stay within ±15 h; chrono's fixed offsets reach ±24 h, jiff's ±26 h.
        let seconds = offset.seconds().clamp(-86_399, 86_399);
        ZoneOffset {
            zone: self,
            fixed: FixedOffset::east_opt(seconds).unwrap_or_else(|| chrono::Utc.fix()),
        }
    }

    /// The offset in force at a Unix second; instants beyond the years jiff computes in
    /// (±9999) take the offset at its nearest bound.
    fn offset_at(self, second: i64) -> ZoneOffset {
        let second = second.clamp(
            jiff::Timestamp::MIN.as_second(),
            jiff::Timestamp::MAX.as_second(),
        );
        let offset = jiff::Timestamp::from_second(second)
            .map(|at| self.0.tz.to_offset(at))
            .unwrap_or(jiff::tz::Offset::UTC);
        self.offset(offset)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

/// The offset of an instant in a [`Zone`]; it shows as `+01:00`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    /// One offset, two in a fall-back overlap (the earlier instant's first), none in a gap.
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        use chrono::{Datelike, Timelike};
        let civil = i16::try_from(local.year()).ok().and_then(|year| {
            jiff::civil::DateTime::new(
                year,
                local.month() as i8,
                local.day() as i8,
                local.hour() as i8,
                local.minute() as i8,
                local.second() as i8,
                // chrono counts a leap second as nanoseconds past 1e9; jiff has none.
                local.nanosecond().min(999_999_999) as i32,
            )
            .ok()
        });
        let Some(civil) = civil else {
            // Beyond jiff's years: the offset at its bound, as for instants.
            return MappedLocalTime::Single(self.offset_at(local.and_utc().timestamp()));
        };
        match self.0.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => MappedLocalTime::Single(self.offset(offset)),
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            AmbiguousOffset::Fold { before, after } => {
                MappedLocalTime::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset_at(utc.and_utc().timestamp())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn utc(text: &str) -> chrono::DateTime<Utc> {
        text.parse().unwrap()
    }

    fn local(text: &str) -> NaiveDateTime {
        text.parse().unwrap()
    }

    #[test]
    fn names_are_read_from_the_database_and_kept_once() {
        let paris = Zone::named("Europe/Paris").unwrap();
        assert_eq!(paris.name(), "Europe/Paris");
        assert_eq!(Zone::named("europe/paris"), Some(paris));
        assert!(std::ptr::eq(
            Zone::named("Europe/Paris").unwrap().0,
            paris.0
        ));
        assert_eq!(Zone::named("UTC"), Some(Zone::UTC));
        assert_eq!(Zone::named("Etc/UTC").map(Zone::name), Some("Etc/UTC"));
        assert_eq!(
            Zone::named("US/Eastern").map(Zone::name),
            Some("US/Eastern")
        );
        for bad in [
            "",
            "Europe/Pariss",
            "+02:00",
            "../../../etc/passwd",
            "Europe/",
        ] {
            assert_eq!(Zone::named(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_take_the_offset_in_force() {
        let paris = Zone::named("Europe/Paris").unwrap();
        let winter = utc("2025-01-15T12:00:00Z").with_timezone(&paris);
        assert_eq!(winter.offset().fix().local_minus_utc(), 3600);
        assert_eq!(winter.to_rfc3339(), "2025-01-15T13:00:00+01:00");
        let summer = utc("2025-07-15T12:00:00Z").with_timezone(&paris);
        assert_eq!(summer.offset().fix().local_minus_utc(), 7200);
        // The second before and the second of the spring change (01:00 UTC, 30 March 2025).
        let before = utc("2025-03-30T00:59:59Z").with_timezone(&paris);
        let after = utc("2025-03-30T01:00:00Z").with_timezone(&paris);
        assert_eq!(before.to_rfc3339(), "2025-03-30T01:59:59+01:00");
        assert_eq!(after.to_rfc3339(), "2025-03-30T03:00:00+02:00");
        // Far outside the database's years the nearest rule holds; nothing panics.
        let far = chrono::DateTime::<Utc>::MAX_UTC.with_timezone(&paris);
        assert_eq!(far.with_timezone(&Utc), chrono::DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            utc("2025-07-15T12:00:00Z")
                .with_timezone(&Zone::UTC)
                .to_rfc3339(),
            "2025-07-15T12:00:00+00:00"
        );
    }

    #[test]
    fn local_times_are_single_ambiguous_or_missing() {
        let new_york = Zone::named("America/New_York").unwrap();
        let plain = new_york.from_local_datetime(&local("2025-06-01T09:30:00"));
        assert_eq!(
            plain.single().unwrap().with_timezone(&Utc),
            utc("2025-06-01T13:30:00Z")
        );
        // 2025-11-02 01:30 happens twice: first at -04:00, then at -05:00.
        match new_york.from_local_datetime(&local("2025-11-02T01:30:00")) {
            MappedLocalTime::Ambiguous(earlier, later) => {
                assert_eq!(earlier.with_timezone(&Utc), utc("2025-11-02T05:30:00Z"));
                assert_eq!(later.with_timezone(&Utc), utc("2025-11-02T06:30:00Z"));
            }
            other => panic!("expected two instants, got {other:?}"),
        }
        // 2025-03-09 02:30 never happens.
        assert_eq!(
            new_york.from_local_datetime(&local("2025-03-09T02:30:00")),
            MappedLocalTime::None
        );
        // A zone without changes in years a cron runs in: Asia/Kolkata, +05:30.
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        let noon = kolkata.from_local_datetime(&local("2025-01-01T12:00:00"));
        assert_eq!(
            noon.single().unwrap().with_timezone(&Utc),
            utc("2025-01-01T06:30:00Z")
        );
        // Years jiff does not compute in still have an offset.
        let far = NaiveDate::from_ymd_opt(20_000, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        assert!(new_york.from_local_datetime(&far).single().is_some());
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_first_valid_time() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2024-09-08.
        let santiago = Zone::named("America/Santiago").expect("zone");
        let start = santiago
            .start_of_day(NaiveDate::from_ymd_opt(2024, 9, 8).expect("date"))
            .expect("a start");
        assert_eq!(start.to_rfc3339(), "2024-09-08T04:00:00+00:00");
    }
}
