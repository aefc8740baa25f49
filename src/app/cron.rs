//! Scheduling passes: which prompts are due, the jobs of their batch created once, and the
//! HTTP fan-out that follows when jobs are dispatched one HTTP call each.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::BatchKey;
pub use crate::engine::dispatch::FanOutReport;
use crate::schedule::{self, Schedule, Trigger};
use crate::store::{Clock, EnqueueOptions};

use super::{App, AppError, AppResult, MAX_PAGE};
use crate::store::{JobFilter, Page};

/// The answer of a scheduling pass (`/api/cron`, `promptq cron`, the built-in cron).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronReport {
    pub success: bool,
    pub message: String,
    pub prompt_count: u64,
    pub jobs_created: u64,
    pub batch_key: String,
    /// Prompts left out because their own schedule is broken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule_errors: Vec<schedule::PromptScheduleError>,
}

impl App {
    // ---- scheduling

    /// One scheduling pass: creates the jobs of every due prompt for the trigger's batch.
    pub async fn run_cron(&self, trigger: Trigger) -> AppResult<CronReport> {
        let backfill = matches!(trigger, Trigger::Backfill { .. });
        let prompts = self.store().prompts_schedulable().await?;
        let plan = schedule::plan(&prompts, self.default_schedule(), trigger)
            .map_err(|err| AppError::BadInput(err.to_string()))?;
        let report = self
            .store()
            .jobs_enqueue(
                &plan.batches,
                EnqueueOptions {
                    now: Clock::Database,
                    max_attempts: self.config().max_attempts,
                    mark_prompts: !backfill,
                },
            )
            .await?;
        if report.jobs_created > 0 {
            self.runtime().announce_work();
        }
        let message = if report.jobs_created > 0 {
            format!(
                "Enqueued {} for {}",
                counted(report.jobs_created, "job", "jobs"),
                counted(report.prompt_count, "prompt", "prompts")
            )
        } else {
            self.nothing_new(&plan.batch_key.to_string()).await?
        };
        Ok(CronReport {
            success: true,
            message,
            prompt_count: report.prompt_count,
            jobs_created: report.jobs_created,
            batch_key: plan.batch_key.to_string(),
            schedule_errors: plan.errors,
        })
    }

    /// What a pass that created nothing says: what the batch already holds (after `serve`
    /// caught it up at start, say), rather than "0 jobs for 0 prompts".
    async fn nothing_new(&self, batch_key: &str) -> AppResult<String> {
        let filter = JobFilter {
            batch_key: Some(batch_key.to_owned()),
            ..JobFilter::default()
        };
        let total = self.store().jobs_summary(&filter).await?.total;
        if total == 0 {
            return Ok(format!(
                "0 new jobs; no prompt is due for batch {batch_key}"
            ));
        }
        // Its prompts, a page of jobs at a time: a pass that creates nothing is rare, and
        // a batch is a few pages at most.
        let mut prompts = std::collections::BTreeSet::new();
        let mut page = Page {
            limit: MAX_PAGE,
            offset: 0,
        };
        loop {
            let jobs = self.store().jobs_list(&filter, page).await?;
            prompts.extend(jobs.iter().map(|job| job.prompt_id));
            if (jobs.len() as i64) < page.limit {
                break;
            }
            page.offset += page.limit;
        }
        Ok(format!(
            "0 new jobs; batch {batch_key} already holds {} for {}",
            counted(total, "job", "jobs"),
            counted(prompts.len(), "prompt", "prompts")
        ))
    }

    /// The soonest slot after `after` of the global schedule and of every active prompt's own
    /// schedule (broken per-prompt schedules are left out: the pass reports them).
    pub async fn next_scheduled_slot(
        &self,
        after: DateTime<Utc>,
    ) -> AppResult<Option<DateTime<Utc>>> {
        let mut expressions: Vec<String> = self
            .store()
            .prompts_schedulable()
            .await?
            .into_iter()
            .filter_map(|prompt| prompt.schedule)
            .filter(|expr| !expr.trim().is_empty())
            .collect();
        expressions.sort();
        expressions.dedup();
        let tz = self.default_schedule().time_zone();
        let mut next = self.default_schedule().next_tick(after).ok().flatten();
        for expr in expressions {
            if let Ok(schedule) = Schedule::parse(&expr, tz)
                && let Ok(Some(slot)) = schedule.next_tick(after)
            {
                next = Some(next.map_or(slot, |n| n.min(slot)));
            }
        }
        Ok(next)
    }

    /// The pass an outside trigger asks for: the current batch, or `batch_key` to backfill.
    pub async fn trigger_cron(&self, batch_key: Option<BatchKey>) -> AppResult<CronReport> {
        let trigger = match batch_key {
            Some(batch_key) => Trigger::Backfill { batch_key },
            // Due-ness by the database's clock, so that every process picks the same slot.
            None => Trigger::External {
                now: self.store().clock_now().await?,
            },
        };
        self.run_cron(trigger).await
    }

    /// Sends every due queued job to `{APP_URL}/api/jobs/process` (`DISPATCH=http`). With a
    /// `DISPATCH_BUDGET_SECS`, the pass stops sending when its budget is spent, waits for the
    /// calls under way, and hands the jobs left to a fresh invocation of this same service
    /// (`POST {APP_URL}/api/jobs/dispatch`), which does the same: a batch larger than one
    /// invocation's time limit goes on through a chain of invocations instead of waiting for
    /// the next cron.
    pub async fn fan_out(&self) -> FanOutReport {
        let deadline = self
            .config()
            .dispatch_budget
            .map(|budget| std::time::Instant::now() + budget);
        let mut report = crate::engine::dispatch::fan_out(self.runtime(), deadline).await;
        if report.left > 0 {
            report.handed_off = self.hand_off().await;
        }
        report
    }

    /// Starts the next fan-out pass in a fresh invocation. It waits a few seconds only: the
    /// next pass answers when its own work is done, long after this invocation must end, and
    /// neither Vercel nor [`crate::http`]'s handler stops it when the caller hangs up.
    async fn hand_off(&self) -> bool {
        /// Long enough for the call to reach the next invocation.
        const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let Some(base) = self.config().app_url.as_deref() else {
            return false;
        };
        let mut request = crate::engine::dispatch::client()
            .post(format!("{base}/api/jobs/dispatch"))
            .timeout(WAIT)
            .header("Content-Length", "0");
        if let Some(secret) = &self.config().cron_secret {
            request = request.header("Authorization", format!("Bearer {}", secret.expose()));
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => true,
            // Still working when this one stopped waiting: handed over.
            Err(err) if err.is_timeout() => true,
            Ok(answer) => {
                tracing::warn!(status = %answer.status(), "the hand-off was refused; the next cron sends the rest");
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "the hand-off failed; the next cron sends the rest");
                false
            }
        }
    }
}

/// `1 job`, `2 jobs`: a count with its noun in the right number.
pub fn counted(count: impl TryInto<i64>, one: &str, many: &str) -> String {
    let n: i64 = count.try_into().unwrap_or(i64::MAX);
    format!("{n} {}", if n == 1 { one } else { many })
}
