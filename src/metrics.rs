//! The process's counters, in the Prometheus text format (`GET /metrics`).
//!
//! Counters are `prometheus-client` counters bumped on the job path (claims, finishes,
//! retries, rescues, 429s, tokens, cost) and a latency histogram per model; what the database
//! knows (jobs by status, queue depth, the oldest queued job's age) is read from the database
//! at most once per [`GAUGE_TTL`] and shared by every scrape in that period
//! ([`Metrics::gauges`]), so an open `/metrics` costs the database nothing however often it is
//! scraped. The library writes the exposition; this module names the families. Counting must
//! stay cheap: no allocation on the hot path but the first observation of a model.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{Finish, JobId, Outcome, Summary};

/// The Prometheus text exposition format's content type (version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A counter of this process: bumped and read as the atomic it holds (`fetch_add`, `load`),
/// exposed as the library's counter.
#[derive(Debug, Clone, Default)]
pub struct Count(Counter<u64, AtomicU64>);

impl Deref for Count {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        self.0.inner()
    }
}

/// Counters of this process since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub claimed: Count,
    pub succeeded: Count,
    pub failed: Count,
    pub retried: Count,
    pub rate_limited: Count,
    pub stale: Count,
    pub rescued: Count,
    pub released: Count,
    pub prompt_tokens: Count,
    pub completion_tokens: Count,
    /// Cost in millionths of a US dollar: whole numbers add up exactly, floats would drift.
    pub cost_micro_usd: Count,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Finishes by (outcome, model): model names come from the catalog, so the series stay few.
    finishes: Mutex<BTreeMap<(&'static str, String), Count>>,
    /// The model of each attempt whose finish is on its way to the database, so that the
    /// finish is counted under it ([`Metrics::note_attempt_model`]).
    attempt_models: Mutex<HashMap<(JobId, i32), String>>,
    /// Database reads of the gauges (each one aggregate statement).
    pub gauge_refreshes: Count,
    /// The last gauges read and when; the async lock makes concurrent scrapes of a stale
    /// cache wait for one read instead of each starting its own.
    gauge_cache: tokio::sync::Mutex<Option<(Instant, QueueGauges)>>,
}

/// How long gauges read from the database are served before they are read again.
pub const GAUGE_TTL: Duration = Duration::from_secs(5);

/// What the database says at scrape time.
#[derive(Debug, Clone, Default)]
pub struct QueueGauges {
    pub jobs: Summary,
    /// Queued jobs due now.
    pub due: i64,
    /// Age of the oldest due queued job, in seconds.
    pub oldest_due_age_seconds: f64,
    pub expired_leases: i64,
    /// The scopes paused now (`provider:openai`, `model:3`, …).
    pub paused: Vec<String>,
}

/// One family whose members, told apart by one label, live elsewhere (the counters above, the
/// histograms by model, the gauges of one scrape).
#[derive(Debug)]
struct ByLabel<M> {
    label: &'static str,
    kind: MetricType,
    members: Vec<(String, M)>,
}

impl<M: EncodeMetric> EncodeMetric for ByLabel<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, metric) in &self.members {
            let labels = [(self.label, value.as_str())];
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// One family whose members are told apart by several labels.
#[derive(Debug)]
struct ByLabels<M> {
    kind: MetricType,
    members: Vec<(Vec<(&'static str, String)>, M)>,
}

impl<M: EncodeMetric> EncodeMetric for ByLabels<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, metric) in &self.members {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a counter's writer panicked; the counts are still whole.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn by_label<M>(label: &'static str, kind: MetricType, members: Vec<(&str, M)>) -> ByLabel<M> {
    ByLabel {
        label,
        kind,
        members: members
            .into_iter()
            .map(|(value, metric)| (value.to_owned(), metric))
            .collect(),
    }
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
        if let Some((at, gauges)) = &*cache
            && at.elapsed() < GAUGE_TTL
        {
            return Ok(gauges.clone());
        }
        self.gauge_refreshes.fetch_add(1, Ordering::Relaxed);
        let gauges = read().await?;
        *cache = Some((Instant::now(), gauges.clone()));
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
        let mut histograms = self
            .latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let histogram = match histograms.get(model) {
            Some(h) => h,
            None => histograms
                .entry(model.to_owned())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS)),
        };
        histogram.observe(latency.as_secs_f64());
    }

    /// Remembers that `finish` is an attempt of `model`, until [`Metrics::observe_finish`]
    /// counts it.
    pub fn note_attempt_model(&self, finish: &Finish, model: &str) {
        lock(&self.attempt_models).insert((finish.job_id, finish.attempt), model.to_owned());
    }

    /// Counts a written finish by what it did, under its model (noted before).
    pub fn observe_finish(&self, finish: &Finish, applied: bool) {
        let (counter, outcome) = if !applied {
            (&self.stale, "stale")
        } else {
            match finish.outcome {
                Outcome::Succeeded(_) => (&self.succeeded, "succeeded"),
                Outcome::Retry { .. } => (&self.retried, "retry"),
                Outcome::Failed(_) => (&self.failed, "failed"),
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let model = lock(&self.attempt_models)
            .remove(&(finish.job_id, finish.attempt))
            .unwrap_or_else(|| "unknown".to_owned());
        lock(&self.finishes)
            .entry((outcome, model))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of these counters and `gauges`.
    pub fn render(&self, gauges: &QueueGauges) -> Result<String, std::fmt::Error> {
        // A registry per scrape: its families share the live counters (a clone is a handle)
        // and hold this scrape's gauges.
        let mut registry = Registry::default();
        let jobs = gauges.jobs;
        registry.register(
            "promptq_jobs",
            "Jobs in the database by status",
            by_label(
                "status",
                MetricType::Gauge,
                vec![
                    ("queued", ConstGauge::new(jobs.queued)),
                    ("processing", ConstGauge::new(jobs.processing)),
                    ("submitted", ConstGauge::new(jobs.submitted)),
                    ("succeeded", ConstGauge::new(jobs.succeeded)),
                    ("failed", ConstGauge::new(jobs.failed)),
                    ("skipped", ConstGauge::new(jobs.skipped)),
                ],
            ),
        );
        registry.register(
            "promptq_queue_depth",
            "Queued jobs due now",
            ConstGauge::new(gauges.due),
        );
        registry.register(
            "promptq_oldest_queued_age_seconds",
            "Age of the oldest queued job that is due",
            ConstGauge::new(gauges.oldest_due_age_seconds),
        );
        registry.register(
            "promptq_expired_leases",
            "Processing jobs whose lease expired, waiting for a rescue",
            ConstGauge::new(gauges.expired_leases),
        );
        // Counters are registered without `_total`: the encoder appends it.
        for (name, help, count) in [
            (
                "promptq_gauge_refreshes",
                "Reads of the gauges above from the database (at most one per 5 s)",
                &self.gauge_refreshes,
            ),
            (
                "promptq_claims",
                "Jobs claimed by this process",
                &self.claimed,
            ),
        ] {
            registry.register(name, help, count.0.clone());
        }
        let finishes = lock(&self.finishes)
            .iter()
            .map(|((outcome, model), count)| {
                (
                    vec![("outcome", (*outcome).to_owned()), ("model", model.clone())],
                    count.0.clone(),
                )
            })
            .collect();
        registry.register(
            "promptq_finishes",
            "Attempts finished by this process, by outcome and model",
            ByLabels {
                kind: MetricType::Counter,
                members: finishes,
            },
        );
        registry.register(
            "promptq_paused",
            "1 for each scope (provider, endpoint, model) paused now: rate limited or an account error",
            by_label(
                "scope",
                MetricType::Gauge,
                gauges
                    .paused
                    .iter()
                    .map(|scope| (scope.as_str(), ConstGauge::new(1i64)))
                    .collect(),
            ),
        );
        for (name, help, count) in [
            (
                "promptq_retries",
                "Attempts that ended in a retry",
                &self.retried,
            ),
            (
                "promptq_rescues",
                "Jobs rescued from expired leases by this process",
                &self.rescued,
            ),
            (
                "promptq_released",
                "Jobs handed back to the queue without spending an attempt",
                &self.released,
            ),
            (
                "promptq_rate_limited",
                "Model calls answered 429",
                &self.rate_limited,
            ),
        ] {
            registry.register(name, help, count.0.clone());
        }
        registry.register(
            "promptq_tokens",
            "Tokens used by successful calls",
            by_label(
                "kind",
                MetricType::Counter,
                vec![
                    ("prompt", self.prompt_tokens.0.clone()),
                    ("completion", self.completion_tokens.0.clone()),
                ],
            ),
        );
        let micro_usd = self.cost_micro_usd.load(Ordering::Relaxed);
        registry.register(
            "promptq_cost_usd",
            "Cost reported by providers, in US dollars",
            ConstCounter::new(micro_usd as f64 / 1e6),
        );
        let histograms = self
            .latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(model, h)| (model.clone(), h.clone()))
            .collect();
        registry.register(
            "promptq_model_latency_seconds",
            "Duration of model calls",
            ByLabel {
                label: "model",
                kind: MetricType::Histogram,
                members: histograms,
            },
        );
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
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
        metrics.note_attempt_model(&ok, "gpt-a");
        metrics.note_attempt_model(&limited, "gpt-b");
        metrics.observe_finish(&ok, true);
        metrics.observe_finish(&limited, true);
        let text = metrics
            .render(&QueueGauges {
                due: 3,
                oldest_due_age_seconds: 1.5,
                paused: vec!["provider:openai".into(), "model:2".into()],
                ..QueueGauges::default()
            })
            .expect("the exposition encodes");
        let samples = parse(&text);
        assert_eq!(samples["promptq_queue_depth"], 3.0);
        assert_eq!(samples["promptq_rate_limited_total"], 1.0);
        assert_eq!(
            samples["promptq_finishes_total{outcome=\"retry\",model=\"gpt-b\"}"],
            1.0
        );
        assert_eq!(
            samples["promptq_finishes_total{outcome=\"succeeded\",model=\"gpt-a\"}"],
            1.0
        );
        assert_eq!(samples["promptq_paused{scope=\"provider:openai\"}"], 1.0);
        assert_eq!(samples["promptq_paused{scope=\"model:2\"}"], 1.0);
        // Noted models are forgotten once counted.
        assert!(lock(&metrics.attempt_models).is_empty());
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
