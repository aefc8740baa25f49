//! The `mock` model: answers locally, deterministically, without a network or a key, so the
//! demo and the benchmarks run anywhere.
//!
//! The text depends only on the prompt and the run index (a retry repeats the same answer);
//! whether an attempt fails depends on the prompt, the run index *and* the attempt number,
//! so with `failRate` below 1 a retried job eventually succeeds, the same way on every run.
//! Usage figures follow the usual rough rule of four characters a token. Params:
//! `latencyMs` (a tokio sleep, only when above zero, cut at the call timeout like a real
//! call; with `latencyP99Ms` it is the median of a log-normal spread, the heavy tail of real
//! model calls, drawn per prompt and run), `failRate` (0 to 1, failures are retryable),
//! `maxTokens` (a longer answer is cut and finishes with `length`), and `answers: "brands"`
//! (answers naming brands in a list, with links, varied per model and batch too: see
//! [`super::mock_brands`]). It must stay cheap: one small string per call, no
//! other allocation, no I/O, and it never touches the network.

use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::domain::Model;
use crate::domain::spec::MockBehaviour;

use super::error::{ErrorKind, ProviderError, human_duration};
use super::{Completion, Usage};

const VOCABULARY: [&str; 32] = [
    "queue", "batch", "model", "answer", "prompt", "token", "retry", "schedule", "worker", "lease",
    "result", "signal", "latency", "budget", "stream", "cache", "context", "window", "sample",
    "metric", "insight", "summary", "pattern", "response", "request", "measure", "detail",
    "example", "outline", "concept", "evidence", "estimate",
];

/// OpenAI-style chat framing costs a few tokens on top of the prompt itself.
const CHAT_OVERHEAD_TOKENS: i64 = 7;

/// Answers `prompt` as the mock model would, after the simulated latency.
#[allow(clippy::too_many_arguments)] // what identifies the call (prompt, run, attempt, batch) and its settings
pub(super) async fn complete(
    model: &Model,
    params: &MockBehaviour,
    max_tokens: Option<u64>,
    prompt: &str,
    run_index: i32,
    attempt: i32,
    batch_key: &str,
    timeout: Duration,
) -> Result<Completion, ProviderError> {
    let started = Instant::now();
    if params.latency_ms > 0 {
        let latency = latency(params, prompt, run_index);
        tokio::time::sleep(latency.min(timeout)).await;
        if latency > timeout {
            return Err(ProviderError::new(
                ErrorKind::Retryable,
                format!("mock timed out after {}", human_duration(timeout)),
            ));
        }
    }
    if fails(prompt, run_index, attempt, params.fail_rate) {
        return Err(ProviderError::new(
            ErrorKind::Retryable,
            format!(
                "mock simulated failure (failRate {}, run {run_index}, attempt {attempt})",
                params.fail_rate
            ),
        ));
    }
    let mut completion = if params.brands {
        brands_answer(model, prompt, run_index, batch_key, max_tokens)
    } else {
        answer(model, prompt, run_index, max_tokens)
    };
    completion.latency = started.elapsed();
    Ok(completion)
}

/// How long a call for (prompt, run) takes: `latencyMs`, or with `latencyP99Ms` a draw from
/// the log-normal distribution with that median and 99th percentile (`σ = ln(p99 / median) /
/// 2.3263`), cut at three times the 99th percentile as a client's timeout would cut it.
/// Deterministic, so that a benchmark can compute the ideal schedule of the same draws.
pub fn latency(params: &MockBehaviour, prompt: &str, run_index: i32) -> Duration {
    let median = params.latency_ms as f64;
    let Some(p99) = params.latency_p99_ms.filter(|&p99| p99 > params.latency_ms) else {
        return Duration::from_millis(params.latency_ms);
    };
    const Z_99: f64 = 2.326_347_874;
    let sigma = (p99 as f64 / median).ln() / Z_99;
    let seed = mix(hash_text(prompt) ^ 0x1a7e ^ (run_index as u64).wrapping_mul(0x9e37_79b9));
    // Box–Muller from two uniforms in (0, 1].
    let unit = |h: u64| ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let (u1, u2) = (unit(seed), unit(mix(seed)));
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let ms = (median * (sigma * z).exp()).min(3.0 * p99 as f64);
    Duration::from_millis(ms.round() as u64)
}

/// Whether this attempt fails: a fixed hash of (prompt, run, attempt) read as a number in
/// [0, 1) and compared with the rate, so 0 never fails and 1 always does.
pub(super) fn fails(prompt: &str, run_index: i32, attempt: i32, fail_rate: f64) -> bool {
    if fail_rate <= 0.0 {
        return false;
    }
    let h = mix(mix(hash_text(prompt) ^ 0x5eed) ^ run_index as u64 ^ ((attempt as u64) << 32));
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    unit < fail_rate
}

/// The answer itself, deterministic in (prompt, run index).
pub(super) fn answer(
    model: &Model,
    prompt: &str,
    run_index: i32,
    max_tokens: Option<u64>,
) -> Completion {
    let seed = mix(hash_text(prompt) ^ (run_index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let word_count = 12 + (seed % 37) as usize;
    let mut text = String::with_capacity(96 + prompt.len().min(120) + word_count * 9);
    // Writing into a String cannot fail.
    let _ = write!(text, "Mock answer (run {run_index}) to \"");
    for (i, word) in prompt.split_whitespace().take(6).enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(word);
    }
    text.push_str("\":");
    let mut state = seed;
    for i in 0..word_count {
        state = mix(state.wrapping_add(i as u64));
        text.push(' ');
        text.push_str(VOCABULARY[(state % VOCABULARY.len() as u64) as usize]);
    }
    text.push('.');
    finish(model, prompt, text, seed, max_tokens)
}

/// The `answers: "brands"` answer, deterministic in (prompt, model, run, batch).
pub(super) fn brands_answer(
    model: &Model,
    prompt: &str,
    run_index: i32,
    batch_key: &str,
    max_tokens: Option<u64>,
) -> Completion {
    let seed = mix(hash_text(prompt)
        ^ hash_text(&model.model).rotate_left(17)
        ^ hash_text(batch_key).rotate_left(31)
        ^ (run_index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut state = seed;
    let text = super::mock_brands::text(prompt, || {
        state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
        state
    });
    finish(model, prompt, text, seed, max_tokens)
}

/// The completion around `text`: cut at `max_tokens`, with its usage.
fn finish(
    model: &Model,
    prompt: &str,
    mut text: String,
    seed: u64,
    max_tokens: Option<u64>,
) -> Completion {
    let mut finish_reason = "stop";
    let mut completion_tokens = estimate_tokens(&text);
    if let Some(max) = max_tokens.and_then(|m| i64::try_from(m).ok())
        && completion_tokens > max
    {
        let cut = text
            .char_indices()
            .nth(usize::try_from(max * 4).unwrap_or(usize::MAX))
            .map_or(text.len(), |(i, _)| i);
        text.truncate(cut);
        completion_tokens = max;
        finish_reason = "length";
    }
    let prompt_tokens = estimate_tokens(prompt) + CHAT_OVERHEAD_TOKENS;
    Completion {
        text,
        served_model: Some(model.model.clone()),
        finish_reason: Some(finish_reason.to_owned()),
        usage: Usage {
            prompt_tokens: Some(prompt_tokens),
            completion_tokens: Some(completion_tokens),
            total_tokens: Some(prompt_tokens + completion_tokens),
            cached_tokens: Some(0),
            reasoning_tokens: Some(0),
        },
        // A mock call costs nothing, and saying so keeps the cost column honest; given a
        // price (to try budgets and estimates), it costs its tokens at that price instead.
        cost_usd: model.spec.spend().price.is_none().then_some(0.0),
        latency: Duration::ZERO,
        request_id: Some(format!("mock-{seed:016x}")),
        citations: None,
        raw: None,
        http_status: None,
        rate_limit: None,
    }
}

/// Four characters a token, at least one.
fn estimate_tokens(text: &str) -> i64 {
    let chars = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
    (chars / 4).max(1)
}

/// FNV-1a: fixed across Rust versions and platforms, unlike `DefaultHasher`.
fn hash_text(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads nearby inputs (run 1, run 2) far apart.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderKind;
    use serde_json::json;

    fn model() -> Model {
        Model {
            id: 1,
            name: "mock".into(),
            provider: ProviderKind::Mock,
            model: "mock-1".into(),
            params: json!({}),
            active: true,
            created_at: chrono::Utc::now(),
            spec: Default::default(),
        }
    }

    #[test]
    fn answers_are_deterministic_per_prompt_and_run() {
        let m = model();
        let a = answer(&m, "What is a queue?", 0, None);
        assert_eq!(a, answer(&m, "What is a queue?", 0, None));
        assert_ne!(a.text, answer(&m, "What is a queue?", 1, None).text);
        assert_ne!(a.text, answer(&m, "What is a stack?", 0, None).text);
        assert!(
            a.text
                .starts_with("Mock answer (run 0) to \"What is a queue?\":")
        );
        assert_eq!(a.served_model.as_deref(), Some("mock-1"));
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn brand_answers_vary_by_model_and_batch_but_not_by_attempt() {
        let m = model();
        let prompt = "What is the best CRM for a small business?";
        let a = brands_answer(&m, prompt, 0, "2025-10-14", None);
        assert_eq!(a, brands_answer(&m, prompt, 0, "2025-10-14", None));
        let other_batches: std::collections::HashSet<String> = (15..25)
            .map(|d| brands_answer(&m, prompt, 0, &format!("2025-10-{d}"), None).text)
            .collect();
        assert!(other_batches.len() > 5, "{other_batches:?}");
        let mut other = model();
        other.model = "mock-2".into();
        let b = brands_answer(&other, prompt, 0, "2025-10-14", None);
        let c = brands_answer(&m, prompt, 1, "2025-10-14", None);
        assert!(a.text != b.text || a.text != c.text);
        assert!(
            a.text.contains("1. ") && a.text.contains("https://"),
            "{}",
            a.text
        );
    }

    #[test]
    fn usage_figures_add_up() {
        let prompt = "Summarise the history of job queues in three sentences.";
        let a = answer(&model(), prompt, 2, None);
        let usage = a.usage;
        assert_eq!(usage.prompt_tokens, Some(prompt.len() as i64 / 4 + 7));
        let completion = usage.completion_tokens.unwrap();
        assert!((10..=100).contains(&completion), "{completion}");
        assert_eq!(
            usage.total_tokens,
            Some(usage.prompt_tokens.unwrap() + completion)
        );
        assert_eq!(a.cost_usd, Some(0.0));
        assert_eq!(a.http_status, None);
    }

    #[test]
    fn max_tokens_cuts_the_answer_with_length() {
        let a = answer(&model(), "Tell me everything", 0, Some(3));
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert_eq!(a.usage.completion_tokens, Some(3));
        assert_eq!(a.text.chars().count(), 12);
    }

    #[test]
    fn fail_rate_zero_never_fails_and_one_always_does() {
        for attempt in 1..50 {
            assert!(!fails("p", 0, attempt, 0.0));
            assert!(fails("p", 0, attempt, 1.0));
        }
    }

    #[test]
    fn failures_are_deterministic_and_depend_on_the_attempt() {
        let decisions: Vec<bool> = (1..=200).map(|a| fails("prompt", 3, a, 0.5)).collect();
        let again: Vec<bool> = (1..=200).map(|a| fails("prompt", 3, a, 0.5)).collect();
        assert_eq!(decisions, again);
        let failures = decisions.iter().filter(|f| **f).count();
        assert!(
            (60..=140).contains(&failures),
            "{failures} of 200 at rate 0.5"
        );
    }

    #[test]
    fn the_share_of_failures_follows_the_rate() {
        let prompts = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let failures = prompts
            .iter()
            .flat_map(|p| (0..100).map(move |run| fails(p, run, 1, 0.2)))
            .filter(|f| *f)
            .count();
        assert!(
            (150..=250).contains(&failures),
            "{failures} of 1000 at rate 0.2"
        );
    }

    #[test]
    fn heavy_tailed_latency_has_the_asked_median_and_99th_percentile() {
        let params = MockBehaviour {
            latency_ms: 1000,
            latency_p99_ms: Some(20_000),
            ..MockBehaviour::default()
        };
        let mut draws: Vec<u128> = (0..20_000)
            .map(|i| latency(&params, &format!("prompt {}", i / 5), i % 5).as_millis())
            .collect();
        draws.sort_unstable();
        let (median, p99, max) = (draws[10_000], draws[19_800], draws[19_999]);
        assert!((900..1100).contains(&median), "median {median} ms");
        assert!((16_000..25_000).contains(&p99), "p99 {p99} ms");
        assert_eq!(max, 60_000, "cut at three times the 99th percentile");
        assert_eq!(
            latency(&params, "prompt 7", 3),
            latency(&params, "prompt 7", 3)
        );
        let fixed = MockBehaviour {
            latency_ms: 200,
            ..MockBehaviour::default()
        };
        assert_eq!(latency(&fixed, "any", 0), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn latency_is_simulated_and_cut_at_the_timeout() {
        let m = model();
        let slow = MockBehaviour {
            latency_ms: 40,
            ..MockBehaviour::default()
        };
        let started = Instant::now();
        let ok = complete(&m, &slow, None, "p", 0, 1, "", Duration::from_secs(5)).await;
        assert!(ok.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(40));
        let err = complete(&m, &slow, None, "p", 0, 1, "", Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Retryable);
        assert!(err.message.contains("timed out"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retryable_and_a_later_one_can_succeed() {
        let m = model();
        let flaky = MockBehaviour {
            fail_rate: 0.5,
            ..MockBehaviour::default()
        };
        let mut outcomes = Vec::new();
        for attempt in 1..=20 {
            outcomes.push(
                complete(
                    &m,
                    &flaky,
                    None,
                    "flaky",
                    0,
                    attempt,
                    "",
                    Duration::from_secs(1),
                )
                .await,
            );
        }
        assert!(outcomes.iter().any(Result::is_ok));
        let err = outcomes
            .iter()
            .find_map(|o| o.as_ref().err())
            .expect("some attempt fails at rate 0.5");
        assert!(err.is_retryable());
        assert!(err.message.contains("simulated failure"), "{}", err.message);
    }
}
