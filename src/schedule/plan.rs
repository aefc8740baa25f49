//! [`plan`]: from a trigger and the active prompts to the batches to create.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use serde::Serialize;

use super::{Schedule, ScheduleError, Zone};
use crate::domain::{BatchKey, PromptId};

/// What started a scheduling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `/api/cron` or `promptq cron` at `now`: each schedule's [`Schedule::trigger_slot`].
    External { now: DateTime<Utc> },
    /// The built-in cron, ticking at `slot` of the global schedule: each schedule's latest slot
    /// at or before `slot`, with no grace (the tick is exactly on time by construction).
    Tick { slot: DateTime<Utc> },
    /// An explicit backfill of one batch: every given prompt, whatever its last batch key.
    Backfill { batch_key: BatchKey },
}

pub use crate::domain::{PlannedBatch, ScheduledPrompt};

/// A prompt left out of a pass because its own schedule does not parse or has no slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptScheduleError {
    pub prompt_id: PromptId,
    pub message: String,
}

/// The outcome of a scheduling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The global schedule's batch for this trigger (the cron response's `batchKey`), or the
    /// backfilled key.
    pub batch_key: BatchKey,
    /// The slot that `batch_key` names.
    pub scheduled_for: DateTime<Utc>,
    /// The due prompts' batches, in the order of the prompts given.
    pub batches: Vec<PlannedBatch>,
    /// Prompts skipped because of their own schedule; the others are planned regardless.
    pub errors: Vec<PromptScheduleError>,
}

/// Decides which of `prompts` (the active ones) are due for `trigger`, and in which batch.
///
/// A prompt follows its own schedule if it has one, else `default` (the global
/// `CRON_SCHEDULE`, where `off` means daily); per-prompt expressions are read in `default`'s
/// time zone (`TIMEZONE`). For an outside trigger or a tick, a prompt is due when the key of
/// its schedule's current slot differs from its `last_batch_key`: a trigger delivered twice or
/// a second early finds the key it already has and plans nothing again, and should a stale key
/// ever come back, the store's unique job key still keeps the jobs from doubling.
///
/// A tick plans each prompt at its own schedule's latest slot at or before the tick, so a
/// prompt whose schedule is finer than the global one runs once per global tick, not once per
/// own slot: the cron loop must tick often enough for the finest schedule it serves.
///
/// Only `default` failing fails the pass; a prompt whose own schedule fails is reported in
/// [`Plan::errors`] and the others go ahead.
pub fn plan(
    prompts: &[ScheduledPrompt],
    default: &Schedule,
    trigger: Trigger,
) -> Result<Plan, ScheduleError> {
    let tz = default.time_zone();
    let (at, with_grace) = match trigger {
        Trigger::Backfill { batch_key } => return backfill(prompts, batch_key, tz),
        Trigger::External { now } => (now, true),
        Trigger::Tick { slot } => (slot, false),
    };
    let current = |schedule: &Schedule| -> Result<(DateTime<Utc>, BatchKey), ScheduleError> {
        let slot = if with_grace {
            schedule.trigger_slot(at)?
        } else {
            schedule.slot_at_or_before(at)?
        };
        Ok((slot, schedule.batch_key(slot)?))
    };

    let (default_slot, default_key) = current(default)?;
    // Prompts share a handful of expressions: parse and search each once per pass.
    let mut own: HashMap<&str, Result<(DateTime<Utc>, BatchKey), String>> = HashMap::new();
    let mut batches = Vec::new();
    let mut errors = Vec::new();
    for prompt in prompts {
        let expr = prompt
            .schedule
            .as_deref()
            .map(str::trim)
            .filter(|expr| !expr.is_empty());
        let (slot, key) = match expr {
            None => (default_slot, default_key.clone()),
            Some(expr) => {
                let found = own.entry(expr).or_insert_with(|| {
                    Schedule::parse(expr, tz)
                        .and_then(|schedule| current(&schedule))
                        .map_err(|err| err.to_string())
                });
                match found {
                    Ok(found) => found.clone(),
                    Err(message) => {
                        errors.push(PromptScheduleError {
                            prompt_id: prompt.prompt_id,
                            message: message.clone(),
                        });
                        continue;
                    }
                }
            }
        };
        if prompt.last_batch_key.as_deref() != Some(key.as_str()) {
            batches.push(PlannedBatch {
                prompt_id: prompt.prompt_id,
                batch_key: key,
                scheduled_for: slot,
            });
        }
    }
    Ok(Plan {
        batch_key: default_key,
        scheduled_for: default_slot,
        batches,
        errors,
    })
}

fn backfill(
    prompts: &[ScheduledPrompt],
    batch_key: BatchKey,
    tz: Zone,
) -> Result<Plan, ScheduleError> {
    let scheduled_for = period_start(&batch_key, tz)?;
    let batches = prompts
        .iter()
        .map(|prompt| PlannedBatch {
            prompt_id: prompt.prompt_id,
            batch_key: batch_key.clone(),
            scheduled_for,
        })
        .collect();
    Ok(Plan {
        batch_key,
        scheduled_for,
        batches,
        errors: Vec::new(),
    })
}

/// The first instant of the period a batch key names in `tz`: local midnight of a date key,
/// the local minute of a minute key. A local time in a gap moves to the first instant after
/// it; one that happens twice takes its first occurrence, as slots do.
pub fn period_start(key: &BatchKey, tz: Zone) -> Result<DateTime<Utc>, ScheduleError> {
    let text = key.as_str();
    let no_such_instant = || ScheduleError::NoSuchInstant {
        key: text.to_owned(),
        tz: tz.to_string(),
    };
    let local = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|date| date.and_time(NaiveTime::MIN))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .map_err(|_| no_such_instant())?;
    // Gaps are whole minutes and at most a day long (Samoa skipped 2011-12-30 entirely).
    (0..=2 * 24 * 60)
        .find_map(|minutes| {
            let at = local.checked_add_signed(TimeDelta::minutes(minutes))?;
            tz.from_local_datetime(&at).earliest()
        })
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(no_such_instant)
}

#[cfg(test)]
mod tests;
