//! The steps of one provider batch, each recorded before the next depends on it: send (write
//! the file, upload, record the file, submit, record the provider's id), carry on a batch
//! another process left, poll, and read the results into the fenced finish.

use std::collections::HashSet;

use super::poll_delay;
use crate::config::BatchSettings;
use crate::domain::price::settle_cost;
use crate::domain::provider_batch::{
    LineOutcome, LineResult, ProviderBatch, ProviderBatchPatch, ProviderBatchState,
};
use crate::domain::{ClaimedJob, Finish, JobId, Model, Outcome};
use crate::engine::attempt;
use crate::engine::retry::decide;
use crate::engine::runtime::Runtime;
use crate::providers::ProviderError;
use crate::providers::batch::RemoteBatch;
use crate::store::StoreResult;

use ProviderBatchState::{Abandoned, Done, Preparing, Submitted, Uploaded};

/// Finishes written per transaction while results are read.
const FINISH_CHUNK: usize = 500;

/// The `custom_id` of a job's attempt: what its result line answers.
pub fn custom_id(job: JobId, attempt: i32) -> String {
    format!("job-{job}-{attempt}")
}

/// The job and attempt a `custom_id` names.
pub fn parse_custom_id(id: &str) -> Option<(JobId, i32)> {
    let (job, attempt) = id.strip_prefix("job-")?.split_once('-')?;
    Some((job.parse().ok()?, attempt.parse().ok()?))
}

/// Sends a freshly opened batch: writes its file (handing back what does not fit), uploads
/// it, records the file, submits it and records the provider's id. `false` when the provider
/// could not be reached (the batch's jobs went back, or it waits to be carried on).
pub async fn send(
    rt: &Runtime,
    settings: &BatchSettings,
    model: &Model,
    batch: ProviderBatch,
    jobs: Vec<ClaimedJob>,
) -> StoreResult<bool> {
    let mut file = Vec::new();
    let mut left_out = Vec::new();
    for job in &jobs {
        let mut line = rt.providers().batch_line(
            &job.model,
            &job.prompt_text,
            &custom_id(job.job.id, job.attempt),
        );
        line.push('\n');
        if !file.is_empty() && file.len() + line.len() > settings.max_bytes {
            left_out.push((job.job.id, job.attempt));
        } else {
            file.extend_from_slice(line.as_bytes());
        }
    }
    let now = rt.store().clock_now().await?;
    if !left_out.is_empty() {
        // They open the next batch, straight after this one.
        rt.store()
            .provider_batch_return(batch.id, &left_out, now)
            .await?;
    }
    let file_id = match rt.providers().batch_upload(model, file).await {
        Ok(id) => id,
        Err(err) => {
            // Nothing was submitted: the jobs go back (or fail, for an error that would
            // repeat), and the batch is closed.
            give_up(rt, model, &batch, Preparing, &err).await?;
            return Ok(false);
        }
    };
    let uploaded = ProviderBatchPatch {
        state: Some(Uploaded),
        input_file_id: Some(file_id),
        ..ProviderBatchPatch::default()
    };
    let now = rt.store().clock_now().await?;
    if !rt
        .store()
        .provider_batch_update(batch.id, Preparing, &uploaded, now)
        .await?
    {
        return Ok(true);
    }
    let Some(batch) = rt.store().provider_batch_get(batch.id).await? else {
        return Ok(true);
    };
    submit(rt, settings, model, &batch, true).await
}

/// Carries on a batch taken from the list of open ones.
pub async fn advance(
    rt: &Runtime,
    settings: &BatchSettings,
    model: &Model,
    batch: ProviderBatch,
) -> StoreResult<()> {
    match batch.state {
        // Its process stopped before the upload was recorded: nothing of it was submitted
        // (a submission follows the record), so its jobs simply go back.
        Preparing => {
            let now = rt.store().clock_now().await?;
            let error = "the process preparing this batch stopped; its jobs were handed back";
            rt.store()
                .provider_batch_close(batch.id, Preparing, Abandoned, Some(error), now)
                .await?;
        }
        Uploaded => {
            submit(rt, settings, model, &batch, false).await?;
        }
        Submitted => poll(rt, settings, model, &batch).await?,
        Done | Abandoned => {}
    }
    Ok(())
}

/// Submits an uploaded batch, unless the provider already has it (a submission whose answer
/// was lost): unless the batch was uploaded by this very call (`fresh`), the provider's list
/// is searched for the batch's token first.
async fn submit(
    rt: &Runtime,
    settings: &BatchSettings,
    model: &Model,
    batch: &ProviderBatch,
    fresh: bool,
) -> StoreResult<bool> {
    let Some(file_id) = batch.input_file_id.as_deref() else {
        return Ok(false);
    };
    let providers = rt.providers();
    let known = if !fresh {
        match providers.batch_find(model, &batch.token).await {
            Ok(found) => found,
            Err(err) => {
                return wait(rt, settings, batch, Uploaded, &err)
                    .await
                    .map(|()| false);
            }
        }
    } else {
        None
    };
    let remote = match known {
        Some(remote) => remote,
        None => match providers
            .batch_create(model, file_id, batch.id, &batch.token)
            .await
        {
            Ok(remote) => remote,
            // A refusal that would repeat fails the jobs; anything else (a timeout may hide a
            // batch that was created) waits, to be looked up before it is submitted again.
            Err(err) if !err.is_retryable() => {
                give_up(rt, model, batch, Uploaded, &err).await?;
                return Ok(false);
            }
            Err(err) => {
                return wait(rt, settings, batch, Uploaded, &err)
                    .await
                    .map(|()| false);
            }
        },
    };
    let now = rt.store().clock_now().await?;
    let submitted = ProviderBatchPatch {
        state: Some(Submitted),
        provider_batch_id: Some(remote.id.clone()),
        provider_status: Some(remote.status.clone()),
        next_poll_at: Some(now + delay(poll_delay(0, settings.poll_max))),
        ..ProviderBatchPatch::default()
    };
    rt.store()
        .provider_batch_update(batch.id, Uploaded, &submitted, now)
        .await?;
    tracing::info!(
        batch = batch.id,
        provider_batch = %remote.id,
        "provider batch submitted"
    );
    Ok(true)
}

/// Keeps `batch` in `state` and tries it again later, with `err` recorded.
async fn wait(
    rt: &Runtime,
    settings: &BatchSettings,
    batch: &ProviderBatch,
    state: ProviderBatchState,
    err: &ProviderError,
) -> StoreResult<()> {
    tracing::warn!(batch = batch.id, error = %err.message, "provider batch step failed; retrying");
    let now = rt.store().clock_now().await?;
    let later = ProviderBatchPatch {
        error: Some(err.message.clone()),
        polled: true,
        next_poll_at: Some(now + delay(poll_delay(batch.polls as u32 + 1, settings.poll_max))),
        ..ProviderBatchPatch::default()
    };
    rt.store()
        .provider_batch_update(batch.id, state, &later, now)
        .await?;
    Ok(())
}

/// Closes a batch that never reached the provider: its jobs fail where `err` would repeat
/// (or their attempts are spent), and go back otherwise.
async fn give_up(
    rt: &Runtime,
    model: &Model,
    batch: &ProviderBatch,
    state: ProviderBatchState,
    err: &ProviderError,
) -> StoreResult<()> {
    tracing::warn!(batch = batch.id, error = %err.message, "provider batch not sent");
    if !err.is_retryable() {
        let pending = rt.store().provider_batch_pending(batch.id).await?;
        let now = rt.store().now();
        let mut finishes = Vec::new();
        let mut lines = Vec::new();
        for (job_id, attempt) in pending {
            if let Some(claimed) = claimed(rt, model, job_id, attempt).await? {
                let finish = decide(
                    &claimed,
                    Err(err.clone()),
                    now,
                    rt.retry_policy(),
                    &mut rand::rng(),
                );
                lines.push(line_result(&finish));
                finishes.push(finish);
            }
        }
        attempt::record(rt, &finishes).await?;
        rt.store().provider_batch_record(&lines).await?;
    }
    let now = rt.store().clock_now().await?;
    rt.store()
        .provider_batch_close(batch.id, state, Abandoned, Some(&err.message), now)
        .await?;
    Ok(())
}

/// Reads the batch's status at the provider; once it is over, reads its results.
async fn poll(
    rt: &Runtime,
    settings: &BatchSettings,
    model: &Model,
    batch: &ProviderBatch,
) -> StoreResult<()> {
    let Some(remote_id) = batch.provider_batch_id.as_deref() else {
        return Ok(());
    };
    let remote = match rt.providers().batch_get(model, remote_id).await {
        Ok(remote) => remote,
        Err(err) => return wait(rt, settings, batch, Submitted, &err).await,
    };
    let now = rt.store().clock_now().await?;
    if !remote.is_over() {
        let later = ProviderBatchPatch {
            provider_status: Some(remote.status.clone()),
            polled: true,
            next_poll_at: Some(now + delay(poll_delay(batch.polls as u32 + 1, settings.poll_max))),
            ..ProviderBatchPatch::default()
        };
        rt.store()
            .provider_batch_update(batch.id, Submitted, &later, now)
            .await?;
        return Ok(());
    }
    let seen = ProviderBatchPatch {
        provider_status: Some(remote.status.clone()),
        output_file_id: remote.output_file_id.clone(),
        error_file_id: remote.error_file_id.clone(),
        polled: true,
        ..ProviderBatchPatch::default()
    };
    rt.store()
        .provider_batch_update(batch.id, Submitted, &seen, now)
        .await?;
    collect(rt, settings, model, batch, &remote).await
}

/// Reads the output and error files into finishes (each fenced: a line read twice stores
/// one answer), then closes the batch, handing back every job left without a line (an
/// expired, failed or cancelled batch's unfinished jobs).
async fn collect(
    rt: &Runtime,
    settings: &BatchSettings,
    model: &Model,
    batch: &ProviderBatch,
    remote: &RemoteBatch,
) -> StoreResult<()> {
    let pending: HashSet<(JobId, i32)> = rt
        .store()
        .provider_batch_pending(batch.id)
        .await?
        .into_iter()
        .collect();
    for file in [&remote.output_file_id, &remote.error_file_id]
        .into_iter()
        .flatten()
    {
        let content = match rt.providers().batch_file(model, file).await {
            Ok(content) => content,
            Err(err) => return wait(rt, settings, batch, Submitted, &err).await,
        };
        let text = String::from_utf8_lossy(&content);
        let mut finishes = Vec::new();
        let mut lines = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line the provider never ran (the batch expired or was cancelled first) is no
            // attempt of the job's: its job is handed back when the batch closes.
            if crate::providers::batch::never_ran(line) {
                continue;
            }
            let Some((custom_id, result)) = rt.providers().batch_result(model, line) else {
                continue;
            };
            let Some(key) = parse_custom_id(&custom_id).filter(|k| pending.contains(k)) else {
                continue;
            };
            let Some(job) = claimed(rt, model, key.0, key.1).await? else {
                continue;
            };
            let reported_cost = result.as_ref().ok().and_then(|answer| answer.cost_usd);
            let mut finish = decide(
                &job,
                result,
                rt.store().now(),
                rt.retry_policy(),
                &mut rand::rng(),
            );
            // An answer served through the Batch API costs the batch price (the provider's
            // own figure, when it reports one, still wins).
            if reported_cost.is_none()
                && let Outcome::Succeeded(response) = &mut finish.outcome
            {
                response.cost_usd = None;
                settle_cost(response, job.model.spec.spend().price.as_ref(), true);
            }
            lines.push(line_result(&finish));
            finishes.push(finish);
            if finishes.len() >= FINISH_CHUNK {
                attempt::record(rt, &finishes).await?;
                rt.store().provider_batch_record(&lines).await?;
                finishes.clear();
                lines.clear();
            }
        }
        attempt::record(rt, &finishes).await?;
        rt.store().provider_batch_record(&lines).await?;
    }
    let error = (remote.status != "completed").then(|| {
        format!(
            "provider batch {}{}; unfinished jobs were handed back",
            remote.status,
            remote
                .errors
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    });
    let now = rt.store().clock_now().await?;
    let returned = rt
        .store()
        .provider_batch_close(batch.id, Submitted, Done, error.as_deref(), now)
        .await?;
    if returned.is_some_and(|n| n > 0) {
        rt.announce_work();
    }
    tracing::info!(batch = batch.id, status = %remote.status, returned, "provider batch read");
    Ok(())
}

/// The job of a pending attempt, as an outcome is decided for it (from its row: the retry rules
/// read its attempts, not its prompt): `None` when the attempt no longer owns its job.
async fn claimed(
    rt: &Runtime,
    model: &Model,
    job_id: JobId,
    attempt: i32,
) -> StoreResult<Option<ClaimedJob>> {
    let Some(job) = rt.store().job_get(job_id).await? else {
        return Ok(None);
    };
    use crate::domain::JobStatus::{Processing, Submitted};
    if !matches!(job.status, Processing | Submitted) || job.claim_number() != attempt {
        return Ok(None);
    }
    Ok(Some(ClaimedJob {
        job,
        attempt,
        prompt_text: String::new(),
        model: std::sync::Arc::new(model.clone()),
    }))
}

fn line_result(finish: &Finish) -> LineResult {
    let outcome = match finish.outcome {
        Outcome::Succeeded(_) => LineOutcome::Succeeded,
        Outcome::Retry { .. } => LineOutcome::Retry,
        Outcome::Failed(_) => LineOutcome::Failed,
    };
    (finish.job_id, finish.attempt, outcome)
}

fn delay(wait: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_round_trip() {
        assert_eq!(parse_custom_id(&custom_id(42, 3)), Some((42, 3)));
        assert_eq!(parse_custom_id("job-x-1"), None);
        assert_eq!(parse_custom_id("42-1"), None);
    }
}
