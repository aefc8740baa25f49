//! One attempt of one claimed job, run alone: the model call, a heartbeat that keeps the lease
//! while the call outlives it, and the outcome. Limits are admitted by the caller.
//!
//! This is the path of `POST /api/jobs/process` (one job per HTTP call, as on serverless). The
//! worker pool runs the same call and the same [`decide`](super::retry::decide), but batches
//! heartbeats and finishes across all of its jobs instead.

use std::time::Duration;

use chrono::Utc;

use crate::app::App;
use crate::domain::{AttemptError, ClaimedJob, ErrorClass, Finish, Outcome};

use super::retry::decide;

/// Runs the attempt and returns its finish (not yet written).
pub async fn run_alone(app: &App, claimed: &ClaimedJob) -> Finish {
    let call = app.providers().complete(
        &claimed.model,
        &claimed.prompt_text,
        claimed.job.run_index,
        claimed.attempt,
    );
    let lease = app.config().job_lease;
    let heartbeat = async {
        let every = heartbeat_interval(lease);
        loop {
            tokio::time::sleep(every).await;
            match app
                .store()
                .jobs_heartbeat(
                    &[(claimed.job.id, claimed.attempt)],
                    crate::store::Clock::Database,
                    lease,
                )
                .await
            {
                Ok(owned) if owned.is_empty() => return,
                // A failed heartbeat is retried at the next beat; the lease covers the gap.
                Ok(_) | Err(_) => {}
            }
        }
    };
    tokio::select! {
        result = call => {
            app.limits().observe(claimed, &result).await;
            decide(claimed, result, Utc::now(), app.retry_policy(), &mut rand::rng())
        }
        () = heartbeat => Finish {
            job_id: claimed.job.id,
            attempt: claimed.attempt,
            finished_at: Utc::now(),
            outcome: Outcome::Failed(AttemptError {
                class: ErrorClass::Abandoned,
                http_status: None,
                message: "the attempt lost its lease while the model call ran".into(),
            }),
        },
    }
}

/// Beats three times per lease, so that two lost beats in a row still leave time.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(200))
}
