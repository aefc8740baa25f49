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
//!   with their own schedule are not watched.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{App, AppResult};
use crate::store::{AlertKind, JobFilter, NewAlert};

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
        let schedule = self.default_schedule();
        if !schedule.ticks() {
            return Ok(0);
        }
        let Ok(slot) = schedule.slot_at_or_before(now - deadline) else {
            return Ok(0);
        };
        let Ok(batch_key) = schedule.batch_key(slot) else {
            return Ok(0);
        };
        let batch_key = batch_key.to_string();
        let expected = self.store().prompt_list().await?.iter().any(|p| {
            p.active
                && p.schedule.as_deref().is_none_or(|s| s.trim().is_empty())
                && p.created_at <= slot
        });
        if !expected {
            return Ok(0);
        }
        let filter = JobFilter {
            batch_key: Some(batch_key.clone()),
            ..JobFilter::default()
        };
        if self.store().jobs_summary(&filter).await?.total > 0 {
            return Ok(0);
        }
        let message = format!(
            ":rotating_light: promptq: no jobs for the batch *{batch_key}* (slot {} of \
             `{}`), {} minutes after its slot. Is the scheduler running?",
            slot.format("%Y-%m-%d %H:%M UTC"),
            schedule,
            deadline.num_minutes()
        );
        let alert = NewAlert {
            dedupe_key: format!("deadman@{batch_key}"),
            kind: AlertKind::Deadman,
            batch_key: Some(batch_key),
            message,
            details: json!({"slot": slot, "schedule": schedule.to_string(),
                "deadlineMinutes": deadline.num_minutes()}),
        };
        self.create(alert, now).await
    }
}
