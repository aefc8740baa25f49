//! One claimed attempt, run to its end: admission by the limits, the model call, what the
//! provider's answer teaches the limits, the outcome, the call's metrics, and the record.
//!
//! The worker pool and `POST /api/jobs/process` both run every attempt through [`run`] and
//! write every finish through [`record`]; they differ only in how the lease is kept (the pool
//! renews all of its leases in one statement; a lone attempt beats for itself, [`beat_alone`])
//! and in how many finishes one write carries. A panic anywhere in the attempt becomes the
//! attempt's error ([`super::guard`]) instead of a job left `processing` until its lease runs
//! out. A job that must wait longer than the inline wait for its model's limit is handed back
//! to the queue, holding no reservation and spending no attempt.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{AttemptError, ClaimedJob, ErrorClass, Finish, FinishResult, Outcome};
use crate::store::{Clock, StoreResult};

use super::guard::{Held, catch_panic};
use super::limits::Admission;
use super::retry::decide;
use super::runtime::Runtime;

/// How an attempt ended.
#[derive(Debug)]
pub enum Ended {
    /// Its finish, to be [`record`]ed: an outcome, a panic, or a lease lost mid-call.
    Finished(Finish),
    /// Handed back to wait for its model's limit or pause, due again at this time.
    HandedBack(DateTime<Utc>),
}

/// Runs a claimed attempt. `lease_lost` ends it early (the pool passes a future that never
/// ends: it stops lost attempts itself); `started` is called once the model call begins. A
/// job handed back is not yet written back: the caller drops it from its own bookkeeping
/// first, then calls [`hand_back`] (a release gives the claim number back, so the job's next
/// claim carries the same attempt number and must not be mistaken for this one).
pub async fn run(
    rt: &Runtime,
    job: &ClaimedJob,
    lease_lost: impl Future<Output = ()>,
    started: impl FnOnce(),
) -> Ended {
    let attempt = catch_panic(admit_and_call(rt, job, started));
    let ended = tokio::select! {
        ended = attempt => match ended {
            Ok(ended) => ended,
            Err(what) => {
                tracing::error!(job_id = job.job.id, attempt = job.attempt, panic = %what, "an attempt panicked; it is recorded as failed");
                Ended::Finished(Held::of(job).finish_after_panic(&what, rt.store().now(), rt.retry_policy()))
            }
        },
        () = lease_lost => Ended::Finished(Finish {
            job_id: job.job.id,
            attempt: job.attempt,
            finished_at: rt.store().now(),
            outcome: Outcome::Failed(AttemptError {
                class: ErrorClass::Abandoned,
                http_status: None,
                message: "the attempt lost its lease while the model call ran".into(),
            }),
        }),
    };
    if let Ended::Finished(finish) = &ended {
        rt.metrics().note_attempt_model(finish, &job.model.name);
        rt.note_spend(job, finish);
    }
    ended
}

/// Puts a job that waits for its model's limit back in the queue, due at `at`, without
/// spending its attempt. If this fails, the job's lease expires and a rescue frees it.
pub async fn hand_back(rt: &Runtime, job: &ClaimedJob, at: DateTime<Utc>) -> StoreResult<()> {
    let delay = (at - rt.store().now()).to_std().unwrap_or_default();
    Box::pin(
        rt.store()
            .jobs_release(&[(job.job.id, job.attempt)], Clock::Database, delay),
    )
    .await?;
    Ok(())
}

async fn admit_and_call(rt: &Runtime, job: &ClaimedJob, started: impl FnOnce()) -> Ended {
    let limits = rt.limits();
    let model_permit = match limits.admit(job).await {
        Admission::Go(permit) => permit,
        Admission::Later(at) => return Ended::HandedBack(at),
    };
    started();
    let clock = Instant::now();
    let result = rt
        .providers()
        .complete_in(
            &job.model,
            &job.prompt_text,
            job.job.run_index,
            job.attempt,
            &job.job.batch_key,
        )
        .await;
    let elapsed = clock.elapsed();
    limits.observe(job, &result, clock).await;
    drop(model_permit);
    let finish = decide(
        job,
        result,
        rt.store().now(),
        rt.retry_policy(),
        &mut rand::rng(),
    );
    rt.metrics().observe_call(&job.model.name, elapsed, &finish);
    Ended::Finished(finish)
}

/// Writes finishes in one transaction, then counts and logs each: applied, or stale (its
/// attempt no longer owned the job, so nothing changed).
pub async fn record(rt: &Runtime, finishes: &[Finish]) -> StoreResult<Vec<FinishResult>> {
    let results = rt.store().jobs_finish(finishes, Clock::Database).await?;
    let metrics = rt.metrics();
    for (finish, result) in finishes.iter().zip(&results) {
        metrics.observe_finish(finish, result.applied);
        if result.applied {
            log_finish(finish, result.response_id);
        } else {
            tracing::info!(
                job_id = finish.job_id,
                attempt = finish.attempt,
                "stale finish ignored"
            );
        }
    }
    Ok(results)
}

/// One line per job finish, with its ids.
fn log_finish(finish: &Finish, response_id: Option<i64>) {
    match &finish.outcome {
        Outcome::Succeeded(_) => {
            tracing::info!(
                job_id = finish.job_id,
                attempt = finish.attempt,
                response_id,
                "job succeeded"
            );
        }
        Outcome::Retry { at, error, .. } => {
            tracing::info!(job_id = finish.job_id, attempt = finish.attempt, retry_at = %at, error = %error.message, "job will be retried");
        }
        Outcome::Failed(error) => {
            tracing::warn!(job_id = finish.job_id, attempt = finish.attempt, error = %error.message, "job failed");
        }
    }
}

/// Renews one attempt's lease while it runs; ends when the lease is lost (rescued after a
/// long stall, or cancelled). A failed beat is retried at the next: the lease covers the gap.
pub async fn beat_alone(rt: &Runtime, job: &ClaimedJob) {
    let lease = rt.config().job_lease;
    let every = heartbeat_interval(lease);
    loop {
        tokio::time::sleep(every).await;
        match rt
            .store()
            .jobs_heartbeat(&[(job.job.id, job.attempt)], Clock::Database, lease)
            .await
        {
            Ok(owned) if owned.is_empty() => return,
            Ok(_) | Err(_) => {}
        }
    }
}

/// Beats three times per lease, so that two lost beats in a row still leave time.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(200))
}
