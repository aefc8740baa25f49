//! The built-in cron: a scheduling pass at each tick of `CRON_SCHEDULE`.
//!
//! The batch key comes from the tick's scheduled slot, never from the clock at delivery, so a
//! late wake-up still fills the slot it was meant for. At start-up the latest slot is caught up
//! once (not every missed one): due-ness by batch key makes that pass harmless when the batch
//! already ran. Many processes may run this loop; the store's unique job key means no
//! duplicates, and on Postgres the enqueue's advisory lock lets one of them do the work while
//! the others find nothing due.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::schedule::Trigger;

/// Ticks until `shutdown`; returns at once when the schedule is `off`.
pub async fn run_scheduler(app: App, shutdown: CancellationToken) {
    let schedule = app.default_schedule().clone();
    let mut last_tick = None;
    loop {
        let now = Utc::now();
        let due = match schedule.catch_up(last_tick, now) {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "the schedule has no slot; the built-in cron stops");
                return;
            }
        };
        if let Some(slot) = due {
            match app.run_cron(Trigger::Tick { slot }).await {
                Ok(report) => tracing::info!(
                    batch_key = %report.batch_key,
                    jobs_created = report.jobs_created,
                    prompts = report.prompt_count,
                    "scheduled pass"
                ),
                Err(err) => tracing::error!(error = %err, %slot, "scheduled pass failed"),
            }
            if app.config().dispatch == crate::config::DispatchMode::Http {
                super::dispatch::fan_out(&app).await;
            }
            last_tick = Some(slot);
        }
        let next = match schedule.next_tick(last_tick.unwrap_or(now).max(now)) {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(error = %err, "the schedule has no next slot; the built-in cron stops");
                return;
            }
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        // Sleep can end a little early; the pass must belong to `next`, so wait it out.
        while Utc::now() < next {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
