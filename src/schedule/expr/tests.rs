//! Cases of cron expressions and time zones: next slots, periods and keys across clock changes.

use chrono::TimeDelta;

use super::*;

fn zone(name: &str) -> Zone {
    Zone::named(name).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn schedule(expr: &str) -> Schedule {
    Schedule::parse(expr, Zone::UTC).unwrap()
}

fn key(schedule: &Schedule, slot: DateTime<Utc>) -> String {
    schedule.batch_key(slot).unwrap().to_string()
}

fn trigger_key(schedule: &Schedule, now: DateTime<Utc>) -> String {
    key(schedule, schedule.trigger_slot(now).unwrap())
}

/// The slots from `from` on, `n` of them, by repeated `next_after`.
fn slots(schedule: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut at = from;
    (0..n)
        .map(|_| {
            at = schedule.next_after(at).unwrap();
            at
        })
        .collect()
}

#[test]
fn a_daily_schedule_keys_its_period_by_the_date_of_its_slot() {
    let daily = schedule("0 0 * * *");
    assert!(daily.is_daily());
    let midnight = utc(2025, 10, 14, 0, 0, 0);
    assert_eq!(daily.slot_at_or_before(midnight).unwrap(), midnight);
    assert_eq!(key(&daily, midnight), "2025-10-14");
    assert_eq!(
        daily.next_after(midnight).unwrap(),
        utc(2025, 10, 15, 0, 0, 0)
    );
}

#[test]
fn a_trigger_one_second_early_lands_on_the_coming_day() {
    let daily = schedule("0 0 * * *");
    assert_eq!(
        trigger_key(&daily, utc(2025, 10, 13, 23, 59, 59)),
        "2025-10-14"
    );
    assert_eq!(
        trigger_key(&daily, utc(2025, 10, 13, 23, 55, 0)),
        "2025-10-14"
    );
    // Beyond the grace it is still yesterday afternoon's trigger.
    assert_eq!(
        trigger_key(&daily, utc(2025, 10, 13, 23, 54, 59)),
        "2025-10-13"
    );
}

#[test]
fn a_trigger_one_second_late_lands_on_today() {
    let daily = schedule("0 0 * * *");
    assert_eq!(
        trigger_key(&daily, utc(2025, 10, 14, 0, 0, 1)),
        "2025-10-14"
    );
    assert_eq!(
        trigger_key(&daily, utc(2025, 10, 14, 0, 0, 0)),
        "2025-10-14"
    );
}

#[test]
fn an_afternoon_trigger_lands_on_today() {
    let daily = schedule("0 0 * * *");
    let now = utc(2025, 10, 14, 15, 30, 0);
    assert_eq!(daily.trigger_slot(now).unwrap(), utc(2025, 10, 14, 0, 0, 0));
    assert_eq!(trigger_key(&daily, now), "2025-10-14");
}

#[test]
fn a_duplicate_delivery_gets_the_same_key() {
    let daily = schedule("0 0 * * *");
    let first = utc(2025, 10, 13, 23, 59, 59);
    for again in [
        first,
        first + TimeDelta::seconds(2),
        first + TimeDelta::minutes(3),
    ] {
        assert_eq!(trigger_key(&daily, again), "2025-10-14");
    }
}

#[test]
fn shorter_schedules_key_by_local_minute() {
    let hourly = schedule("0 * * * *");
    assert!(!hourly.is_daily());
    let now = utc(2025, 10, 14, 13, 42, 10);
    assert_eq!(
        key(&hourly, hourly.slot_at_or_before(now).unwrap()),
        "2025-10-14T13:00"
    );
    assert_eq!(
        trigger_key(&hourly, utc(2025, 10, 14, 13, 58, 0)),
        "2025-10-14T14:00"
    );

    let quarter = schedule("*/15 * * * *");
    assert_eq!(
        key(&quarter, quarter.slot_at_or_before(now).unwrap()),
        "2025-10-14T13:30"
    );
    assert_eq!(
        trigger_key(&quarter, utc(2025, 10, 14, 13, 44, 59)),
        "2025-10-14T13:45"
    );
    assert_eq!(
        trigger_key(&quarter, utc(2025, 10, 14, 13, 45, 1)),
        "2025-10-14T13:45"
    );
    assert_eq!(
        quarter.next_after(utc(2025, 10, 14, 23, 50, 0)).unwrap(),
        utc(2025, 10, 15, 0, 0, 0)
    );
}

#[test]
fn schedules_closer_than_two_graces_look_ahead_half_a_period() {
    let five = schedule("*/5 * * * *");
    // A trigger two minutes early or late belongs to the same slot...
    assert_eq!(
        trigger_key(&five, utc(2025, 10, 14, 13, 3, 0)),
        "2025-10-14T13:05"
    );
    assert_eq!(
        trigger_key(&five, utc(2025, 10, 14, 13, 7, 0)),
        "2025-10-14T13:05"
    );
    // ...and one a second either side of a slot too: no period skipped or repeated.
    assert_eq!(
        trigger_key(&five, utc(2025, 10, 14, 13, 4, 59)),
        "2025-10-14T13:05"
    );
    assert_eq!(
        trigger_key(&five, utc(2025, 10, 14, 13, 5, 1)),
        "2025-10-14T13:05"
    );

    let minutely = schedule("* * * * *");
    assert_eq!(
        trigger_key(&minutely, utc(2025, 10, 14, 13, 4, 59)),
        "2025-10-14T13:05"
    );
    assert_eq!(
        trigger_key(&minutely, utc(2025, 10, 14, 13, 5, 20)),
        "2025-10-14T13:05"
    );
}

#[test]
fn a_weekday_schedule_on_a_weekend_is_in_fridays_period() {
    let weekdays = schedule("0 12 * * 1-5");
    assert!(weekdays.is_daily());
    // 2025-10-18 is a Saturday, 2025-10-17 a Friday.
    let saturday = utc(2025, 10, 18, 15, 0, 0);
    assert_eq!(
        weekdays.slot_at_or_before(saturday).unwrap(),
        utc(2025, 10, 17, 12, 0, 0)
    );
    assert_eq!(trigger_key(&weekdays, saturday), "2025-10-17");
    assert_eq!(
        weekdays.next_after(saturday).unwrap(),
        utc(2025, 10, 20, 12, 0, 0)
    );
    // Monday morning is still Friday's period; Monday noon opens Monday's.
    assert_eq!(
        trigger_key(&weekdays, utc(2025, 10, 20, 9, 0, 0)),
        "2025-10-17"
    );
    assert_eq!(
        trigger_key(&weekdays, utc(2025, 10, 20, 11, 58, 0)),
        "2025-10-20"
    );
    assert_eq!(
        schedule("0 12 * * MON-FRI")
            .slot_at_or_before(saturday)
            .unwrap(),
        utc(2025, 10, 17, 12, 0, 0)
    );
}

#[test]
fn keys_are_read_in_the_schedules_time_zone() {
    let paris = Schedule::parse("0 0 * * *", zone("Europe/Paris")).unwrap();
    // Summer: Paris midnight is 22:00 UTC the day before.
    let now = utc(2025, 7, 14, 10, 0, 0);
    assert_eq!(
        paris.slot_at_or_before(now).unwrap(),
        utc(2025, 7, 13, 22, 0, 0)
    );
    assert_eq!(trigger_key(&paris, now), "2025-07-14");
    assert_eq!(
        trigger_key(&paris, utc(2025, 7, 13, 21, 59, 59)),
        "2025-07-14"
    );
    assert_eq!(
        trigger_key(&paris, utc(2025, 7, 13, 21, 50, 0)),
        "2025-07-13"
    );

    let kolkata = Schedule::parse("*/15 * * * *", zone("Asia/Kolkata")).unwrap();
    // +05:30: 10:07 UTC is 15:37 local.
    assert_eq!(
        trigger_key(&kolkata, utc(2025, 7, 14, 10, 7, 0)),
        "2025-07-14T15:30"
    );

    let new_york = Schedule::parse("0 9 * * *", zone("America/New_York")).unwrap();
    assert_eq!(
        new_york.slot_at_or_before(now).unwrap(),
        utc(2025, 7, 13, 13, 0, 0)
    );
    assert_eq!(trigger_key(&new_york, now), "2025-07-13");
}

#[test]
fn invalid_expressions_are_refused_with_the_expression_named() {
    for bad in [
        "",
        "0 0 * *",
        "0 0 * * * *",
        "0 0 0 * * * 2025",
        "61 * * * *",
        "0 24 * * *",
        "0 0 * * 8",
        "every day",
        "0 0 30 2 *",
    ] {
        let err = Schedule::parse(bad, Zone::UTC).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("invalid cron expression '{bad}': ")),
            "{message}"
        );
    }
    assert_eq!(
        Schedule::parse("0 0 31 2 *", Zone::UTC)
            .unwrap_err()
            .to_string(),
        "invalid cron expression '0 0 31 2 *': it never fires"
    );
}

#[test]
fn off_is_daily_at_midnight_and_never_ticks() {
    let off = Schedule::parse(" OFF ", zone("Europe/Paris")).unwrap();
    assert_eq!(off.expression(), "off");
    assert!(off.is_daily() && !off.ticks());
    let now = utc(2025, 1, 14, 10, 0, 0);
    assert_eq!(
        off.slot_at_or_before(now).unwrap(),
        utc(2025, 1, 13, 23, 0, 0)
    );
    assert_eq!(trigger_key(&off, now), "2025-01-14");
    assert_eq!(off.next_tick(now), Ok(None));
    assert_eq!(off.catch_up(None, now), Ok(None));
}

#[test]
fn daily_means_one_minute_and_one_hour() {
    for daily in [
        "0 0 * * *",
        "@daily",
        "30 6 * * 1-5",
        "0 0 1 * *",
        "@yearly",
        "0 */24 * * *",
    ] {
        assert!(schedule(daily).is_daily(), "{daily}");
    }
    for shorter in [
        "0 * * * *",
        "*/15 * * * *",
        "0 0,12 * * *",
        "0,30 9 * * *",
        "@hourly",
    ] {
        assert!(!schedule(shorter).is_daily(), "{shorter}");
    }
}

#[test]
fn sparse_schedules_are_found_without_walking_every_minute() {
    let yearly = schedule("0 0 1 1 *");
    let now = utc(2025, 10, 14, 12, 0, 0);
    assert_eq!(
        yearly.slot_at_or_before(now).unwrap(),
        utc(2025, 1, 1, 0, 0, 0)
    );
    assert_eq!(yearly.next_after(now).unwrap(), utc(2026, 1, 1, 0, 0, 0));
    let leap_day = schedule("0 0 29 2 *");
    assert_eq!(
        leap_day.slot_at_or_before(now).unwrap(),
        utc(2024, 2, 29, 0, 0, 0)
    );
    assert_eq!(leap_day.next_after(now).unwrap(), utc(2028, 2, 29, 0, 0, 0));
    // The 29th of February that is also a Monday: once in decades.
    let rare = schedule("0 0 29 2 +1");
    assert_eq!(
        rare.slot_at_or_before(now).unwrap(),
        utc(2016, 2, 29, 0, 0, 0)
    );
    assert_eq!(rare.next_after(now).unwrap(), utc(2044, 2, 29, 0, 0, 0));
}

#[test]
fn paris_spring_forward_keeps_one_daily_key_per_day() {
    // 2025-03-30: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let midnight = Schedule::parse("0 0 * * *", zone("Europe/Paris")).unwrap();
    let keys: Vec<_> = slots(&midnight, utc(2025, 3, 28, 12, 0, 0), 4)
        .into_iter()
        .map(|slot| key(&midnight, slot))
        .collect();
    assert_eq!(
        keys,
        ["2025-03-29", "2025-03-30", "2025-03-31", "2025-04-01"]
    );
    assert_eq!(
        midnight
            .slot_at_or_before(utc(2025, 3, 30, 12, 0, 0))
            .unwrap(),
        utc(2025, 3, 29, 23, 0, 0)
    );
    assert_eq!(
        midnight
            .slot_at_or_before(utc(2025, 3, 31, 12, 0, 0))
            .unwrap(),
        utc(2025, 3, 30, 22, 0, 0)
    );

    // A fixed time that the day skips fires at the first instant after the gap.
    let half_past_two = Schedule::parse("30 2 * * *", zone("Europe/Paris")).unwrap();
    let on_the_day = half_past_two
        .slot_at_or_before(utc(2025, 3, 30, 12, 0, 0))
        .unwrap();
    assert_eq!(on_the_day, utc(2025, 3, 30, 1, 0, 0));
    assert_eq!(key(&half_past_two, on_the_day), "2025-03-30");
    assert_eq!(
        half_past_two
            .next_after(utc(2025, 3, 29, 12, 0, 0))
            .unwrap(),
        on_the_day
    );

    // An interval schedule just has no slot in the gap.
    let half_hourly = Schedule::parse("*/30 * * * *", zone("Europe/Paris")).unwrap();
    let keys: Vec<_> = slots(&half_hourly, utc(2025, 3, 30, 0, 10, 0), 3)
        .into_iter()
        .map(|slot| key(&half_hourly, slot))
        .collect();
    assert_eq!(
        keys,
        ["2025-03-30T01:30", "2025-03-30T03:00", "2025-03-30T03:30"]
    );
}

#[test]
fn paris_fall_back_runs_a_repeated_time_once() {
    // 2025-10-26: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-02:59 happens twice.
    let half_past_two = Schedule::parse("30 2 * * *", zone("Europe/Paris")).unwrap();
    let fired = slots(&half_past_two, utc(2025, 10, 25, 12, 0, 0), 2);
    assert_eq!(
        fired,
        [utc(2025, 10, 26, 0, 30, 0), utc(2025, 10, 27, 1, 30, 0)]
    );
    // Inside the repeated hour, the period is still the one that opened at the first 02:30.
    assert_eq!(
        half_past_two
            .slot_at_or_before(utc(2025, 10, 26, 1, 45, 0))
            .unwrap(),
        fired[0]
    );

    let half_hourly = Schedule::parse("*/30 * * * *", zone("Europe/Paris")).unwrap();
    let fired = slots(&half_hourly, utc(2025, 10, 25, 23, 45, 0), 4);
    assert_eq!(
        fired,
        [
            utc(2025, 10, 26, 0, 0, 0),  // 02:00 CEST
            utc(2025, 10, 26, 0, 30, 0), // 02:30 CEST
            utc(2025, 10, 26, 2, 0, 0),  // 03:00 CET: the second 02:00 and 02:30 are skipped
            utc(2025, 10, 26, 2, 30, 0),
        ]
    );
    let keys: Vec<_> = fired.iter().map(|slot| key(&half_hourly, *slot)).collect();
    assert_eq!(
        keys,
        [
            "2025-10-26T02:00",
            "2025-10-26T02:30",
            "2025-10-26T03:00",
            "2025-10-26T03:30"
        ]
    );
    // The second 02:15 (01:15 UTC) is in the first 02:30's period, whichever way it is searched.
    assert_eq!(
        half_hourly
            .slot_at_or_before(utc(2025, 10, 26, 1, 15, 0))
            .unwrap(),
        fired[1]
    );
    assert_eq!(
        half_hourly.next_after(utc(2025, 10, 26, 1, 15, 0)).unwrap(),
        fired[2]
    );
}

#[test]
fn new_york_transitions_keep_one_daily_key_per_day() {
    let midnight = Schedule::parse("0 0 * * *", zone("America/New_York")).unwrap();
    // 2025-03-09 springs forward at 02:00, 2025-11-02 falls back at 02:00.
    for (from, expected) in [
        (
            utc(2025, 3, 8, 12, 0, 0),
            [utc(2025, 3, 9, 5, 0, 0), utc(2025, 3, 10, 4, 0, 0)],
        ),
        (
            utc(2025, 11, 1, 12, 0, 0),
            [utc(2025, 11, 2, 4, 0, 0), utc(2025, 11, 3, 5, 0, 0)],
        ),
    ] {
        let fired = slots(&midnight, from, 2);
        assert_eq!(fired, expected);
        assert_eq!(
            midnight
                .slot_at_or_before(fired[1] - TimeDelta::seconds(1))
                .unwrap(),
            fired[0]
        );
    }
    // 01:30 happens twice on 2025-11-02: once in the schedule.
    let half_past_one = Schedule::parse("30 1 * * *", zone("America/New_York")).unwrap();
    assert_eq!(
        slots(&half_past_one, utc(2025, 11, 1, 12, 0, 0), 2),
        [utc(2025, 11, 2, 5, 30, 0), utc(2025, 11, 3, 6, 30, 0)]
    );
    let hourly = Schedule::parse("0 * * * *", zone("America/New_York")).unwrap();
    let keys: Vec<_> = slots(&hourly, utc(2025, 11, 2, 4, 30, 0), 3)
        .into_iter()
        .map(|slot| key(&hourly, slot))
        .collect();
    assert_eq!(
        keys,
        ["2025-11-02T01:00", "2025-11-02T02:00", "2025-11-02T03:00"]
    );
}

#[test]
fn the_cron_loop_ticks_at_the_next_slot() {
    let daily = schedule("0 0 * * *");
    let slot = utc(2025, 10, 14, 0, 0, 0);
    assert_eq!(daily.next_tick(slot), Ok(Some(utc(2025, 10, 15, 0, 0, 0))));
    assert_eq!(
        daily.next_tick(slot - TimeDelta::seconds(1)),
        Ok(Some(slot))
    );
}

#[test]
fn after_downtime_the_cron_catches_up_once_with_the_latest_slot() {
    let daily = schedule("0 0 * * *");
    let last = utc(2025, 10, 11, 0, 0, 0);
    let now = utc(2025, 10, 14, 9, 0, 0);
    assert_eq!(
        daily.catch_up(Some(last), now),
        Ok(Some(utc(2025, 10, 14, 0, 0, 0)))
    );
    // Nothing missed: the last tick was today's slot.
    assert_eq!(
        daily.catch_up(Some(utc(2025, 10, 14, 0, 0, 0)), now),
        Ok(None)
    );
    // A clock that went back owes nothing either.
    assert_eq!(
        daily.catch_up(Some(utc(2025, 10, 15, 0, 0, 0)), now),
        Ok(None)
    );
    // No record: the current slot is owed, and due-ness keeps it harmless.
    assert_eq!(
        daily.catch_up(None, now),
        Ok(Some(utc(2025, 10, 14, 0, 0, 0)))
    );
}

#[test]
fn sub_second_instants_fall_in_the_right_period() {
    let daily = schedule("0 0 * * *");
    let midnight = utc(2025, 10, 14, 0, 0, 0);
    let just_before = midnight - TimeDelta::milliseconds(1);
    assert_eq!(
        daily.slot_at_or_before(just_before).unwrap(),
        utc(2025, 10, 13, 0, 0, 0)
    );
    assert_eq!(daily.next_after(just_before).unwrap(), midnight);
    let just_after = midnight + TimeDelta::milliseconds(1);
    assert_eq!(daily.slot_at_or_before(just_after).unwrap(), midnight);
    assert_eq!(
        daily.next_after(just_after).unwrap(),
        utc(2025, 10, 15, 0, 0, 0)
    );
}
