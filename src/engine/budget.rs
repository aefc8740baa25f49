//! Daily budgets: once the day's answers cost `BUDGET_USD_PER_DAY` (all models) or a model's
//! `params.budgetUsdPerDay`, no new call of that scope starts until the next day.
//!
//! A model over budget is one more kind of blocked model ([`super::blocked`]): its jobs are not
//! claimed, stay `queued` with no attempt spent, and status, the API and the dashboard show
//! why. The day is the calendar day in `TIMEZONE` (UTC by default), by this process's clock.
//! What the day's answers cost is read from the database, which every process writes to, at
//! most every [`SPEND_FRESH_FOR`]; between two reads this process adds what its own answers
//! cost, so that its own spending stops it at once. Calls already running when a budget is
//! reached finish and are paid for: a budget can be overshot by the calls in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};

use crate::domain::price::BUDGET_REACHED;
use crate::domain::{BlockedModel, ClaimedJob, Finish, Model, ModelId, Outcome};
use crate::schedule::Zone;
use crate::store::{ModelSpend, StoreResult};

use super::runtime::Runtime;

/// How long a read of the day's spending answers for, beside this process's own spending.
pub const SPEND_FRESH_FOR: Duration = Duration::from_secs(5);

/// The calendar day containing `now` in `tz`, as the instants it starts and ends at.
pub fn day_bounds(now: DateTime<Utc>, tz: Zone) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = now.with_timezone(&tz).date_naive();
    let start_of = |date| tz.start_of_day(date).unwrap_or(now);
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    (start_of(date), start_of(next))
}

/// The active models a budget stops today, with why: all of them once `global` is spent,
/// else each model past its own `params.budgetUsdPerDay`.
pub fn over_budget(
    models: &[Model],
    spent: &HashMap<ModelId, f64>,
    global: Option<f64>,
    resumes_at: DateTime<Utc>,
) -> Vec<BlockedModel> {
    let resume = resumes_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let total: f64 = spent.values().sum();
    let global_reason = global.filter(|budget| total >= *budget).map(|budget| {
        format!(
            "daily budget reached: ${total:.4} spent today of BUDGET_USD_PER_DAY ${budget:.4}; \
             calls resume at {resume}"
        )
    });
    models
        .iter()
        .filter(|model| model.active)
        .filter_map(|model| {
            let reason = global_reason.clone().or_else(|| {
                let budget = model.spec.spend().budget_usd_per_day?;
                let used = spent.get(&model.id).copied().unwrap_or(0.0);
                (used >= budget).then(|| {
                    format!(
                        "{BUDGET_REACHED}: ${used:.4} spent today of params.budgetUsdPerDay \
                         ${budget:.4}; calls resume at {resume}"
                    )
                })
            })?;
            Some(BlockedModel {
                model_id: model.id,
                model_name: model.name.clone(),
                reason,
                queued: 0,
            })
        })
        .collect()
}

/// Whether any budget applies: without one, nothing is read.
pub fn any_budget(models: &[Model], global: Option<f64>) -> bool {
    global.is_some()
        || models
            .iter()
            .any(|model| model.spec.spend().budget_usd_per_day.is_some())
}

/// What today's answers cost (the day in `TIMEZONE`), as status shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpendToday {
    /// When today began.
    pub day_start: DateTime<Utc>,
    /// The known costs of today's answers; answers of unknown cost add nothing.
    pub total_usd: f64,
    /// `BUDGET_USD_PER_DAY`, if set.
    pub budget_usd_per_day: Option<f64>,
    /// By model; models without a costed answer today are left out.
    pub per_model: Vec<ModelSpend>,
}

/// The day's spending as last read, and this process's own since.
#[derive(Default)]
pub struct SpendCache {
    state: Mutex<SpendState>,
}

#[derive(Default)]
struct SpendState {
    /// When the database was read, for which day, and what it said.
    read: Option<(Instant, DateTime<Utc>, HashMap<ModelId, f64>)>,
    /// What this process's answers cost since that read.
    own: HashMap<ModelId, f64>,
    /// The budgets last applied (global, per model), to notice at once when own spending
    /// reaches one.
    budgets: (Option<f64>, HashMap<ModelId, f64>),
    /// Own spending reached a budget since the blocked models were last worked out.
    reached: bool,
}

impl SpendState {
    fn spent(&self) -> HashMap<ModelId, f64> {
        let mut spent = self
            .read
            .as_ref()
            .map(|(_, _, read)| read.clone())
            .unwrap_or_default();
        for (model, usd) in &self.own {
            *spent.entry(*model).or_default() += usd;
        }
        spent
    }
}

impl SpendCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpendState> {
        // A poisoned lock only means a holder panicked between whole updates.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the cost of an answer this process is about to store. Counted before the
    /// finish is written: an answer that turns out stale is over-counted until the next
    /// read, which errs on the side of the budget.
    pub fn note(&self, model_id: ModelId, usd: f64) {
        let mut state = self.lock();
        *state.own.entry(model_id).or_default() += usd;
        let spent = state.spent();
        let (global, per_model) = &state.budgets;
        let total: f64 = spent.values().sum();
        let reached = global.is_some_and(|budget| total >= budget)
            || per_model
                .get(&model_id)
                .is_some_and(|budget| spent.get(&model_id).copied().unwrap_or(0.0) >= *budget);
        state.reached |= reached;
    }

    /// Own spending reached a budget since the last call: the blocked models must be worked
    /// out again now rather than when their read expires.
    pub fn take_reached(&self) -> bool {
        std::mem::take(&mut self.lock().reached)
    }
}

impl Runtime {
    /// The active models a budget stops now, reading the day's spending from the database
    /// when the last read is older than [`SPEND_FRESH_FOR`] or of another day.
    pub async fn over_budget(&self, models: &[Model]) -> StoreResult<Vec<BlockedModel>> {
        let global = self.config().budget_usd_per_day;
        if !any_budget(models, global) {
            return Ok(Vec::new());
        }
        let (day_start, next_day) = day_bounds(self.store().now(), self.config().timezone);
        let cache = self.spend_cache();
        let fresh = matches!(&cache.lock().read,
            Some((at, day, _)) if *day == day_start && at.elapsed() < SPEND_FRESH_FOR);
        if !fresh {
            // Own spending from before the read is in the read; from during it, counted twice
            // until the next read, which errs on the side of the budget.
            let own_before = std::mem::take(&mut cache.lock().own);
            match self.store().spend_since(day_start).await {
                Ok(rows) => {
                    let read = rows
                        .into_iter()
                        .map(|ModelSpend { model_id, cost_usd }| (model_id, cost_usd))
                        .collect();
                    cache.lock().read = Some((Instant::now(), day_start, read));
                }
                Err(err) => {
                    let mut state = cache.lock();
                    for (model, usd) in own_before {
                        *state.own.entry(model).or_default() += usd;
                    }
                    return Err(err);
                }
            }
        }
        let mut state = cache.lock();
        state.budgets = (
            global,
            models
                .iter()
                .filter_map(|m| Some((m.id, m.spec.spend().budget_usd_per_day?)))
                .collect(),
        );
        Ok(over_budget(models, &state.spent(), global, next_day))
    }

    /// What today's answers cost so far, by model, as the database says now.
    pub async fn spent_today(&self) -> StoreResult<SpendToday> {
        let (day_start, _) = day_bounds(self.store().now(), self.config().timezone);
        let per_model = self.store().spend_since(day_start).await?;
        Ok(SpendToday {
            day_start,
            total_usd: per_model.iter().map(|m| m.cost_usd).sum(),
            budget_usd_per_day: self.config().budget_usd_per_day,
            per_model,
        })
    }

    /// Counts the cost of a finished attempt's answer against today's budgets.
    pub fn note_spend(&self, job: &ClaimedJob, finish: &Finish) {
        if let Outcome::Succeeded(response) = &finish.outcome
            && let Some(usd) = response.cost_usd
        {
            self.spend_cache().note(job.model.id, usd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ModelSpec, ProviderKind};
    use chrono::TimeZone;
    use serde_json::json;

    fn model(id: ModelId, params: serde_json::Value) -> Model {
        Model {
            id,
            name: format!("m{id}"),
            provider: ProviderKind::Mock,
            model: "mock".into(),
            spec: ModelSpec::read(&params),
            params,
            active: true,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_day_is_the_calendar_day_of_the_time_zone() {
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 2, 30, 0).unwrap();
        let (start, end) = day_bounds(at, Zone::UTC);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap());
        // 02:30 UTC on 10 January is still the 9th in New York (UTC-5).
        let winter = Utc.with_ymd_and_hms(2026, 1, 10, 2, 30, 0).unwrap();
        let (start, end) = day_bounds(winter, Zone::named("America/New_York").unwrap());
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 1, 9, 5, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 1, 10, 5, 0, 0).unwrap());
        // The day the clocks move forward (8 March 2026) lasts 23 hours.
        let change = Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap();
        let (start, end) = day_bounds(change, Zone::named("America/New_York").unwrap());
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 3, 9, 4, 0, 0).unwrap());
    }

    #[test]
    fn budgets_stop_their_scope_once_spent() {
        let models = [
            model(1, json!({"budgetUsdPerDay": 0.5})),
            model(2, json!({})),
        ];
        let resume = Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap();
        let spent = HashMap::from([(1, 0.49), (2, 3.0)]);
        assert!(over_budget(&models, &spent, None, resume).is_empty());
        let spent = HashMap::from([(1, 0.5), (2, 3.0)]);
        let blocked = over_budget(&models, &spent, None, resume);
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].model_id, 1);
        assert!(blocked[0].reason.contains("params.budgetUsdPerDay $0.5000"));
        assert!(blocked[0].reason.contains("resume at 2026-03-11T00:00:00Z"));
        let all = over_budget(&models, &spent, Some(3.5), resume);
        assert_eq!(all.len(), 2);
        assert!(all[1].reason.contains("BUDGET_USD_PER_DAY $3.5000"));
        assert!(!any_budget(&models[1..], None));
    }

    #[test]
    fn own_spending_reaching_a_budget_is_noticed_at_once() {
        let cache = SpendCache::default();
        cache.lock().budgets = (None, HashMap::from([(1, 1.0)]));
        cache.note(1, 0.6);
        assert!(!cache.take_reached());
        cache.note(1, 0.6);
        assert!(cache.take_reached());
        assert!(!cache.take_reached());
    }
}
