//! Retention: removing old attempt records and raw provider bodies (and, when asked, old
//! finished jobs with their answers), in batches small enough that the queue never waits.
//!
//! A prune walks each target in id order, [`PRUNE_BATCH`] rows per transaction; it never
//! touches a job that is `queued` or `processing`. `promptq prune` counts first and applies
//! only when told to; with `RETENTION_DAYS`, `serve` and `worker` prune attempts and raw
//! bodies every hour ([`spawn_retention`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{App, AppError, AppResult};
use crate::store::{PruneCounts, PruneTarget};

/// Rows changed per transaction: small enough to hold a lock for milliseconds.
pub const PRUNE_BATCH: i64 = 1000;

/// How often `serve` and `worker` prune when `RETENTION_DAYS` is set.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// What to prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRequest {
    /// Rows older than this are removed.
    pub older_than: chrono::Duration,
    /// Also delete finished jobs (with their answers and attempts), not only attempts and
    /// raw bodies.
    pub jobs: bool,
    /// `false`: only count what would go.
    pub apply: bool,
}

/// What a prune removed, or would remove on a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub cutoff: DateTime<Utc>,
    pub dry_run: bool,
    /// With `jobs` off, `jobs` and `responses` stay 0 (on a dry run: what `--jobs` would add).
    pub counts: PruneCounts,
    /// Transactions run (0 on a dry run).
    pub batches: u64,
}

impl App {
    /// Prunes (or on a dry run counts) what is older than `request.older_than` at `now`.
    pub async fn prune(&self, request: PruneRequest, now: DateTime<Utc>) -> AppResult<PruneReport> {
        self.prune_paced(request, now, Duration::ZERO).await
    }

    /// [`App::prune`] with a `pause` between batches, for the background pruner: it leaves
    /// the single SQLite writer to the queue between two of its transactions.
    async fn prune_paced(
        &self,
        request: PruneRequest,
        now: DateTime<Utc>,
        pause: Duration,
    ) -> AppResult<PruneReport> {
        if request.older_than <= chrono::Duration::zero() {
            return Err(AppError::BadInput(
                "the age to prune must be positive".into(),
            ));
        }
        let cutoff = now
            .checked_sub_signed(request.older_than)
            .ok_or_else(|| AppError::BadInput("the age to prune is too large".into()))?;
        let store = self.store();
        if !request.apply {
            let mut counts = store.prune_count(cutoff).await?;
            if !request.jobs {
                counts.jobs = 0;
                counts.responses = 0;
            }
            return Ok(PruneReport {
                cutoff,
                dry_run: true,
                counts,
                batches: 0,
            });
        }
        let mut report = PruneReport {
            cutoff,
            dry_run: false,
            counts: PruneCounts::default(),
            batches: 0,
        };
        // Jobs first: their attempts and answers go with them, so fewer rows are left below.
        let targets: &[PruneTarget] = if request.jobs {
            &[
                PruneTarget::Jobs,
                PruneTarget::Attempts,
                PruneTarget::RawBodies,
            ]
        } else {
            &[PruneTarget::Attempts, PruneTarget::RawBodies]
        };
        for &target in targets {
            let mut after = 0;
            loop {
                let step = store
                    .prune_batch(target, cutoff, after, PRUNE_BATCH)
                    .await?;
                let Some(last_id) = step.last_id else { break };
                after = last_id;
                report.batches += 1;
                match target {
                    PruneTarget::Attempts => report.counts.attempts += step.changed,
                    PruneTarget::RawBodies => report.counts.raw_bodies += step.changed,
                    PruneTarget::Jobs => {
                        report.counts.jobs += step.changed;
                        report.counts.responses += step.responses;
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Ok(report)
    }
}

/// With `RETENTION_DAYS` set, prunes attempts and raw bodies older than that now and every
/// hour until `stop`; `None` without it. Errors are logged and the next hour tries again.
pub fn spawn_retention(app: App, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let older_than = app.config().retention?;
    Some(tokio::spawn(async move {
        let request = PruneRequest {
            older_than,
            jobs: false,
            apply: true,
        };
        loop {
            let pruned = tokio::select! {
                _ = stop.cancelled() => return,
                pruned = app.prune_paced(request, Utc::now(), Duration::from_millis(20)) => pruned,
            };
            match pruned {
                Ok(report) => tracing::info!(
                    attempts = report.counts.attempts,
                    raw_bodies = report.counts.raw_bodies,
                    batches = report.batches,
                    "retention: pruned what is older than {}",
                    report.cutoff
                ),
                Err(err) => tracing::warn!(error = %err, "retention: prune failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETENTION_EVERY) => {}
            }
        }
    }))
}
