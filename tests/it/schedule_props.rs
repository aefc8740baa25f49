//! Properties of schedules over random instants, expressions and zones: every instant lies in
//! exactly one period, a period has one key, keys increase from slot to slot, triggers near a
//! slot agree on it, and jittered or repeated triggers create one batch per slot.
//!
//! Instants are drawn both uniformly over a century and close to clock changes (where the
//! interesting bugs live). Case counts stay modest: the suite runs on two cores.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use promptq::schedule::{Schedule, ScheduledPrompt, TRIGGER_GRACE, Trigger, Zone, plan};
use proptest::prelude::*;

const EXPRESSIONS: &[&str] = &[
    "0 0 * * *",
    "off",
    "0 12 * * 1-5",
    "30 2 * * *",
    "5 4 * * SUN",
    "0 0 1 * *",
    "0 0 1 1 *",
    "0 * * * *",
    "*/15 * * * *",
    "0,30 1-3 * * *",
    "*/7 9-17 * * *",
    "*/5 * * * *",
    "* * * * *",
];

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

/// Clock changes (UTC) and their zones: Paris and New York in both directions, Sao Paulo's
/// midnight gap and its overlap, Lord Howe's half-hour shifts.
const TRANSITIONS: &[(&str, &str)] = &[
    ("Europe/Paris", "2025-03-30T01:00:00Z"),
    ("Europe/Paris", "2025-10-26T01:00:00Z"),
    ("America/New_York", "2025-03-09T07:00:00Z"),
    ("America/New_York", "2025-11-02T06:00:00Z"),
    ("America/Sao_Paulo", "2018-11-04T03:00:00Z"),
    ("America/Sao_Paulo", "2019-02-17T02:00:00Z"),
    ("Australia/Lord_Howe", "2025-04-05T15:00:00Z"),
    ("Australia/Lord_Howe", "2025-10-04T15:30:00Z"),
];

fn zone(name: &str) -> Zone {
    Zone::named(name).expect("the listed zones exist")
}

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, nanos).expect("generated instants are in range")
}

/// A zone and an instant: any zone at any time in 1990..2100, or a zone within three hours
/// of one of its clock changes, where the interesting cases live.
fn zone_and_instant() -> impl Strategy<Value = (Zone, DateTime<Utc>)> {
    let nanos = prop_oneof![Just(0u32), 0u32..1_000_000_000];
    let anywhere = (
        proptest::sample::select(ZONES),
        631_152_000i64..4_102_444_800,
    );
    let near_change = (0..TRANSITIONS.len(), -3 * 3600i64..3 * 3600).prop_map(|(i, offset)| {
        let (tz, change) = TRANSITIONS[i];
        let change = DateTime::parse_from_rfc3339(change).expect("transitions are RFC 3339");
        (tz, change.timestamp() + offset)
    });
    (prop_oneof![anywhere, near_change], nanos)
        .prop_map(|((tz, secs), nanos)| (zone(tz), at(secs, nanos)))
}

/// A schedule from the list, in a zone, and an instant to look at it from.
fn schedule_and_instant() -> impl Strategy<Value = (Schedule, DateTime<Utc>)> {
    (proptest::sample::select(EXPRESSIONS), zone_and_instant()).prop_map(|(expr, (tz, t))| {
        let schedule = Schedule::parse(expr, tz).expect("the listed expressions parse");
        (schedule, t)
    })
}

/// Whether the slots just around `slot` are far enough apart for the full grace on each side.
fn roomy(schedule: &Schedule, slot: DateTime<Utc>) -> bool {
    let previous = schedule.slot_at_or_before(slot - TimeDelta::seconds(1));
    let next = schedule.next_after(slot);
    matches!((previous, next), (Ok(p), Ok(n)) if slot - p > TRIGGER_GRACE * 2 && n - slot > TRIGGER_GRACE * 2)
}

/// An offset from `slot` at `fraction` (-1..1) of the way to the edge of the trigger grace on
/// that side, which shrinks to half a period for slots closer than two graces.
fn within_grace(schedule: &Schedule, slot: DateTime<Utc>, fraction: f64) -> TimeDelta {
    let reach = if fraction < 0.0 {
        let previous = schedule
            .slot_at_or_before(slot - TimeDelta::seconds(1))
            .unwrap();
        TRIGGER_GRACE.min((slot - previous) / 2)
    } else {
        let next = schedule.next_after(slot).unwrap();
        TRIGGER_GRACE.min((next - slot) / 2) - TimeDelta::nanoseconds(1)
    };
    TimeDelta::nanoseconds((reach.num_nanoseconds().unwrap_or(i64::MAX) as f64 * fraction) as i64)
}

/// `cases` per property, unless `PROPTEST_CASES` asks for a deeper run.
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        ..default
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_instant_lies_in_one_period((schedule, t) in schedule_and_instant()) {
        let slot = schedule.slot_at_or_before(t).unwrap();
        let next = schedule.next_after(slot).unwrap();
        prop_assert!(slot <= t && t < next, "{slot} <= {t} < {next}");
        prop_assert_eq!(schedule.next_after(t).unwrap(), next);
        // Both ends are slots, found the same way from either side.
        prop_assert_eq!(schedule.slot_at_or_before(slot).unwrap(), slot);
        prop_assert_eq!(schedule.slot_at_or_before(next).unwrap(), next);
        prop_assert_eq!(schedule.slot_at_or_before(next - TimeDelta::nanoseconds(1)).unwrap(), slot);
        prop_assert_eq!(schedule.next_after(next - TimeDelta::nanoseconds(1)).unwrap(), next);
    }

    #[test]
    fn every_instant_of_a_period_has_the_slots_key(
        (schedule, t) in schedule_and_instant(),
        fraction in 0.0f64..1.0,
    ) {
        let slot = schedule.slot_at_or_before(t).unwrap();
        let next = schedule.next_after(slot).unwrap();
        let span = (next - slot).num_milliseconds() as f64;
        let inside = slot + TimeDelta::milliseconds((span * fraction) as i64);
        prop_assert!(slot <= inside && inside < next);
        let found = schedule.slot_at_or_before(inside).unwrap();
        prop_assert_eq!(found, slot);
        prop_assert_eq!(schedule.batch_key(found).unwrap(), schedule.batch_key(slot).unwrap());
    }

    #[test]
    fn keys_of_consecutive_slots_strictly_increase((schedule, t) in schedule_and_instant()) {
        let mut slot = schedule.slot_at_or_before(t).unwrap();
        let mut key = schedule.batch_key(slot).unwrap();
        for _ in 0..8 {
            let expected_len = if schedule.is_daily() { 10 } else { 16 };
            prop_assert_eq!(key.as_str().len(), expected_len);
            let next = schedule.next_after(slot).unwrap();
            let next_key = schedule.batch_key(next).unwrap();
            prop_assert!(next_key > key, "{} then {} ({} then {})", key, next_key, slot, next);
            slot = next;
            key = next_key;
        }
    }

    #[test]
    fn triggers_within_the_grace_of_a_slot_agree(
        (schedule, t) in schedule_and_instant(),
        fraction in -1.0f64..1.0,
    ) {
        let slot = schedule.slot_at_or_before(t).unwrap();
        let offset = within_grace(&schedule, slot, fraction);
        prop_assert_eq!(schedule.trigger_slot(slot + offset).unwrap(), slot, "offset {}", offset);
        if roomy(&schedule, slot) {
            for edge in [-TRIGGER_GRACE, TRIGGER_GRACE, TimeDelta::seconds(-1), TimeDelta::seconds(1)] {
                prop_assert_eq!(schedule.trigger_slot(slot + edge).unwrap(), slot, "edge {}", edge);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// In zones without clock changes, the search agrees with checking every minute.
    #[test]
    fn slots_agree_with_a_minute_by_minute_search(
        expr in proptest::sample::select(EXPRESSIONS),
        tz in proptest::sample::select(vec![Zone::UTC, zone("Asia/Kolkata")]),
        t in zone_and_instant().prop_map(|(_, t)| t),
    ) {
        let schedule = Schedule::parse(expr, tz).unwrap();
        let cron = Cron::from_str(if expr == "off" { "0 0 * * *" } else { expr }).unwrap();
        let window = 3 * 24 * 60;
        let minute = at(t.timestamp().div_euclid(60) * 60, 0);
        let latest = (0..window)
            .map(|back| minute - TimeDelta::minutes(back))
            .find(|m| cron.is_time_matching(&m.with_timezone(&tz)).unwrap());
        let slot = schedule.slot_at_or_before(t).unwrap();
        match latest {
            Some(expected) => prop_assert_eq!(slot, expected),
            None => prop_assert!(slot <= minute - TimeDelta::minutes(window)),
        }
    }

    /// Outside triggers a little early or late, some delivered twice, create one batch per slot.
    #[test]
    fn jittered_and_repeated_triggers_create_one_batch_per_slot(
        (schedule, t) in schedule_and_instant(),
        jitters in proptest::collection::vec((-1.0f64..1.0, proptest::option::of(-1.0f64..1.0)), 5),
    ) {
        let mut slot = schedule.slot_at_or_before(t).unwrap();
        let mut prompt = ScheduledPrompt { prompt_id: 7, schedule: None, last_batch_key: None };
        for (jitter, again) in jitters {
            let mut created = Vec::new();
            for fraction in std::iter::once(jitter).chain(again) {
                let now = slot + within_grace(&schedule, slot, fraction);
                let planned = plan(std::slice::from_ref(&prompt), &schedule, Trigger::External { now }).unwrap();
                for batch in planned.batches {
                    // What the store does on enqueue: remember the batch as the prompt's latest.
                    prompt.last_batch_key = Some(batch.batch_key.to_string());
                    created.push((batch.batch_key, batch.scheduled_for));
                }
            }
            prop_assert_eq!(created, vec![(schedule.batch_key(slot).unwrap(), slot)]);
            slot = schedule.next_after(slot).unwrap();
        }
    }
}

/// The table above must name real clock changes, or the properties quietly test less.
#[test]
fn the_listed_transitions_are_clock_changes() {
    use chrono::Offset;
    for (name, change) in TRANSITIONS {
        let tz = zone(name);
        let change = DateTime::parse_from_rfc3339(change).unwrap().to_utc();
        let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
        assert_ne!(
            offset(change - TimeDelta::minutes(1)),
            offset(change),
            "{tz} at {change}"
        );
    }
}
