//! Concurrency and rate limits per model and provider, configured and adaptive.
//!
//! Before a call, [`Limits::admit`] decides whether it may start now, after a short wait, or
//! must be rescheduled (a long wait never holds a worker slot). Three things are checked:
//! - **pauses** in the database (`pauses` table): a model slowed down by the provider's 429s,
//!   or a provider whose account failed (bad key, no credit), shared by every process;
//! - **concurrency** per model: `params.maxConcurrency`, lowered adaptively (halved on a 429,
//!   raised by one per success) when the provider pushes back; per process;
//! - **rates** per model: `params.rpm` and `params.tpm` as GCRA reservations in the database,
//!   so that a limit holds across every process sharing it (an estimate of the call's tokens
//!   is reserved for `tpm`).
//!
//! After a call, [`Limits::observe`] feeds the provider's answer back: a 429 or exhausted
//! `x-ratelimit-remaining-*` pauses that model only (other models keep their full speed), and
//! [`STORM_STRIKES`] 429s in a row with no success pause it for [`STORM_PAUSE`] (the run is
//! counted in the database, across processes; the 429s of calls that were already on their way
//! when one was counted are the same refusal, not a run: a hundred calls in flight as a window
//! closes are one strike, not a storm); an account-level error pauses the endpoint
//! (base URL and key) for [`ACCOUNT_COOL_DOWN`], never its neighbours of the same provider
//! type. A pause is not set for an attempt that ends its job when nothing else of the scope is
//! queued: it would hold nothing back and outlive the run. No pause lasts longer than
//! [`MAX_WAIT`]. Models with no configured limit and no pushback pay a hash lookup and a
//! semaphore, nothing more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::{ClaimedJob, JobId, ModelId};
use crate::engine::pace::{Answer, Pace, Ticket};
use crate::providers::{Completion, ProviderError, Providers, one_line};
use crate::store::{PauseScope, RateGrant, Store};

use super::retry::{MAX_WAIT, ends_job, later};

/// How long a provider is left alone after an account-level error.
pub const ACCOUNT_COOL_DOWN: Duration = Duration::from_secs(60);
/// The longest a call waits in its slot for a limit; longer waits reschedule the job.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);
/// How long a model is paused after a 429 that named no wait.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(2);
/// Rate-limited answers in a row, with no success between them, after which a model is
/// paused as a whole for [`STORM_PAUSE`] instead of each of its jobs cycling.
pub const STORM_STRIKES: i32 = 10;
/// How long a model in a storm of 429s is left alone.
pub const STORM_PAUSE: Duration = Duration::from_secs(600);
/// How often the pauses made by other processes are read.
const PAUSE_REFRESH: Duration = Duration::from_secs(1);
/// Requests are spaced this much wider than a configured rate: the provider counts arrivals,
/// and network jitter would otherwise put the n+1st request of evenly spaced ones into the
/// window of the first.
const RATE_MARGIN: f64 = 1.03;
/// Tokens reserved for a `tpm` limit when a model sets no `maxTokens`.
const DEFAULT_COMPLETION_TOKENS: u64 = 512;

/// The answer of [`Limits::admit`].
pub enum Admission {
    /// Call now; the model's concurrency slot is held until this is dropped.
    Go(Admitted),
    /// Hand the job back to the queue, due at this time (no attempt spent).
    Later(DateTime<Utc>),
}

/// An admitted call: its concurrency slot and its place in the learned pace.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _ticket: Ticket,
}

/// One model's concurrency gate.
struct Gate {
    semaphore: Arc<Semaphore>,
    /// Permits the gate may have at most (configured, else the pool's size).
    ceiling: usize,
    /// Permits the gate has now (lowered by pushback, raised by successes).
    capacity: usize,
}

/// The limits of this process; cheap to share.
pub struct Limits {
    store: Store,
    providers: Providers,
    pool_size: usize,
    /// Models with a run of 429s recorded: their next success ends it in the database.
    striking: Mutex<HashSet<ModelId>>,
    /// When each model's last strike was counted here.
    struck_at: Mutex<HashMap<ModelId, Instant>>,
    gates: Mutex<HashMap<ModelId, Gate>>,
    pauses: Mutex<PauseCache>,
    pace: Pace,
    /// Tokens reserved for each call in flight under a `tpm` limit, by (job, attempt).
    reserved_tokens: Mutex<HashMap<(JobId, i32), u64>>,
}

struct PauseCache {
    read_at: Option<Instant>,
    until: HashMap<String, DateTime<Utc>>,
}

impl Limits {
    pub fn new(store: Store, providers: Providers, pool_size: usize) -> Self {
        Limits {
            store,
            providers,
            pool_size: pool_size.max(1),
            striking: Mutex::new(HashSet::new()),
            struck_at: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            pauses: Mutex::new(PauseCache {
                read_at: None,
                until: HashMap::new(),
            }),
            pace: Pace::default(),
            reserved_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Decides when `job` may call its model. A job that cannot start within
    /// [`MAX_INLINE_WAIT`] goes back to the queue holding no reservation, so it never pushes
    /// the others back; one that can wait keeps the slot it reserved.
    pub async fn admit(&self, job: &ClaimedJob) -> Admission {
        // On the database's clock: reservations and pauses are shared with every process.
        let now = self.store.now();
        // The database round trips below are rare and their futures large: boxed, so that every
        // worker task does not carry room for them.
        if let Some(until) = self.paused_until(job, now).await {
            return Admission::Later(until);
        }
        let limits = job.model.spec.limits();
        let semaphore = self.gate(job.model.id, limits.max_concurrency);
        let permit = match tokio::time::timeout(MAX_INLINE_WAIT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Admission::Later(later(now, Duration::from_secs(1))),
        };
        let clock = Instant::now();
        let (ticket, paced) =
            match self
                .pace
                .try_start(job.model.id, clock, MAX_INLINE_WAIT, limits.rpm.is_none())
            {
                Ok(admitted) => admitted,
                Err(at) => return Admission::Later(shifted(now, since(clock, at))),
            };
        let mut start = shifted(now, since(clock, clock + paced));
        let mut costs = Vec::new();
        if let Some(rpm) = limits.rpm {
            costs.push((rpm_scope(job), per_unit(rpm)));
        }
        let mut tokens = None;
        if let Some(tpm) = limits.tpm {
            let estimate = self.estimated_tokens(job);
            tokens = Some(estimate);
            costs.push((
                tpm_scope(job),
                // One call larger than an hour of the limit still gets its turn, an hour on.
                per_unit(tpm)
                    .saturating_mul(u32::try_from(estimate).unwrap_or(u32::MAX))
                    .min(Duration::from_secs(3600)),
            ));
        }
        if !costs.is_empty() {
            match Box::pin(
                self.store
                    .rate_reserve_within(&costs, start, MAX_INLINE_WAIT),
            )
            .await
            {
                Ok(RateGrant::Reserved(at)) => start = start.max(at),
                Ok(RateGrant::Busy(at)) => {
                    ticket.cancel();
                    // Back a little before the slot is within the inline wait (a pool may take
                    // up to its poll interval to claim it, and a slot nobody reserved in time
                    // is lost), spread over about a quarter of the pool's worth of slots so that
                    // the jobs sent back together come back one after another.
                    let cost = costs
                        .iter()
                        .map(|(_, cost)| *cost)
                        .max()
                        .unwrap_or_default();
                    let spread = (cost.saturating_mul(self.pool_size as u32) / 4)
                        .min(Duration::from_secs(30));
                    let early = MAX_INLINE_WAIT + Duration::from_millis(250);
                    let back = shifted(
                        at,
                        chrono::Duration::milliseconds(
                            rand::random_range(0..=spread.as_millis() as i64)
                                - early.as_millis() as i64,
                        ),
                    );
                    return Admission::Later(back.max(now + chrono::Duration::milliseconds(10)));
                }
                Err(err) => {
                    tokens = None;
                    tracing::warn!(error = %err, "rate reservation failed; calling anyway")
                }
            }
        }
        if let Some(tokens) = tokens {
            lock(&self.reserved_tokens).insert((job.job.id, job.attempt), tokens);
        }
        let wait = (start - self.store.now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Admission::Go(Admitted {
            _permit: permit,
            _ticket: ticket,
        })
    }

    /// Tokens to reserve for a call: what the model's calls used so far, else its prompt (about
    /// four characters a token) and its completion cap.
    fn estimated_tokens(&self, job: &ClaimedJob) -> u64 {
        self.pace
            .tokens_per_call(job.model.id)
            .unwrap_or_else(|| estimated_tokens(job))
            .max(1)
    }

    /// Settles a call's `tpm` reservation with the tokens it used: the difference is charged or
    /// refunded, so that the limit counts what the provider counts.
    async fn settle_tokens(&self, job: &ClaimedJob, result: &Result<Completion, ProviderError>) {
        let used = match result {
            Ok(completion) => {
                let usage = &completion.usage;
                let total = usage.total_tokens.or_else(|| {
                    usage
                        .prompt_tokens
                        .unwrap_or(0)
                        .checked_add(usage.completion_tokens?)
                });
                total
                    .and_then(|t| u64::try_from(t).ok())
                    .inspect(|&total| self.pace.learn_tokens(job.model.id, total))
            }
            // A refused or failed call used no tokens the provider counts.
            Err(_) => Some(0),
        };
        let reserved = lock(&self.reserved_tokens).remove(&(job.job.id, job.attempt));
        let (Some(reserved), Some(used)) = (reserved, used) else {
            return;
        };
        let Some(tpm) = job.model.spec.limits().tpm else {
            return;
        };
        if used == reserved {
            return;
        }
        let per_token = per_unit(tpm).as_secs_f64();
        let delta = (used as f64 - reserved as f64) * per_token;
        let delta = chrono::Duration::microseconds((delta * 1e6).clamp(-1e15, 1e15) as i64);
        if let Err(err) = Box::pin(
            self.store
                .rate_adjust(&tpm_scope(job), self.store.now(), delta),
        )
        .await
        {
            tracing::warn!(error = %err, "could not settle a token reservation");
        }
    }

    /// Learns from the answer to a call sent at `sent_at`: pushback slows the model down,
    /// success speeds it up.
    pub async fn observe(
        &self,
        job: &ClaimedJob,
        result: &Result<Completion, ProviderError>,
        sent_at: Instant,
    ) {
        let now = self.store.now();
        self.pace.answered(
            job.model.id,
            match result {
                Ok(completion) => Answer::Accepted(completion.rate_limit.as_ref()),
                Err(error) if error.rate_limited => Answer::Refused {
                    told: error.retry_after.is_some()
                        || error
                            .rate_limit
                            .as_ref()
                            .is_some_and(|h| h.wait_hint().is_some()),
                },
                Err(_) => Answer::Accepted(None),
            },
            sent_at,
            Instant::now(),
        );
        self.settle_tokens(job, result).await;
        match result {
            Ok(completion) => {
                self.widen(job.model.id);
                self.end_strikes(job.model.id).await;
                let exhausted = completion.rate_limit.as_ref().and_then(|hint| {
                    let requests = (hint.remaining_requests == Some(0))
                        .then_some(hint.reset_requests)
                        .flatten();
                    let tokens = (hint.remaining_tokens == Some(0))
                        .then_some(hint.reset_tokens)
                        .flatten();
                    requests.max(tokens)
                });
                if let Some(wait) = exhausted {
                    self.pause(
                        PauseScope::Model(job.model.id),
                        wait,
                        "the provider reported its rate limit exhausted",
                        now,
                    )
                    .await;
                }
            }
            Err(error) if error.account_level => {
                let ends = ends_job(job, error);
                match self.providers.endpoint(&job.model) {
                    Some(endpoint) => {
                        if ends && !self.endpoint_has_work(endpoint.id, job).await {
                            return;
                        }
                        let reason = format!("{}: {}", endpoint.base_url, error.message);
                        self.pause(
                            PauseScope::Endpoint(endpoint.id),
                            ACCOUNT_COOL_DOWN,
                            &reason,
                            now,
                        )
                        .await;
                    }
                    None => {
                        if ends && !self.models_have_work(&[job.model.id], job).await {
                            return;
                        }
                        let scope = PauseScope::Model(job.model.id);
                        self.pause(scope, ACCOUNT_COOL_DOWN, &error.message, now)
                            .await;
                    }
                }
            }
            Err(error) if error.rate_limited => {
                self.narrow(job.model.id);
                let scope = PauseScope::Model(job.model.id);
                let strikes = if self.new_strike(job.model.id, sent_at) {
                    match Box::pin(self.store.pause_strike(scope, now)).await {
                        Ok(strikes) => strikes,
                        Err(err) => {
                            tracing::warn!(error = %err, "could not count a rate limit");
                            0
                        }
                    }
                } else {
                    0
                };
                lock(&self.striking).insert(job.model.id);
                let (wait, reason) = if strikes >= STORM_STRIKES {
                    let reason = format!(
                        "{strikes} rate-limited answers (429) in a row with no success; last: {}",
                        error.message
                    );
                    (STORM_PAUSE, reason)
                } else {
                    let wait = error
                        .retry_after
                        .or_else(|| error.rate_limit.as_ref().and_then(|h| h.wait_hint()))
                        .unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
                    (wait, error.message.clone())
                };
                if ends_job(job, error) && !self.models_have_work(&[job.model.id], job).await {
                    return;
                }
                self.pause(scope, wait, &reason, now).await;
            }
            Err(_) => {}
        }
    }

    /// Whether a 429 to a call sent at `sent_at` is a new strike: the call left after the
    /// model's last strike here was counted (it knew of it), or no strike was counted yet.
    fn new_strike(&self, model: ModelId, sent_at: Instant) -> bool {
        let mut struck_at = lock(&self.struck_at);
        if struck_at.get(&model).is_some_and(|&at| sent_at < at) {
            return false;
        }
        struck_at.insert(model, Instant::now());
        true
    }

    /// A success ends the model's run of 429s, where one was recorded.
    async fn end_strikes(&self, model: ModelId) {
        if !lock(&self.striking).remove(&model) {
            return;
        }
        if let Err(err) = Box::pin(self.store.pause_strikes_clear(PauseScope::Model(model))).await {
            tracing::warn!(error = %err, "could not reset a model's run of rate limits");
            lock(&self.striking).insert(model);
        }
    }

    /// Whether a model of the endpoint has a queued job besides `job`. Rare (an account-level
    /// error on a job's last attempt), so the catalog is read rather than cached.
    async fn endpoint_has_work(&self, endpoint: u64, job: &ClaimedJob) -> bool {
        let models: Vec<ModelId> = match Box::pin(self.store.model_list()).await {
            Ok(models) => models
                .iter()
                .filter(|m| self.providers.endpoint(m).is_some_and(|e| e.id == endpoint))
                .map(|m| m.id)
                .collect(),
            // Unknown: pausing is the safe side.
            Err(_) => return true,
        };
        self.models_have_work(&models, job).await
    }

    async fn models_have_work(&self, models: &[ModelId], job: &ClaimedJob) -> bool {
        Box::pin(self.store.jobs_queued_exist(models, job.job.id))
            .await
            .unwrap_or(true)
    }

    async fn pause(&self, scope: PauseScope, wait: Duration, reason: &str, now: DateTime<Utc>) {
        let until = later(now, wait.min(MAX_WAIT));
        // Shown on status lines and in tables: one line, whatever the provider wrote.
        let reason = one_line(reason);
        lock(&self.pauses).until.insert(scope.key(), until);
        match Box::pin(self.store.pause(scope, until, &reason, now)).await {
            Ok(moved) => {
                tracing::warn!(scope = %scope.key(), %until, jobs_moved = moved, reason, "paused")
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not record a pause; this process keeps it")
            }
        }
    }

    /// The end of a pause in force for the job's model, its endpoint or (as recorded by
    /// earlier versions) its provider type.
    async fn paused_until(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let stale = lock(&self.pauses)
            .read_at
            .is_none_or(|at| at.elapsed() >= PAUSE_REFRESH);
        if stale {
            // Mark first so that concurrent admissions do not all read.
            lock(&self.pauses).read_at = Some(Instant::now());
            if let Ok(active) = Box::pin(self.store.pauses_active(now)).await {
                let mut striking = lock(&self.striking);
                for pause in &active {
                    // Another process's run of 429s: a success here ends it too.
                    if pause.strikes > 0
                        && let Some(Ok(model)) = pause
                            .scope
                            .strip_prefix("model:")
                            .map(str::parse::<ModelId>)
                    {
                        striking.insert(model);
                    }
                }
                drop(striking);
                let mut cache = lock(&self.pauses);
                cache.until.retain(|_, until| *until > now);
                for pause in active {
                    let entry = cache.until.entry(pause.scope).or_insert(pause.until);
                    *entry = (*entry).max(pause.until);
                }
            }
        }
        if lock(&self.pauses).until.is_empty() {
            return None;
        }
        let mut scopes = vec![
            PauseScope::Model(job.model.id).key(),
            PauseScope::Provider(job.model.provider).key(),
        ];
        if let Some(endpoint) = self.providers.endpoint(&job.model) {
            scopes.push(PauseScope::Endpoint(endpoint.id).key());
        }
        let cache = lock(&self.pauses);
        scopes
            .iter()
            .filter_map(|key| cache.until.get(key).copied())
            .filter(|until| *until > now)
            .max()
    }

    fn gate(&self, model: ModelId, configured: Option<usize>) -> Arc<Semaphore> {
        let ceiling = configured.unwrap_or(self.pool_size);
        let mut gates = lock(&self.gates);
        let gate = gates.entry(model).or_insert_with(|| Gate {
            semaphore: Arc::new(Semaphore::new(ceiling)),
            ceiling,
            capacity: ceiling,
        });
        if gate.ceiling != ceiling {
            // The model's maxConcurrency was edited: start over from the new ceiling.
            *gate = Gate {
                semaphore: Arc::new(Semaphore::new(ceiling)),
                ceiling,
                capacity: ceiling,
            };
        }
        gate.semaphore.clone()
    }

    /// Halves the model's concurrency (at least 1).
    fn narrow(&self, model: ModelId) {
        if let Some(gate) = lock(&self.gates).get_mut(&model) {
            let target = (gate.capacity / 2).max(1);
            let removed = gate.semaphore.forget_permits(gate.capacity - target);
            gate.capacity -= removed;
        }
    }

    /// Gives the model one more concurrent call, up to its ceiling.
    fn widen(&self, model: ModelId) {
        if let Some(gate) = lock(&self.gates).get_mut(&model)
            && gate.capacity < gate.ceiling
        {
            gate.semaphore.add_permits(1);
            gate.capacity += 1;
        }
    }
}

/// A call's share of a limit of `per_minute` units, widened by [`RATE_MARGIN`].
fn per_unit(per_minute: u64) -> Duration {
    Duration::from_secs(60).div_f64(per_minute as f64 / RATE_MARGIN)
}

fn rpm_scope(job: &ClaimedJob) -> String {
    format!("model:{}:rpm", job.model.id)
}

fn tpm_scope(job: &ClaimedJob) -> String {
    format!("model:{}:tpm", job.model.id)
}

/// `at` moved by `by`, saturating at the ends of time.
fn shifted(at: DateTime<Utc>, by: chrono::Duration) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(if by < chrono::Duration::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// The wall-clock distance from `from` to `to` (zero when `to` is earlier).
fn since(from: Instant, to: Instant) -> chrono::Duration {
    chrono::Duration::from_std(to.saturating_duration_since(from)).unwrap_or(chrono::Duration::MAX)
}

/// Tokens a call may use: its prompt (about four characters a token) and its completion cap.
fn estimated_tokens(job: &ClaimedJob) -> u64 {
    let completion = job
        .model
        .spec
        .call()
        .ok()
        .and_then(|call| call.generation.max_tokens)
        .unwrap_or(DEFAULT_COMPLETION_TOKENS);
    job.prompt_text.len() as u64 / 4 + 1 + completion
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
