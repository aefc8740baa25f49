//! W4, the heavy tail: 20,000 jobs whose latencies follow real model calls' spread (log-normal,
//! median 1 s, 99th percentile 20 s, cut at 60 s) at concurrency 1,000.
//!
//! Its ideal is the schedule a pool with no overhead at all would achieve: the same jobs, in
//! the order the queue hands them out (oldest due first, then by id), each started on the
//! first of the 1,000 slots to come free. The mock's latency for a (prompt, run) is
//! deterministic ([`crate::providers::mock_latency`]), so the bench computes that schedule
//! from the very draws the run makes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use crate::app::App;
use crate::domain::spec::MockBehaviour;
use crate::providers::mock_latency;

pub const CONCURRENCY: usize = 1000;
pub const PROMPTS: usize = 4000;
pub const RUNS: i32 = 5;
pub const MEDIAN_MS: u64 = 1000;
pub const P99_MS: u64 = 20_000;

/// The mock model's params for W4.
pub fn model_params() -> serde_json::Value {
    serde_json::json!({"latencyMs": MEDIAN_MS, "latencyP99Ms": P99_MS})
}

/// The makespan of the jobs' latencies, in claim order, on `CONCURRENCY` slots with no
/// overhead.
pub async fn ideal_seconds(app: &App) -> anyhow::Result<f64> {
    let behaviour = MockBehaviour {
        latency_ms: MEDIAN_MS,
        latency_p99_ms: Some(P99_MS),
        ..MockBehaviour::default()
    };
    let texts: HashMap<i64, String> = app
        .prompts()
        .await?
        .into_iter()
        .map(|prompt| (prompt.id, prompt.text))
        .collect();
    // Only the keys the order and the latency need: the full rows of 20,000 jobs would be
    // the largest thing this process ever holds, and its peak RSS is what W4 reports.
    let mut jobs = super::each_job(app, |job| {
        (job.next_attempt_at, job.id, job.prompt_id, job.run_index)
    })
    .await?;
    jobs.sort_unstable();
    let mut latencies = Vec::with_capacity(jobs.len());
    for &(_, id, prompt_id, run_index) in &jobs {
        let text = texts
            .get(&prompt_id)
            .ok_or_else(|| anyhow::anyhow!("job {id} has no prompt"))?;
        latencies.push(mock_latency(&behaviour, text, run_index));
    }
    Ok(makespan(&latencies, CONCURRENCY).as_secs_f64())
}

/// List scheduling: each job starts on the earliest free slot.
fn makespan(latencies: &[Duration], slots: usize) -> Duration {
    let mut free_at: BinaryHeap<Reverse<Duration>> =
        std::iter::repeat_n(Reverse(Duration::ZERO), slots.max(1)).collect();
    let mut end = Duration::ZERO;
    for &latency in latencies {
        let Some(Reverse(start)) = free_at.pop() else {
            break;
        };
        let done = start + latency;
        end = end.max(done);
        free_at.push(Reverse(done));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makespan_is_the_list_schedule() {
        let ms = Duration::from_millis;
        assert_eq!(makespan(&[ms(5), ms(5), ms(5)], 2), ms(10));
        assert_eq!(makespan(&[ms(10), ms(1), ms(1), ms(1)], 2), ms(10));
        assert_eq!(makespan(&[ms(1), ms(1), ms(1), ms(10)], 2), ms(11));
        assert_eq!(makespan(&[], 3), Duration::ZERO);
    }
}
