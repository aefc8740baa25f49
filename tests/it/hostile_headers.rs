//! No provider answer can wedge a job: arbitrary header values (huge, negative, NaN, dates in
//! the year 9999, garbage) thrown at the header parsers and the retry decision, and, over real
//! HTTP from a local provider that answers them, at the worker pool on SQLite and PostgreSQL.
//! Every job must end succeeded, failed, or queued within the cap on waits; none stays
//! `processing`; no pause outlasts the cap.

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use crate::support::scripted::{Answer, Scripted, seed_model, seed_prompts};
use crate::support::{self, RunningPool};
use promptq::domain::{ClaimedJob, Job, JobStatus, Model, Outcome, ProviderKind};
use promptq::engine::retry::{RetryPolicy, decide};
use promptq::providers::{
    ErrorKind, MAX_WAIT, ProviderError, RateLimitHint, parse_duration, retry_after,
};
use promptq::store::{JobFilter, Page};

const NAMES: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-reset",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-remaining",
];

/// The values seen in the wild to break things, always tried first.
const KNOWN_KILLERS: &[(&str, &str)] = &[
    ("retry-after", "1e20"),
    ("retry-after-ms", "-1"),
    ("x-ratelimit-reset-requests", "99999999h"),
    ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ("retry-after", "NaN"),
    ("retry-after", "99999999999"),
    ("x-ratelimit-reset", "1e300"),
    ("retry-after-ms", "1e30"),
];

/// Header values: numbers of every size and sign, Go durations, HTTP dates up to the year
/// 9999, the known killers, and printable garbage.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| format!("{v}000")),
        (
            any::<u64>(),
            prop::sample::select(vec!["h", "m", "s", "ms", "us", "ns", "h5m"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        (0i64..=253_402_300_799).prop_map(|secs| {
            DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
        }),
        prop::sample::select(
            KNOWN_KILLERS
                .iter()
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        ),
        prop::collection::vec(prop::char::range(' ', '~'), 0..24)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(NAMES.to_vec()).prop_map(str::to_owned),
            value(),
        ),
        1..4,
    )
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
        }
    }
    map
}

fn claimed(attempt: i32) -> ClaimedJob {
    let now = Utc::now();
    ClaimedJob {
        job: Job {
            id: 1,
            prompt_id: 1,
            model_id: 1,
            run_index: 0,
            batch_key: "2025-10-14".into(),
            status: JobStatus::Processing,
            error_message: None,
            attempt_count: attempt,
            max_attempts: 3,
            rate_limited_count: 0,
            scheduled_for: now,
            next_attempt_at: now,
            lease_expires_at: None,
            started_at: Some(now),
            finished_at: None,
            created_at: now,
            prompt_version: None,
            provider_batch_id: None,
        },
        attempt,
        prompt_text: "q".into(),
        model: std::sync::Arc::new(Model {
            id: 1,
            name: "m".into(),
            provider: ProviderKind::OpenAiCompatible,
            model: "m".into(),
            params: json!({}),
            active: true,
            created_at: now,
            spec: Default::default(),
        }),
    }
}

const PARSER_CASES: u32 = 4096;

/// The parsers and the retry decision, alone: no panic, no wait beyond the cap.
#[test]
fn parsers_and_the_retry_decision_cap_every_wait() {
    let mut runner = TestRunner::new(Config {
        cases: PARSER_CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        headers(),
        any::<u64>(),
        0u32..1_000_000_000,
        1i32..4,
        any::<bool>(),
        0i64..=253_402_300_799,
    );
    runner
        .run(&strategy, |(pairs, secs, nanos, attempt, limited, now)| {
            let map = header_map(&pairs);
            let now_sys = SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64);
            let asked = retry_after(&map, now_sys);
            prop_assert!(asked.is_none_or(|d| d <= MAX_WAIT), "{pairs:?} → {asked:?}");
            let hint = RateLimitHint::from_headers(&map, now_sys);
            if let Some(hint) = hint {
                for wait in [hint.reset_requests, hint.reset_tokens, hint.wait_hint()] {
                    prop_assert!(wait.is_none_or(|d| d <= MAX_WAIT), "{pairs:?} → {hint:?}");
                }
            }
            for (_, value) in &pairs {
                let parsed = parse_duration(value);
                prop_assert!(parsed.is_none_or(|d| d <= MAX_WAIT), "{value} → {parsed:?}");
            }
            // Whatever the error carries (even a wait no header could produce), the retry
            // lands within the cap.
            let error = ProviderError {
                kind: ErrorKind::Retryable,
                rate_limited: limited,
                account_level: false,
                retry_after: asked.or(Some(Duration::new(secs, nanos))),
                http_status: Some(429),
                message: "slow down".into(),
                rate_limit: hint.map(Box::new),
            };
            let finished = Utc::now();
            let policy = RetryPolicy::default();
            let finish = decide(
                &claimed(attempt),
                Err(error),
                finished,
                &policy,
                &mut rand::rng(),
            );
            if let Outcome::Retry { at, .. } = finish.outcome {
                prop_assert!(
                    at >= finished && at <= finished + TimeDelta::hours(1),
                    "{at}"
                );
            }
            Ok(())
        })
        .unwrap();
    eprintln!("header parser property: {PARSER_CASES} cases");
}

/// One pool case: a model whose provider answers `status` with `pairs` to the first three
/// calls (then 200), three jobs, the real pool. Settles when nothing is processing and no
/// queued job is due; then checks the invariants.
async fn pool_case(
    db: &support::TestDb,
    status: u16,
    pairs: &[(String, String)],
) -> Result<(), TestCaseError> {
    let provider = Scripted::start().await;
    let mut answer = Answer::status(status);
    for (name, value) in pairs {
        answer = answer.header(name, value);
    }
    for _ in 0..3 {
        provider.then(answer.clone());
    }
    let model = seed_model(&db.store, "hostile", &provider.base_url, json!({})).await;
    seed_prompts(&db.store, &[model.id], 3).await;
    let pool = RunningPool::start(&db.store, &db.url, &["--worker-concurrency", "3"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = JobFilter::default();
    let page = Page {
        limit: 100,
        offset: 0,
    };
    let settled = loop {
        let now = Utc::now();
        let jobs = db.store.jobs_list(&all, page).await.unwrap();
        let busy = jobs.iter().any(|j| {
            j.status == JobStatus::Processing
                || (j.status == JobStatus::Queued && j.next_attempt_at <= now)
        });
        if provider.requests() >= 1 && !busy {
            break Some(jobs);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let now = Utc::now();
    let pauses = db.store.pauses_active(now).await.unwrap();
    pool.stop().await;
    let Some(jobs) = settled else {
        let jobs = db.store.jobs_list(&all, page).await.unwrap();
        return Err(TestCaseError::fail(format!(
            "{status} {pairs:?}: jobs never settled (a job stuck processing?): {:?}",
            jobs.iter()
                .map(|j| (j.status, j.next_attempt_at))
                .collect::<Vec<_>>()
        )));
    };
    let cap = now + TimeDelta::from_std(MAX_WAIT).unwrap() + TimeDelta::seconds(5);
    for job in &jobs {
        prop_assert!(
            matches!(
                job.status,
                JobStatus::Succeeded | JobStatus::Failed | JobStatus::Queued
            ),
            "{status} {pairs:?}: job {} is {}",
            job.id,
            job.status
        );
        if job.status == JobStatus::Queued {
            prop_assert!(
                job.next_attempt_at <= cap,
                "{status} {pairs:?}: job {} rescheduled to {}",
                job.id,
                job.next_attempt_at
            );
        }
    }
    for pause in &pauses {
        prop_assert!(
            pause.until <= cap,
            "{status} {pairs:?}: paused until {}",
            pause.until
        );
    }
    Ok(())
}

/// The known killers, then `random` generated cases, each on a fresh database.
async fn pool_property(fresh: impl AsyncFn() -> Option<support::TestDb>, random: u32) {
    let mut cases: Vec<(u16, Vec<(String, String)>)> = KNOWN_KILLERS
        .iter()
        .flat_map(|(name, value)| {
            [429u16, 200].map(|status| (status, vec![(name.to_string(), value.to_string())]))
        })
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: random,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (prop::sample::select(vec![429u16, 503, 200, 401]), headers());
    for _ in 0..random {
        let tree = strategy.new_tree(&mut runner).unwrap();
        cases.push(tree.current());
    }
    let count = cases.len();
    for (status, pairs) in cases {
        let Some(db) = fresh().await else { return };
        if let Err(err) = pool_case(&db, status, &pairs).await {
            panic!("{err}");
        }
    }
    eprintln!("hostile header pool property: {count} cases");
}

const POOL_RANDOM_CASES: u32 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_survives_hostile_headers_on_sqlite() {
    pool_property(async || Some(support::sqlite().await), POOL_RANDOM_CASES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_survives_hostile_headers_on_postgres() {
    pool_property(support::postgres, POOL_RANDOM_CASES).await;
}
