//! An attempt that panics ends with the panic as its error: the panic is caught where the
//! attempt is polled and becomes its outcome (retried after a backoff, or failed once the job's
//! attempts are spent), instead of a job left `processing` whose lease the pool renews forever.
//!
//! Only the catching and the outcome live here; [`super::attempt::run`] uses them for the pool
//! and for `POST /api/jobs/process` alike, and the finish is recorded like any other.

use std::panic::AssertUnwindSafe;
use std::task::Poll;

use chrono::{DateTime, Utc};

use crate::domain::{AttemptError, ClaimedJob, ErrorClass, Finish, JobId, Outcome};
use crate::providers::{MAX_MESSAGE_CHARS, one_line};

use super::retry::{RetryPolicy, later};

/// Polls `task` to its end: its output, or the panic's message when it panicked.
pub async fn catch_panic<T>(task: impl std::future::Future<Output = T>) -> Result<T, String> {
    let mut task = std::pin::pin!(task);
    std::future::poll_fn(|cx| {
        // The task is not polled again after a panic, so no broken state of it is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned()))),
        }
    })
    .await
}

/// What the pool must know of an attempt to hand its job back if its task panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub job_id: JobId,
    pub attempt: i32,
    /// Attempts spent, this one included.
    pub spent: i32,
    pub max_attempts: i32,
}

impl Held {
    pub fn of(job: &ClaimedJob) -> Held {
        Held {
            job_id: job.job.id,
            attempt: job.attempt,
            spent: job.job.attempt_count,
            max_attempts: job.job.max_attempts,
        }
    }

    /// The attempt's finish after its task panicked with `what`: the attempt counts (a bug
    /// that panics every time must not cycle forever), retried after a backoff if attempts
    /// remain.
    pub fn finish_after_panic(
        &self,
        what: &str,
        now: DateTime<Utc>,
        policy: &RetryPolicy,
    ) -> Finish {
        let message: String = one_line(&format!(
            "the worker crashed while running this attempt: {what}"
        ))
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
        let error = AttemptError {
            class: ErrorClass::Retryable,
            http_status: None,
            message,
        };
        let outcome = if self.spent >= self.max_attempts {
            Outcome::Failed(error)
        } else {
            Outcome::Retry {
                at: later(now, policy.backoff(self.attempt, &mut rand::rng())),
                error,
                refund_attempt: false,
            }
        };
        Finish {
            job_id: self.job_id,
            attempt: self.attempt,
            finished_at: now,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_with_its_message_and_a_clean_end_is_not() {
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            panic!("boom at {}", 42);
        })
        .await;
        assert_eq!(caught, Err::<(), _>("boom at 42".to_owned()));
        let clean = catch_panic(async {
            tokio::task::yield_now().await;
            7
        });
        assert_eq!(clean.await, Ok(7));
    }

    #[test]
    fn a_panicked_attempt_is_retried_while_attempts_remain_then_fails() {
        let now = Utc::now();
        let policy = RetryPolicy::default();
        let held = Held {
            job_id: 7,
            attempt: 1,
            spent: 1,
            max_attempts: 3,
        };
        let finish = held.finish_after_panic("index out of\nbounds", now, &policy);
        assert_eq!((finish.job_id, finish.attempt), (7, 1));
        match finish.outcome {
            Outcome::Retry {
                at,
                error,
                refund_attempt,
            } => {
                assert!(at >= now && at <= later(now, policy.cap));
                assert!(!refund_attempt);
                assert_eq!(
                    error.message,
                    "the worker crashed while running this attempt: index out of bounds"
                );
            }
            other => panic!("{other:?}"),
        }
        let last = Held { spent: 3, ..held };
        assert!(matches!(
            last.finish_after_panic("x", now, &policy).outcome,
            Outcome::Failed(_)
        ));
    }
}
