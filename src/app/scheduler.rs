//! The built-in cron: a scheduling pass at each tick of `CRON_SCHEDULE`.
//!
//! The loop wakes at the soonest slot of the global schedule and of every prompt's own
//! schedule, so a prompt with a finer schedule of its own runs at its own slots. The batch key
//! comes from the tick's scheduled slot, never from the clock at delivery, so a late wake-up
//! still fills the slot it was meant for. At start-up each schedule's latest slot is caught up
//! once (not every missed one): due-ness by batch key makes that pass harmless when the batch
//! already ran. Many processes may run this loop; the store's unique job key means no
//! duplicates, and on Postgres the enqueue's advisory lock lets one of them do the work while
//! the others find nothing due.
//!
//! Slots are timed on the database's clock ([`crate::store::Store::now`]), as leases and due
//! times are: a `serve` whose own clock runs ahead would otherwise fill each slot early (the
//! batch of 00:02 at 00:00:30 for a clock 90 s fast), and one behind would fill it late.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::schedule::Trigger;

/// How long the loop sleeps at most before it looks at the schedules again, so that a prompt
/// given a finer schedule of its own is picked up without a restart.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Ticks until `shutdown`; returns at once when `CRON_SCHEDULE` is `off`.
pub async fn run_scheduler(app: App, shutdown: CancellationToken) {
    if !app.default_schedule().ticks() {
        return;
    }
    // Start-up: every schedule's latest slot, once, however many were missed while down.
    let now = || app.store().now();
    pass(&app, now()).await;
    let mut after = now();
    loop {
        // The soonest slot of the global schedule and of every prompt's own schedule.
        let next = match app.next_scheduled_slot(after).await {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the schedules; trying again");
                None
            }
        };
        let recheck = now() + chrono::Duration::from_std(RECHECK).unwrap_or_default();
        let wake = next.map_or(recheck, |next| next.min(recheck));
        let wait = (wake - now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(slot) = next.filter(|next| *next <= wake) else {
            continue;
        };
        // Sleep can end a little early; the pass must belong to `slot`, so wait it out.
        while now() < slot {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        pass(&app, slot).await;
        after = slot;
    }
}

/// One scheduling pass for the tick at `slot` (and the HTTP fan-out when so configured).
async fn pass(app: &App, slot: chrono::DateTime<Utc>) {
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
        app.fan_out().await;
    }
}
