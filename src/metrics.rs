//! The process's counters, in the Prometheus text format (`GET /metrics`).
//!
//! Counters are atomics bumped on the job path (claims, finishes, retries, rescues, 429s,
//! tokens, cost) and a latency histogram per model; what the database knows (jobs by status,
//! queue depth, the oldest queued job's age) is read from the database at most once per
//! [`GAUGE_TTL`] and shared by every scrape in that period ([`Metrics::gauges`]), so an open
//! `/metrics` costs the database nothing however often it is scraped. Counting must stay
//! cheap: no allocation on the hot path but the first observation of a model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::{Finish, Outcome, Summary};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Counters of this process since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub claimed: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub rate_limited: AtomicU64,
    pub stale: AtomicU64,
    pub rescued: AtomicU64,
    pub released: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Cost in millionths of a US dollar.
    pub cost_micro_usd: AtomicU64,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Database reads of the gauges (each one aggregate statement).
    pub gauge_refreshes: AtomicU64,
    /// The last gauges read and when; the async lock makes concurrent scrapes of a stale
    /// cache wait for one read instead of each starting its own.
    gauge_cache: tokio::sync::Mutex<Option<(Instant, QueueGauges)>>,
}

/// How long gauges read from the database are served before they are read again.
pub const GAUGE_TTL: Duration = Duration::from_secs(5);

/// What the database says at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueGauges {
    pub jobs: Summary,
    /// Queued jobs due now.
    pub due: i64,
    /// Age of the oldest due queued job, in seconds.
    pub oldest_due_age_seconds: f64,
    pub expired_leases: i64,
}

impl Metrics {
    /// The queue's gauges, read with `read` when the cached ones are older than [`GAUGE_TTL`].
    /// One read at a time: scrapes that arrive while it runs wait for it and share its answer.
    /// A failed read is not cached, so the next scrape tries again.
    pub async fn gauges<E>(
        &self,
        read: impl AsyncFnOnce() -> Result<QueueGauges, E>,
    ) -> Result<QueueGauges, E> {
        let mut cache = self.gauge_cache.lock().await;
        if let Some((at, gauges)) = *cache
            && at.elapsed() < GAUGE_TTL
        {
            return Ok(gauges);
        }
        self.gauge_refreshes.fetch_add(1, Ordering::Relaxed);
        let gauges = read().await?;
        *cache = Some((Instant::now(), gauges));
        Ok(gauges)
    }

    /// Counts one model call of `model` that took `latency` and ended as `finish`.
    pub fn observe_call(&self, model: &str, latency: Duration, finish: &Finish) {
        match &finish.outcome {
            Outcome::Succeeded(response) => {
                let tokens = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
                self.prompt_tokens
                    .fetch_add(tokens(response.prompt_tokens), Ordering::Relaxed);
                self.completion_tokens
                    .fetch_add(tokens(response.completion_tokens), Ordering::Relaxed);
                if let Some(cost) = response.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
                    self.cost_micro_usd
                        .fetch_add((cost * 1e6).round() as u64, Ordering::Relaxed);
                }
            }
            Outcome::Retry { error, .. } | Outcome::Failed(error) => {
                if error.http_status == Some(429) {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let seconds = latency.as_secs_f64();
        let mut histograms = self
            .latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let histogram = match histograms.get_mut(model) {
            Some(h) => h,
            None => histograms.entry(model.to_owned()).or_default(),
        };
        histogram.count += 1;
        histogram.sum_seconds += seconds;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            histogram.buckets[i] += 1;
        }
    }

    /// Counts a written finish by what it did.
    pub fn observe_finish(&self, finish: &Finish, applied: bool) {
        let counter = if !applied {
            &self.stale
        } else {
            match finish.outcome {
                Outcome::Succeeded(_) => &self.succeeded,
                Outcome::Retry { .. } => &self.retried,
                Outcome::Failed(_) => &self.failed,
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of these counters and `gauges`.
    pub fn render(&self, gauges: &QueueGauges) -> String {
        let mut out = String::with_capacity(4096);
        let jobs = gauges.jobs;
        out.push_str(
            "# HELP promptq_jobs Jobs in the database by status.\n# TYPE promptq_jobs gauge\n",
        );
        for (status, count) in [
            ("queued", jobs.queued),
            ("processing", jobs.processing),
            ("succeeded", jobs.succeeded),
            ("failed", jobs.failed),
            ("skipped", jobs.skipped),
        ] {
            let _ = writeln!(out, "promptq_jobs{{status=\"{status}\"}} {count}");
        }
        gauge(
            &mut out,
            "promptq_queue_depth",
            "Queued jobs due now.",
            gauges.due as f64,
        );
        gauge(
            &mut out,
            "promptq_oldest_queued_age_seconds",
            "Age of the oldest queued job that is due.",
            gauges.oldest_due_age_seconds,
        );
        gauge(
            &mut out,
            "promptq_expired_leases",
            "Processing jobs whose lease expired, waiting for a rescue.",
            gauges.expired_leases as f64,
        );
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "promptq_gauge_refreshes_total",
            "Reads of the gauges above from the database (at most one per 5 s).",
            load(&self.gauge_refreshes),
        );
        counter(
            &mut out,
            "promptq_claims_total",
            "Jobs claimed by this process.",
            load(&self.claimed),
        );
        let _ = write!(
            out,
            "# HELP promptq_finishes_total Attempts finished by this process, by outcome.\n# TYPE promptq_finishes_total counter\n\
             promptq_finishes_total{{outcome=\"succeeded\"}} {}\n\
             promptq_finishes_total{{outcome=\"retry\"}} {}\n\
             promptq_finishes_total{{outcome=\"failed\"}} {}\n\
             promptq_finishes_total{{outcome=\"stale\"}} {}\n",
            load(&self.succeeded),
            load(&self.retried),
            load(&self.failed),
            load(&self.stale)
        );
        counter(
            &mut out,
            "promptq_retries_total",
            "Attempts that ended in a retry.",
            load(&self.retried),
        );
        counter(
            &mut out,
            "promptq_rescues_total",
            "Jobs rescued from expired leases by this process.",
            load(&self.rescued),
        );
        counter(
            &mut out,
            "promptq_released_total",
            "Jobs handed back to the queue without spending an attempt.",
            load(&self.released),
        );
        counter(
            &mut out,
            "promptq_rate_limited_total",
            "Model calls answered 429.",
            load(&self.rate_limited),
        );
        let _ = write!(
            out,
            "# HELP promptq_tokens_total Tokens used by successful calls.\n# TYPE promptq_tokens_total counter\n\
             promptq_tokens_total{{kind=\"prompt\"}} {}\n\
             promptq_tokens_total{{kind=\"completion\"}} {}\n",
            load(&self.prompt_tokens),
            load(&self.completion_tokens)
        );
        let _ = write!(
            out,
            "# HELP promptq_cost_usd_total Cost reported by providers, in US dollars.\n# TYPE promptq_cost_usd_total counter\npromptq_cost_usd_total {}\n",
            load(&self.cost_micro_usd) as f64 / 1e6
        );
        out.push_str("# HELP promptq_model_latency_seconds Duration of model calls.\n# TYPE promptq_model_latency_seconds histogram\n");
        let histograms = self
            .latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (model, h) in histograms.iter() {
            let model = escape_label(model);
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "promptq_model_latency_seconds_bucket{{model=\"{model}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "promptq_model_latency_seconds_bucket{{model=\"{model}\",le=\"+Inf\"}} {}\n\
                 promptq_model_latency_seconds_sum{{model=\"{model}\"}} {}\n\
                 promptq_model_latency_seconds_count{{model=\"{model}\"}} {}",
                h.count, h.sum_seconds, h.count
            );
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}

/// Label values escape backslash, quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;

    use super::*;
    use crate::domain::{AttemptError, ErrorClass, NewResponse};

    /// A strict reader of the Prometheus text format (0.0.4) for what `render` writes:
    /// every sample belongs to a family whose TYPE came first, every value is a number,
    /// label values are quoted. Returns the samples by their full name with labels.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            let name = series.split('{').next().unwrap_or(series);
            if let Some(labels) = series.strip_prefix(name)
                && !labels.is_empty()
            {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (key, quoted) = pair.split_once('=').expect("label=value");
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(quoted.starts_with('"'), "{line}");
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| types.contains_key(*f)))
                .unwrap_or(name);
            assert!(types.contains_key(family), "{name} has no TYPE before it");
            samples.insert(series.to_owned(), value);
        }
        samples
    }

    #[test]
    fn the_exposition_parses_as_prometheus_text() {
        let metrics = Metrics::default();
        let now = Utc::now();
        let ok = Finish {
            job_id: 1,
            attempt: 1,
            finished_at: now,
            outcome: Outcome::Succeeded(Box::new(NewResponse {
                prompt_tokens: Some(10),
                completion_tokens: Some(5),
                cost_usd: Some(0.25),
                ..NewResponse::default()
            })),
        };
        let limited = Finish {
            job_id: 2,
            attempt: 1,
            finished_at: now,
            outcome: Outcome::Retry {
                at: now,
                error: AttemptError {
                    class: ErrorClass::RateLimited,
                    http_status: Some(429),
                    message: "slow down".into(),
                },
                refund_attempt: true,
            },
        };
        metrics.observe_call("gpt \"quoted\"", Duration::from_millis(120), &ok);
        metrics.observe_call("gpt \"quoted\"", Duration::from_secs(400), &limited);
        metrics.observe_finish(&ok, true);
        metrics.observe_finish(&limited, true);
        let text = metrics.render(&QueueGauges {
            due: 3,
            oldest_due_age_seconds: 1.5,
            ..QueueGauges::default()
        });
        let samples = parse(&text);
        assert_eq!(samples["promptq_queue_depth"], 3.0);
        assert_eq!(samples["promptq_rate_limited_total"], 1.0);
        assert_eq!(samples["promptq_finishes_total{outcome=\"retry\"}"], 1.0);
        assert_eq!(samples["promptq_tokens_total{kind=\"prompt\"}"], 10.0);
        assert_eq!(samples["promptq_cost_usd_total"], 0.25);
        let model = "model=\"gpt \\\"quoted\\\"\"";
        assert_eq!(
            samples[&format!("promptq_model_latency_seconds_count{{{model}}}")],
            2.0
        );
        // Buckets are cumulative; the 400 s call lands only in +Inf.
        assert_eq!(
            samples[&format!("promptq_model_latency_seconds_bucket{{{model},le=\"0.25\"}}")],
            1.0
        );
        assert_eq!(
            samples[&format!("promptq_model_latency_seconds_bucket{{{model},le=\"120\"}}")],
            1.0
        );
        assert_eq!(
            samples[&format!("promptq_model_latency_seconds_bucket{{{model},le=\"+Inf\"}}")],
            2.0
        );
    }
}
