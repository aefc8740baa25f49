//! Cases of the batch plan: which slot a trigger names and which prompts are due in it.

use super::*;

fn zone(name: &str) -> Zone {
    Zone::named(name).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn prompt(id: PromptId, schedule: Option<&str>, last: Option<&str>) -> ScheduledPrompt {
    ScheduledPrompt {
        prompt_id: id,
        schedule: schedule.map(str::to_owned),
        last_batch_key: last.map(str::to_owned),
    }
}

fn keys(plan: &Plan) -> Vec<(PromptId, &str)> {
    plan.batches
        .iter()
        .map(|batch| (batch.prompt_id, batch.batch_key.as_str()))
        .collect()
}

fn daily() -> Schedule {
    Schedule::parse("0 0 * * *", Zone::UTC).unwrap()
}

#[test]
fn a_prompt_is_due_once_per_period() {
    let prompts = [
        prompt(1, None, None),
        prompt(2, None, Some("2025-10-13")),
        prompt(3, None, Some("2025-10-14")),
    ];
    let now = utc(2025, 10, 14, 15, 0, 0);
    let plan = plan(&prompts, &daily(), Trigger::External { now }).unwrap();
    assert_eq!(plan.batch_key.as_str(), "2025-10-14");
    assert_eq!(plan.scheduled_for, utc(2025, 10, 14, 0, 0, 0));
    assert_eq!(keys(&plan), [(1, "2025-10-14"), (2, "2025-10-14")]);
    assert!(
        plan.batches
            .iter()
            .all(|b| b.scheduled_for == plan.scheduled_for)
    );
    assert!(plan.errors.is_empty());
}

#[test]
fn a_duplicate_or_early_trigger_plans_nothing_twice() {
    let schedule = daily();
    let early = utc(2025, 10, 13, 23, 59, 59);
    let first = plan(
        &[prompt(1, None, Some("2025-10-13"))],
        &schedule,
        Trigger::External { now: early },
    )
    .unwrap();
    assert_eq!(keys(&first), [(1, "2025-10-14")]);
    // The store marked the prompt; the same trigger again, or one on time, finds it done.
    let marked = [prompt(1, None, Some("2025-10-14"))];
    for now in [
        early,
        utc(2025, 10, 14, 0, 0, 1),
        utc(2025, 10, 14, 17, 0, 0),
    ] {
        let again = plan(&marked, &schedule, Trigger::External { now }).unwrap();
        assert_eq!(again.batch_key.as_str(), "2025-10-14");
        assert!(again.batches.is_empty(), "{now}");
    }
}

#[test]
fn a_prompt_follows_its_own_schedule_in_the_global_zone() {
    let default = Schedule::parse("0 0 * * *", zone("Europe/Paris")).unwrap();
    let prompts = [
        prompt(1, Some("0 * * * *"), Some("2025-07-14T11:00")),
        prompt(2, Some("0 * * * *"), Some("2025-07-14T12:00")),
        prompt(3, Some("  "), None),
        prompt(4, Some("off"), Some("2025-07-13")),
        prompt(5, Some("0 12 * * 1-5"), None),
    ];
    // 10:30 UTC is 12:30 in Paris, on Monday 2025-07-14.
    let now = utc(2025, 7, 14, 10, 30, 0);
    let plan = plan(&prompts, &default, Trigger::External { now }).unwrap();
    assert_eq!(plan.batch_key.as_str(), "2025-07-14");
    assert_eq!(
        keys(&plan),
        [
            (1, "2025-07-14T12:00"),
            (3, "2025-07-14"),
            (4, "2025-07-14"),
            (5, "2025-07-14")
        ]
    );
    assert_eq!(plan.batches[0].scheduled_for, utc(2025, 7, 14, 10, 0, 0));
}

#[test]
fn an_unparsable_prompt_schedule_is_reported_and_skipped_alone() {
    let prompts = [
        prompt(1, Some("every day"), None),
        prompt(2, None, None),
        prompt(3, Some("every day"), None),
    ];
    let now = utc(2025, 10, 14, 15, 0, 0);
    let plan = plan(&prompts, &daily(), Trigger::External { now }).unwrap();
    assert_eq!(keys(&plan), [(2, "2025-10-14")]);
    assert_eq!(plan.errors.len(), 2);
    assert_eq!(plan.errors[0].prompt_id, 1);
    assert_eq!(plan.errors[1].prompt_id, 3);
    assert!(
        plan.errors[0]
            .message
            .starts_with("invalid cron expression 'every day': ")
    );
}

#[test]
fn a_tick_uses_its_slot_without_grace() {
    let prompts = [
        prompt(1, None, Some("2025-10-13")),
        prompt(2, Some("0 12 * * *"), Some("2025-10-12")),
    ];
    let slot = utc(2025, 10, 14, 0, 0, 0);
    let plan = plan(&prompts, &daily(), Trigger::Tick { slot }).unwrap();
    assert_eq!(plan.batch_key.as_str(), "2025-10-14");
    assert_eq!(plan.scheduled_for, slot);
    // The noon prompt's current slot at midnight is yesterday noon.
    assert_eq!(keys(&plan), [(1, "2025-10-14"), (2, "2025-10-13")]);
    assert_eq!(plan.batches[1].scheduled_for, utc(2025, 10, 13, 12, 0, 0));
}

#[test]
fn a_backfill_plans_every_prompt_at_the_start_of_the_keys_period() {
    let default = Schedule::parse("0 6 * * *", zone("Europe/Paris")).unwrap();
    let prompts = [
        prompt(1, None, Some("2025-10-10")),
        prompt(2, Some("not cron"), None),
    ];
    let batch_key: BatchKey = "2025-10-10".parse().unwrap();
    let plan = plan(&prompts, &default, Trigger::Backfill { batch_key }).unwrap();
    assert_eq!(keys(&plan), [(1, "2025-10-10"), (2, "2025-10-10")]);
    // Paris midnight in October (CEST) is 22:00 UTC the day before.
    assert_eq!(plan.scheduled_for, utc(2025, 10, 9, 22, 0, 0));
    assert!(
        plan.batches
            .iter()
            .all(|b| b.scheduled_for == plan.scheduled_for)
    );
}

#[test]
fn a_period_starts_at_its_local_time_or_after_a_gap() {
    let key = |text: &str| text.parse::<BatchKey>().unwrap();
    assert_eq!(
        period_start(&key("2025-10-14"), Zone::UTC),
        Ok(utc(2025, 10, 14, 0, 0, 0))
    );
    assert_eq!(
        period_start(&key("2025-10-14T13:15"), zone("Europe/Paris")),
        Ok(utc(2025, 10, 14, 11, 15, 0))
    );
    // 02:30 does not exist in Paris on 2025-03-30; 02:30 twice on 2025-10-26.
    assert_eq!(
        period_start(&key("2025-03-30T02:30"), zone("Europe/Paris")),
        Ok(utc(2025, 3, 30, 1, 0, 0))
    );
    assert_eq!(
        period_start(&key("2025-10-26T02:30"), zone("Europe/Paris")),
        Ok(utc(2025, 10, 26, 0, 30, 0))
    );
    // Samoa skipped the whole of 2011-12-30.
    assert_eq!(
        period_start(&key("2011-12-30"), zone("Pacific/Apia")),
        Ok(utc(2011, 12, 30, 10, 0, 0))
    );
}

#[test]
fn the_global_schedule_failing_fails_the_pass() {
    // Noon has no slot before the first midnight croner knows (year 1).
    let noon = Schedule::parse("0 12 * * *", Zone::UTC).unwrap();
    let far = utc(1, 1, 1, 0, 0, 0);
    let err = plan(&[prompt(1, None, None)], &noon, Trigger::Tick { slot: far }).unwrap_err();
    assert!(matches!(err, ScheduleError::OutOfRange { .. }), "{err}");
}
