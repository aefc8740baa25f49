//! The batch loop: runs the jobs of batch-mode models (`params.batch: true`) through the
//! provider's Batch API instead of one call each, at half the price, answered within 24 hours.
//!
//! Every process that runs workers (`serve`, `worker`, `run`) runs one loop, and any of them
//! may carry on any step of any batch. A pass first carries on the open batches that are due
//! (each taken by one process at a time, until its step's time runs out: `BATCH_STEP_SECS`),
//! then opens new ones: the model's queued jobs of one batch key are claimed into a local
//! batch (`processing`, leased for the provider's window, linked in the same transaction),
//! written as JSONL of the exact requests a direct call sends (`custom_id` = `job-ID-ATTEMPT`),
//! cut at `BATCH_MAX_REQUESTS` and `BATCH_MAX_BYTES`, uploaded, and submitted; once the
//! provider's batch id is recorded its jobs are `submitted` (no lease) until read. Each step is
//! recorded before the next depends on it ([`steps`]): a process killed anywhere leaves a row
//! that says how far it got, a batch uploaded but not known to be submitted is looked up in
//! the provider's list (by a token in its metadata) before it is submitted, and results are
//! stored through the fenced finish, so nothing is lost and nothing is sent or stored twice.
//!
//! Normal workers never claim a batch-mode model's jobs ([`super::blocked`]); an explicit
//! `POST /api/jobs/process` still runs one at once, as for any job.

mod steps;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::BatchSettings;
use crate::domain::{Model, ModelId};
use crate::providers::Providers;
use crate::store::StoreResult;

use super::runtime::Runtime;

/// How long jobs gathered into a provider batch are leased until the provider accepts it: the
/// provider's 24-hour window and a margin. Past it, a batch stuck before its submission (its
/// model can no longer be called) hands its jobs back through the rescue; a submitted batch's
/// jobs hold no lease, as any process can carry on its polling.
pub const JOB_LEASE: Duration = Duration::from_secs(48 * 3600);

/// Steps of open batches one pass carries on at most, so that new batches are opened too.
const STEPS_PER_PASS: usize = 50;

/// Runs the batch loop until `stop`; a step cut by `stop` is carried on by the next process
/// to take its batch.
pub async fn run(rt: Runtime, stop: CancellationToken) {
    let settings = rt.config().batch;
    let tick = Duration::from_secs(1).min(settings.poll_max);
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            result = pass(&rt, &settings, &mut backoff) => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "provider batch pass failed; retrying");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// One pass: carry on the due open batches, then open new ones.
async fn pass(rt: &Runtime, settings: &BatchSettings, backoff: &mut Backoff) -> StoreResult<()> {
    let models = rt.batch_models().await?;
    // Open batches are carried on whatever their model's settings became since (batch mode
    // turned off, the model deactivated): their jobs were claimed and are waiting.
    let callable: Vec<Model> = if models.is_empty() {
        // Where batch mode was never used, this is all a pass costs.
        if rt.store().provider_batches_recent(1).await?.is_empty() {
            return Ok(());
        }
        rt.store().model_list().await?
    } else {
        rt.store().model_list().await?
    }
    .into_iter()
    .filter(|m| Providers::has_batch_api(m.provider) && rt.providers().cannot_run(m).is_none())
    .collect();
    let ids: Vec<ModelId> = callable.iter().map(|m| m.id).collect();
    for _ in 0..STEPS_PER_PASS {
        let now = rt.store().clock_now().await?;
        let Some(batch) = rt
            .store()
            .provider_batch_take(&ids, now, settings.step)
            .await?
        else {
            break;
        };
        let Some(model) = callable.iter().find(|m| m.id == batch.model_id) else {
            continue;
        };
        steps::advance(rt, settings, model, batch).await?;
    }
    for model in models.iter() {
        if !backoff.ready(model.id) {
            continue;
        }
        loop {
            let now = rt.store().clock_now().await?;
            let opened = rt
                .store()
                .provider_batch_open(
                    model.id,
                    settings.max_requests as i64,
                    now,
                    JOB_LEASE,
                    settings.step,
                    &new_token(),
                )
                .await?;
            let Some((batch, jobs)) = opened else {
                break;
            };
            if steps::send(rt, settings, model, batch, jobs).await? {
                backoff.succeeded(model.id);
            } else {
                backoff.failed(model.id, settings.poll_max);
                break;
            }
        }
    }
    Ok(())
}

/// Cancels job `id` where it waits in a provider batch; when it was the batch's last pending
/// job and the provider has the batch, the batch is cancelled at the provider too (its
/// answered lines are still read, and stored for no one: every job of it is settled). `None`
/// when the job waits in no provider batch.
pub async fn cancel_job(rt: &Runtime, id: crate::domain::JobId) -> StoreResult<Option<u64>> {
    let now = rt.store().clock_now().await?;
    let Some((batch, pending)) = rt.store().provider_batch_cancel_job(id, now).await? else {
        return Ok(None);
    };
    if pending == 0
        && let Some(remote) = batch.provider_batch_id.as_deref()
        && let Some(model) = rt.store().model_get(batch.model_id).await?
    {
        // A failure here costs money, not correctness: the batch still runs to its end.
        match rt.providers().batch_cancel(&model, remote).await {
            Ok(answer) => {
                tracing::info!(batch = batch.id, status = %answer.status, "provider batch cancelled")
            }
            Err(err) => {
                tracing::warn!(batch = batch.id, error = %err.message, "cannot cancel the provider batch")
            }
        }
    }
    Ok(Some(1))
}

/// Random text for a batch's metadata: what finds a lost submission in the provider's list,
/// unique across every database that shares a provider account.
fn new_token() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// How long a model whose upload failed waits before its next batch is opened, growing with
/// each failure in a row.
#[derive(Default)]
struct Backoff {
    models: HashMap<ModelId, (Instant, u32)>,
}

impl Backoff {
    fn ready(&self, model: ModelId) -> bool {
        self.models
            .get(&model)
            .is_none_or(|(until, _)| Instant::now() >= *until)
    }

    fn failed(&mut self, model: ModelId, cap: Duration) {
        let failures = self.models.get(&model).map_or(0, |(_, n)| *n) + 1;
        let wait = poll_delay(failures, cap);
        self.models.insert(model, (Instant::now() + wait, failures));
    }

    fn succeeded(&mut self, model: ModelId) {
        self.models.remove(&model);
    }
}

/// The wait before poll number `polls + 1`: a second, doubling, at most `cap`.
pub fn poll_delay(polls: u32, cap: Duration) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(polls.min(20)))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(poll_delay(0, cap), Duration::from_secs(1));
        assert_eq!(poll_delay(3, cap), Duration::from_secs(8));
        assert_eq!(poll_delay(40, cap), cap);
        assert_eq!(
            poll_delay(0, Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
