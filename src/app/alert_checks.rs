//! What is worth an alert, checked from what the database holds; each finding is written to
//! the outbox under a dedupe key ([`crate::store::NewAlert`]), so that any number of checks,
//! by any number of processes, create it once.
//!
//! - **Failures** (`failures@<batch>`): a batch counts as finished when none of its jobs is
//!   left to run (every one succeeded, failed or was skipped). Its failed share is failed over
//!   succeeded plus failed (skipped jobs were cancelled, not failures); above
//!   `ALERT_FAILURE_RATE` it fires. The newest few batches are looked at.
//! - **Mention changes** (`mention:<tracker id>/<term>/<model id>@<batch>`): for the newest
//!   finished batch, once every answer is analysed under each tracker's current version, every
//!   term whose mention rate on a model changed significantly from the previous batch (the
//!   report's own figures and significance rule) fires.
//! - **Dead-man** (`deadman@<batch>`): the latest slot of `CRON_SCHEDULE` at or before `now -
//!   ALERT_DEADMAN_MINUTES` whose batch has no jobs, while a prompt on the global schedule
//!   existed before that slot, fires: the scheduler (or the outside cron) did not run. Prompts
//!   with a schedule of their own are watched the same way, one check per expression
//!   (`deadman:<expression>@<batch>`): its latest slot before the deadline fires when none of
//!   its prompts that existed then has a job in that slot's batch.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::cron::counted;
use super::{App, AppResult};
use crate::domain::{Prompt, PromptId};
use crate::schedule::Schedule;
use crate::store::{AlertKind, JobFilter, NewAlert};

/// When a dead-man check runs, and how long after a slot its batch must have jobs.
struct Deadman {
    now: DateTime<Utc>,
    deadline: Duration,
}

/// How many of the newest batches the failure check reads.
const RECENT_BATCHES: i64 = 3;

impl App {
    /// Runs every check at `now`; the number of alerts created (0 without a webhook).
    pub async fn check_alerts(&self, now: DateTime<Utc>) -> AppResult<u64> {
        if !self.alerts_enabled() {
            return Ok(0);
        }
        let finished = self.batches_finished().await?;
        let mut created = self.check_failures(&finished, now).await?;
        if let Some(newest) = finished.first() {
            created += self.check_mentions(&newest.batch_key, now).await?;
        }
        created += self.check_deadman(now).await?;
        Ok(created)
    }

    /// The newest batches none of whose jobs is left to run, newest first.
    async fn batches_finished(&self) -> AppResult<Vec<crate::store::BatchSummary>> {
        Ok(self
            .store()
            .batches_recent(RECENT_BATCHES)
            .await?
            .into_iter()
            .filter(|b| {
                let s = &b.summary;
                s.total > 0 && s.succeeded + s.failed + s.skipped == s.total
            })
            .collect())
    }

    async fn create(&self, alert: NewAlert, now: DateTime<Utc>) -> AppResult<u64> {
        let id = self.store().alert_insert(&alert, now).await?;
        if let Some(id) = id {
            tracing::info!(alert = id, key = %alert.dedupe_key, "alert created");
        }
        Ok(u64::from(id.is_some()))
    }

    async fn check_failures(
        &self,
        finished: &[crate::store::BatchSummary],
        now: DateTime<Utc>,
    ) -> AppResult<u64> {
        let Some(settings) = &self.config().alerts else {
            return Ok(0);
        };
        let mut created = 0;
        for batch in finished {
            let s = &batch.summary;
            let ran = s.succeeded + s.failed;
            if ran == 0 {
                continue;
            }
            let rate = s.failed as f64 / ran as f64;
            if rate <= settings.failure_rate {
                continue;
            }
            let message = format!(
                ":warning: promptq batch *{}* finished with {} of {} jobs failed ({:.0}%, above \
                 the {:.0}% threshold).",
                batch.batch_key,
                s.failed,
                ran,
                rate * 100.0,
                settings.failure_rate * 100.0
            );
            let alert = NewAlert {
                dedupe_key: format!("failures@{}", batch.batch_key),
                kind: AlertKind::Failures,
                batch_key: Some(batch.batch_key.clone()),
                message,
                details: json!({"failed": s.failed, "succeeded": s.succeeded,
                    "skipped": s.skipped, "total": s.total, "failureRate": rate,
                    "threshold": settings.failure_rate}),
            };
            created += self.create(alert, now).await?;
        }
        Ok(created)
    }

    async fn check_mentions(&self, batch_key: &str, now: DateTime<Utc>) -> AppResult<u64> {
        let trackers = self.store().tracker_list().await?;
        if trackers.is_empty() {
            return Ok(0);
        }
        // The figures count only analysed answers: judge a batch once all of them are.
        self.analyse_pending(4).await?;
        let mut created = 0;
        for tracker in trackers {
            let progress = self
                .store()
                .analysis_progress(tracker.id, tracker.version)
                .await?;
            if !progress.done() {
                continue;
            }
            let id = tracker.id.to_string();
            let reports = self.insights_report(Some(&id), Some(batch_key)).await?;
            let mut seen = HashSet::new();
            for report in reports {
                let Some(previous) = report.previous_batch_key.as_deref() else {
                    continue;
                };
                for cell in &report.models {
                    for term in &cell.cell.terms {
                        let Some(change) = term.change.as_ref().filter(|c| c.significant) else {
                            continue;
                        };
                        let key = format!(
                            "mention:{}/{}/{}@{batch_key}",
                            report.tracker_id, term.term, cell.cell.model_id
                        );
                        if !seen.insert(key.clone()) {
                            continue;
                        }
                        let model = cell
                            .model_name
                            .clone()
                            .unwrap_or_else(|| format!("model {}", cell.cell.model_id));
                        let message = format!(
                            ":chart_with_upwards_trend: *{}* ({}) on *{model}*: mentioned in \
                             {} of {} runs in batch {batch_key}, {} of {} in {previous} \
                             ({:+.0} points, p = {:.3}).",
                            term.term,
                            report.tracker,
                            term.mentioned,
                            cell.cell.runs,
                            change.previous_mentioned,
                            change.previous_runs,
                            change.delta * 100.0,
                            change.p_value
                        );
                        let alert = NewAlert {
                            dedupe_key: key,
                            kind: AlertKind::Mention,
                            batch_key: Some(batch_key.to_owned()),
                            message,
                            details: json!({"trackerId": report.tracker_id,
                                "tracker": report.tracker, "term": term.term,
                                "modelId": cell.cell.model_id, "model": model,
                                "previousBatchKey": previous, "runs": cell.cell.runs,
                                "mentioned": term.mentioned, "mentionRate": term.mention_rate,
                                "change": change}),
                        };
                        created += self.create(alert, now).await?;
                    }
                }
            }
        }
        Ok(created)
    }

    /// The dead-man check at `now` (see the module's documentation); the alerts created.
    pub async fn check_deadman(&self, now: DateTime<Utc>) -> AppResult<u64> {
        let Some(deadline) = self.config().alerts.as_ref().and_then(|a| a.deadman) else {
            return Ok(0);
        };
        let prompts = self.store().prompt_list().await?;
        let mut on_global = Vec::new();
        let mut on_own: BTreeMap<&str, Vec<&Prompt>> = BTreeMap::new();
        for prompt in prompts.iter().filter(|p| p.active) {
            match prompt.schedule.as_deref().map(str::trim) {
                Some(expr) if !expr.is_empty() => on_own.entry(expr).or_default().push(prompt),
                _ => on_global.push(prompt),
            }
        }
        let watch = Deadman { now, deadline };
        let mut created = self
            .check_deadman_of(self.default_schedule(), None, &on_global, &watch)
            .await?;
        let tz = self.default_schedule().time_zone();
        for (expr, group) in on_own {
            // A broken expression is reported by every scheduling pass instead.
            if let Ok(schedule) = Schedule::parse(expr, tz) {
                created += self
                    .check_deadman_of(&schedule, Some(expr), &group, &watch)
                    .await?;
            }
        }
        Ok(created)
    }

    /// The dead-man check of one schedule and the active prompts on it; `own` is the
    /// expression of prompts' own schedule, `None` for `CRON_SCHEDULE`.
    async fn check_deadman_of(
        &self,
        schedule: &Schedule,
        own: Option<&str>,
        prompts: &[&Prompt],
        watch: &Deadman,
    ) -> AppResult<u64> {
        if !schedule.ticks() {
            return Ok(0);
        }
        let Ok(slot) = schedule.slot_at_or_before(watch.now - watch.deadline) else {
            return Ok(0);
        };
        let Ok(batch_key) = schedule.batch_key(slot) else {
            return Ok(0);
        };
        let batch_key = batch_key.to_string();
        let expected: Vec<PromptId> = prompts
            .iter()
            .filter(|p| p.created_at <= slot)
            .map(|p| p.id)
            .collect();
        if expected.is_empty() {
            return Ok(0);
        }
        // The global batch is looked at whole; a schedule of prompts' own shares its batch
        // keys with others of the same period, so only its own prompts' jobs count.
        let scopes: Vec<Option<PromptId>> = match own {
            None => vec![None],
            Some(_) => expected.iter().copied().map(Some).collect(),
        };
        for prompt_id in scopes {
            let filter = JobFilter {
                batch_key: Some(batch_key.clone()),
                prompt_id,
                ..JobFilter::default()
            };
            if self.store().jobs_summary(&filter).await?.total > 0 {
                return Ok(0);
            }
        }
        let whose = match own {
            None => String::new(),
            Some(_) => format!(" of {}", counted(expected.len(), "prompt", "prompts")),
        };
        let message = format!(
            ":rotating_light: promptq: no jobs{whose} for the batch *{batch_key}* (slot {} of \
             `{}`), {} minutes after its slot. Is the scheduler running?",
            slot.format("%Y-%m-%d %H:%M UTC"),
            schedule,
            watch.deadline.num_minutes()
        );
        let mut details = json!({"slot": slot, "schedule": schedule.to_string(),
            "deadlineMinutes": watch.deadline.num_minutes()});
        let dedupe_key = match own {
            None => format!("deadman@{batch_key}"),
            Some(expr) => {
                details["promptIds"] = json!(expected);
                format!("deadman:{expr}@{batch_key}")
            }
        };
        let alert = NewAlert {
            dedupe_key,
            kind: AlertKind::Deadman,
            batch_key: Some(batch_key),
            message,
            details,
        };
        self.create(alert, watch.now).await
    }
}
