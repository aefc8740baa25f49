//! The worker pool: keeps up to `WORKER_CONCURRENCY` model calls in flight.
//!
//! One claim loop takes due jobs in batches sized to the free slots and a claim-ahead that grows
//! while jobs finish faster than claims arrive (one statement per batch); near the queue's end
//! a claim ahead leaves the last due jobs to the fleet's free slots (see [`ClaimSize`]),
//! each job runs as its own task, and one finisher writes outcomes in batches (one transaction
//! per batch), so that the queue's own cost per job stays far below a model call's. A
//! heartbeat renews the leases of every running attempt in one statement; a sweeper rescues
//! the expired leases of processes that died. The loop sleeps until work is announced (an
//! in-process signal, LISTEN/NOTIFY on Postgres), a retry falls due, or the poll interval ends.
//!
//! Shutdown stops claiming, gives running calls a grace period, then hands every attempt it
//! still holds back to `queued` without spending it. Nothing here decides an outcome
//! ([`super::retry`]) or speaks SQL ([`crate::store`]).
//!
//! The attempts in flight are known by (job, attempt), so that a stale task that ends late
//! never touches the bookkeeping of its job's live attempt. An attempt that panics, for whatever
//! reason, ends with the panic as its error ([`super::attempt::run`]: the job is retried after
//! a backoff, or fails once its attempts are spent), so its task still gives its slot back and
//! stops its heartbeat.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::domain::{ClaimedJob, Finish, JobId, Outcome};
use crate::store::workers::{NewWorker, WORKER_BEAT, WORKER_SILENT_AFTER, WorkerId};
use crate::store::{ClaimSize, Clock};

use super::attempt::{self, Ended, heartbeat_interval};
use super::due::DueTimes;
use super::outage::Outage;
use super::runtime::Runtime;

/// An attempt: the job and the claim number that fences its writes.
type AttemptKey = (JobId, i32);

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Model calls in flight at most.
    pub concurrency: usize,
    /// The most jobs one claim takes.
    pub max_claim: usize,
    /// Jobs claimed ahead of free slots, started the moment a slot frees (at least; more
    /// while slots wait for claims, up to `max_claim`).
    pub prefetch: usize,
    /// The most outcomes one finish writes.
    pub max_finish: usize,
    /// How often to look for work when nothing announced any.
    pub poll_interval: Duration,
    /// How often to rescue expired leases.
    pub rescue_interval: Duration,
    /// How long running calls may go on after shutdown is asked.
    pub shutdown_grace: Duration,
}

impl PoolOptions {
    /// The settings' pool: `WORKER_CONCURRENCY` slots, leases of `JOB_LEASE_SECS`.
    pub fn for_app(runtime: &impl AsRef<Runtime>) -> Self {
        let config = runtime.as_ref().config();
        let lease = config.job_lease;
        PoolOptions {
            concurrency: config.worker_concurrency,
            max_claim: 200,
            prefetch: config.worker_concurrency.clamp(1, 200),
            max_finish: 500,
            poll_interval: Duration::from_secs(1),
            // A dead process's jobs come back within one lease plus half a lease.
            rescue_interval: (lease / 2).max(Duration::from_secs(1)),
            shutdown_grace: config.shutdown_grace,
        }
    }
}

/// An attempt this process is running.
struct Running {
    /// `None` while the job waits in the claim loop's buffer.
    abort: Option<AbortHandle>,
    /// Whether the model call has started (unstarted attempts are handed back at once).
    started: bool,
}

struct Shared {
    rt: Runtime,
    /// This pool's id in the worker registry (0 before it registered, or if it could not).
    worker: AtomicI64,
    /// The slots of the other live workers, as of the last beat: a claim ahead leaves due
    /// jobs for them (see [`due_left_for_fleet`]).
    slots_elsewhere: AtomicUsize,
    options: PoolOptions,
    running: Mutex<HashMap<AttemptKey, Running>>,
    slots: Arc<Semaphore>,
    slot_freed: Notify,
    /// When the jobs this process handed back or scheduled for a retry fall due.
    due: DueTimes,
    /// When this process last found the database unreachable.
    outage: Outage,
}

/// Runs the pool until `shutdown` is cancelled and everything it held is written or released.
pub async fn run_pool(
    runtime: impl Into<Runtime>,
    options: PoolOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if options.concurrency == 0 {
        shutdown.cancelled().await;
        return Ok(());
    }
    let shared = Arc::new(Shared {
        worker: AtomicI64::new(0),
        slots_elsewhere: AtomicUsize::new(0),
        slots: Arc::new(Semaphore::new(options.concurrency)),
        rt: runtime.into(),
        options,
        running: Mutex::new(HashMap::new()),
        slot_freed: Notify::new(),
        due: DueTimes::default(),
        outage: Outage::default(),
    });
    super::blocked::warn_at_start(&shared.rt).await;
    register(&shared, true).await;
    look_at_fleet(&shared).await;
    let (finish_tx, finish_rx) = mpsc::channel::<Finish>(finish_queue(&shared.options));
    let stop_background = CancellationToken::new();
    let finisher = tokio::spawn(finisher(shared.clone(), finish_rx));
    let heartbeat = tokio::spawn(heartbeat(shared.clone(), stop_background.clone()));
    let rescuer = tokio::spawn(rescuer(shared.clone(), stop_background.clone()));
    let presence = tokio::spawn(presence(shared.clone(), stop_background.clone()));
    // Batch-mode models' jobs go through the provider's Batch API, not through the slots.
    let batcher = tokio::spawn(super::batch::run(
        shared.rt.clone(),
        stop_background.clone(),
    ));
    let listener = shared
        .rt
        .store()
        .spawn_job_listener(shared.rt.work_available(), stop_background.clone());

    let mut tasks = JoinSet::new();
    claim_loop(&shared, &finish_tx, &mut tasks, &shutdown).await;

    // Shutdown: calls not yet started are handed back now; running ones get a grace period.
    release_unstarted(&shared).await;
    let grace = tokio::time::sleep(shared.options.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            () = &mut grace => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    drop(finish_tx);
    // Every finish sent is written before what is left is released.
    let _ = finisher.await;
    release_all(&shared).await;
    stop_background.cancel();
    let _ = heartbeat.await;
    let _ = rescuer.await;
    let _ = presence.await;
    unregister(&shared).await;
    let _ = batcher.await;
    if let Some(listener) = listener {
        // Stopped (above), the listener closes its connection itself within a look (100 ms on
        // SQLite). Aborted instead, its connection closed after the store's, and SQLite only
        // checkpoints the file at the last connection's close: a `run` could end leaving its
        // WAL behind. A listener that does not stop in time is aborted.
        let abort = listener.abort_handle();
        if tokio::time::timeout(LISTENER_STOP, listener).await.is_err() {
            abort.abort();
        }
    }
    Ok(())
}

async fn claim_loop(
    shared: &Arc<Shared>,
    finish_tx: &mpsc::Sender<Finish>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let work_available = shared.rt.work_available();
    let metrics = shared.rt.metrics();
    // Jobs claimed ahead of free slots, so that a freed slot starts its next job without
    // waiting for a round trip to the database.
    let mut buffer: VecDeque<ClaimedJob> = VecDeque::new();
    let mut ahead = ClaimAhead::new(&shared.options);
    let mut claiming: Option<ClaimFuture> = None;
    let mut asked = 0usize;
    let mut needed = 0usize;
    // The last claim came back short (or failed): wait for news before claiming again.
    let mut idle = false;
    // The last claim got the jobs for its free slots but not all those asked ahead (the
    // queue's end is near): claim again only for slots that wait, until a claim is whole.
    let mut near_end = false;
    let mut store_errors = 0u32;
    let mut announced = Box::pin(work_available.clone().notified_owned());
    announced.as_mut().enable();
    loop {
        let stopping = shutdown.is_cancelled();
        if stopping && claiming.is_none() {
            // What the buffer still holds is handed back by the shutdown that follows.
            return;
        }
        while tasks.try_join_next().is_some() {}
        while !stopping && !buffer.is_empty() {
            let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                break;
            };
            if let Some(job) = buffer.pop_front() {
                start_job(shared, job, permit, finish_tx, tasks);
            }
        }
        let free = shared.slots.available_permits();
        let want = (free + ahead.jobs).saturating_sub(buffer.len());
        let worth = if near_end {
            free > buffer.len()
        } else {
            worth_a_claim(free, buffer.len(), ahead.jobs)
        };
        if claiming.is_none() && !idle && worth && !stopping {
            asked = want.min(shared.options.max_claim);
            let for_free_slots = free.saturating_sub(buffer.len()).min(asked);
            let size = ClaimSize {
                now: for_free_slots as i64,
                ahead: (asked - for_free_slots) as i64,
                spare: due_left_for_fleet(shared.slots_elsewhere.load(Ordering::Relaxed)),
            };
            needed = for_free_slots;
            // Re-armed before the claim, so that work announced while it runs is not missed.
            announced = Box::pin(work_available.clone().notified_owned());
            announced.as_mut().enable();
            let rt = shared.rt.clone();
            let lease = shared.rt.config().job_lease;
            let worker = shared.worker_id();
            claiming = Some(Box::pin(async move {
                // Jobs of models this process cannot call stay queued (see `blocked`).
                let except = rt.blocked_ids().await?;
                rt.store()
                    .jobs_claim_except(size, Clock::Database, lease, &except, worker)
                    .await
            }));
        }
        let wait = if store_errors > 0 {
            Duration::from_millis(200 * u64::from(store_errors.min(25)))
        } else {
            sleep_until_next_retry(shared).min(shared.options.poll_interval)
        };
        tokio::select! {
            result = async { claiming.as_mut().expect("guarded").await }, if claiming.is_some() => {
                claiming = None;
                match result {
                    Ok(jobs) => {
                        store_errors = 0;
                        // Fewer than the free slots: nothing more is due.
                        idle = jobs.len() < needed;
                        near_end = jobs.len() < asked;
                        ahead.claimed(!near_end);
                        metrics.claimed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                        let mut running = lock(&shared.running);
                        for job in jobs {
                            running.insert((job.job.id, job.attempt), Running { abort: None, started: false });
                            buffer.push_back(job);
                        }
                    }
                    Err(err) => {
                        store_errors += 1;
                        idle = true;
                        tracing::warn!(error = %err, "claim failed; retrying");
                    }
                }
            }
            () = shared.slot_freed.notified() => {
                if buffer.is_empty() && claiming.is_some() {
                    ahead.starved();
                }
            }
            () = shared.due.sooner.notified(), if idle => {}
            () = &mut announced => {
                idle = false;
                near_end = false;
                announced = Box::pin(work_available.clone().notified_owned());
                announced.as_mut().enable();
            }
            () = tokio::time::sleep(wait), if idle => idle = false,
            () = shutdown.cancelled(), if !stopping => {}
        }
    }
}

/// Whether to claim now, with `free` slots, `buffered` jobs claimed ahead and a claim-ahead of
/// `ahead`: when a slot has nothing to start, or when the buffer is down to half the
/// claim-ahead, so that it is refilled in batches. Topped up at every freed slot, long calls at
/// high concurrency (slots freeing one by one) made one claim of a job or two per call ended,
/// each a statement planned and run (W4: 12,579 claims for 20,000 jobs; 219 with this).
fn worth_a_claim(free: usize, buffered: usize, ahead: usize) -> bool {
    let want = (free + ahead).saturating_sub(buffered);
    want > 0 && (free > buffered || want >= ahead.div_ceil(2))
}

/// The due jobs a claim ahead leaves for the other live workers, which hold `slots_elsewhere`
/// slots: two waves of them. Their slots free about when this pool's do, and each starts
/// first what its own claim-ahead holds (about a wave), so one wave left due was taken by
/// whichever claim ahead came first: that process then held a wave more than the others when
/// the queue ran dry, and ran it while their slots stood idle (two workers, 4,000 jobs of
/// 200 ms: 1.056–1.067 × ideal in 6 runs of 10, against 1.016–1.022 in 10 of 10 with two).
/// Near the end a fleet then claims only for free slots, so its last jobs go to whichever slot
/// frees first. The claim counts the due jobs up to this many beyond its own (PostgreSQL: about
/// 0.5 µs a job, most of them read from the heap), so the count is bounded: past
/// [`FLEET_SPARE_MOST`] slots elsewhere a fleet's waves are many claims wide, and a claim
/// ahead (at most `max_claim` jobs) is a small part of one.
fn due_left_for_fleet(slots_elsewhere: usize) -> i64 {
    i64::try_from(slots_elsewhere)
        .unwrap_or(i64::MAX)
        .saturating_mul(2)
        .min(FLEET_SPARE_MOST)
}

/// The most due jobs a claim ahead leaves for other workers (see [`due_left_for_fleet`]).
const FLEET_SPARE_MOST: i64 = 4_000;

/// The claim-ahead grows to at most this many jobs per slot…
pub const MOST_AHEAD_PER_SLOT: usize = 4;
/// …or this many, whichever is more (never more than the largest claim): a pool of ten slots
/// draining short jobs otherwise claimed at most 50 a statement where one of fifty claimed 200,
/// and ran at half its speed.
pub const MOST_AHEAD_FLOOR: usize = 200;

/// The most jobs a pool of `concurrency` slots claims ahead of its free slots.
pub fn most_ahead(concurrency: usize, max_claim: usize) -> usize {
    (concurrency * MOST_AHEAD_PER_SLOT)
        .max(MOST_AHEAD_FLOOR)
        .min(max_claim)
}

/// How many jobs the pool claims ahead of its free slots. It starts at the configured
/// prefetch; a slot that frees while the buffer is empty and a claim is on its way (jobs
/// finishing faster than claims arrive) doubles it, up to [`most_ahead`], so short jobs are claimed in few large statements instead of many small
/// ones; claims that came back with no slot waiting shrink it back by an eighth, so long calls
/// do not hold many jobs claimed. A process that dies holds at most its slots and this many
/// jobs until they are rescued.
struct ClaimAhead {
    jobs: usize,
    least: usize,
    most: usize,
    starved: bool,
}

impl ClaimAhead {
    fn new(options: &PoolOptions) -> Self {
        let least = options.prefetch;
        ClaimAhead {
            jobs: least,
            least,
            most: most_ahead(options.concurrency, options.max_claim).max(least),
            starved: false,
        }
    }

    fn starved(&mut self) {
        self.starved = true;
    }

    /// A claim came back; `full` when it got all it asked for (more work is waiting).
    fn claimed(&mut self, full: bool) {
        if full && self.starved {
            self.jobs = (self.jobs * 2).clamp(1, self.most);
        } else if !self.starved {
            self.jobs = (self.jobs - self.jobs / 8).max(self.least);
        }
        self.starved = false;
    }
}

type ClaimFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = crate::store::StoreResult<Vec<ClaimedJob>>> + Send>,
>;

/// Runs a claimed job in a free slot.
fn start_job(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
    finish_tx: &mpsc::Sender<Finish>,
    tasks: &mut JoinSet<()>,
) {
    let mut running = lock(&shared.running);
    let Some(entry) = running.get_mut(&(job.job.id, job.attempt)) else {
        // Its lease was lost while it waited (a heartbeat said so): its result would be stale.
        return;
    };
    let shared_for_task = shared.clone();
    let finish_tx = finish_tx.clone();
    entry.abort = Some(tasks.spawn(async move {
        // A panic in the attempt is caught there and becomes its error (`attempt::run`).
        run_job(&shared_for_task, job, finish_tx).await;
        drop(permit);
        shared_for_task.slot_freed.notify_one();
    }));
}

fn sleep_until_next_retry(shared: &Shared) -> Duration {
    shared
        .due
        .wait(shared.rt.store().now())
        .unwrap_or(Duration::MAX)
}

async fn run_job(shared: &Shared, job: ClaimedJob, finish_tx: mpsc::Sender<Finish>) {
    let key = (job.job.id, job.attempt);
    let mark_started = || {
        if let Some(running) = lock(&shared.running).get_mut(&key) {
            running.started = true;
        }
    };
    // Lost leases are stopped by the pool's heartbeat, which aborts this task.
    let ended = attempt::run(&shared.rt, &job, std::future::pending(), mark_started).await;
    // Gone from `running` before the finish is sent or the job handed back, so a shutdown
    // never releases an attempt whose outcome is on its way, and a hand-back's next claim
    // (which carries the same attempt number) is never mistaken for this one. Keyed by
    // attempt: a stale attempt that ends late leaves its job's live attempt alone.
    lock(&shared.running).remove(&key);
    match ended {
        Ended::Finished(finish) => {
            if let Outcome::Retry { at, .. } = &finish.outcome {
                shared.due.add(*at);
            }
            let _ = finish_tx.send(finish).await;
        }
        // A long wait for a limit goes back to the queue instead of holding a slot.
        Ended::HandedBack(at) => match attempt::hand_back(&shared.rt, &job, at).await {
            Ok(()) => shared.due.add(at),
            Err(err) => {
                tracing::warn!(job_id = job.job.id, error = %err, "could not reschedule; its lease will expire")
            }
        },
    }
}

/// How many outcomes may wait for the finisher. A slot that cannot hand its outcome over waits
/// with it, so a queue of two outcomes a slot (36 for ten slots) capped each finish at 36 jobs
/// and small pools at the rate one finish statement writes them; the queue holds a whole
/// finish (`max_finish`) whatever the pool's size. Its memory is taken only as outcomes wait.
fn finish_queue(options: &PoolOptions) -> usize {
    (options.concurrency * 2 + 16).max(options.max_finish)
}

/// How long a batch waits for more outcomes while calls are in flight.
const GATHER_FOR: Duration = Duration::from_millis(2);

/// How long a stopped pool waits for its job listener to close its connection.
const LISTENER_STOP: Duration = Duration::from_secs(1);

/// How soon a heartbeat that failed tries again (at most its usual interval).
const RENEW_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Writes outcomes in batches: whatever arrived while the previous batch was written, and
/// while calls are in flight, whatever else arrives within [`GATHER_FOR`] of the first (calls
/// started together end together): one statement and one commit for a wave of calls.
async fn finisher(shared: Arc<Shared>, mut finishes: mpsc::Receiver<Finish>) {
    let mut batch = Vec::with_capacity(shared.options.max_finish);
    while let Some(first) = finishes.recv().await {
        batch.push(first);
        let gather_until = tokio::time::Instant::now() + GATHER_FOR;
        while batch.len() < shared.options.max_finish {
            match finishes.try_recv() {
                Ok(next) => batch.push(next),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let in_flight = shared
                        .options
                        .concurrency
                        .saturating_sub(shared.slots.available_permits());
                    if in_flight == 0 {
                        break;
                    }
                    match tokio::time::timeout_at(gather_until, finishes.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        write_finishes(&shared, &batch).await;
        batch.clear();
    }
}

async fn write_finishes(shared: &Shared, batch: &[Finish]) {
    let mut failures = 0u32;
    while let Err(err) = attempt::record(&shared.rt, batch).await {
        // The database is away: keep the outcomes and try again. If it stays away past the
        // leases, the stale finishes change nothing and rescue re-runs them.
        failures += 1;
        tracing::warn!(error = %err, jobs = batch.len(), "finish failed; retrying");
        if failures > 300 {
            tracing::error!(jobs = batch.len(), "giving up on a batch of finishes");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
    }
}

/// Renews the leases of every running attempt, in one statement per beat. An attempt that
/// lost its job (rescued after a long pause, or cancelled) is stopped: its result would be
/// discarded anyway.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let lease = shared.rt.config().job_lease;
    let every = heartbeat_interval(lease);
    let mut next = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = stop.cancelled() => return,
        }
        next = every;
        let attempts: Vec<AttemptKey> = lock(&shared.running).keys().copied().collect();
        if attempts.is_empty() {
            continue;
        }
        let lease = shared.rt.config().job_lease;
        let renewed = shared
            .rt
            .store()
            .jobs_heartbeat(&attempts, Clock::Database, lease)
            .await;
        shared.outage.note(&renewed);
        match renewed {
            Ok(owned) => {
                if owned.len() < attempts.len() {
                    let mut running = lock(&shared.running);
                    for (id, attempt) in attempts {
                        if !owned.contains(&(id, attempt))
                            && let Some(lost) = running.get(&(id, attempt))
                        {
                            tracing::warn!(
                                job_id = id,
                                attempt,
                                "lost the job's lease; stopping its call"
                            );
                            if let Some(abort) = &lost.abort {
                                abort.abort();
                            }
                            running.remove(&(id, attempt));
                            shared.slot_freed.notify_one();
                        }
                    }
                }
            }
            Err(err) => {
                // Again soon: after an outage the leases must be renewed before others sweep.
                next = RENEW_AGAIN_AFTER.min(every);
                tracing::warn!(error = %err, "heartbeat failed; trying again in a second")
            }
        }
    }
}

/// Rescues the expired leases of dead processes (and of this one, at start-up), except just
/// after the database was unreachable (see [`super::outage`]).
async fn rescuer(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let swept = if shared.outage.recent(Instant::now()) {
            Ok(Vec::new())
        } else {
            shared.rt.store().jobs_rescue_expired(Clock::Database).await
        };
        shared.outage.note(&swept);
        match swept {
            Ok(rescued) if !rescued.is_empty() => {
                handed_back(&shared, rescued.len());
                tracing::warn!(jobs = rescued.len(), "rescued jobs whose lease expired");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "rescue failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.options.rescue_interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

impl Shared {
    fn worker_id(&self) -> Option<WorkerId> {
        Some(self.worker.load(Ordering::Relaxed)).filter(|id| *id > 0)
    }
}

/// Enters this pool in the worker registry; without it the pool still runs, its jobs coming
/// back after their lease if it dies.
async fn register(shared: &Shared, first: bool) {
    let new = NewWorker::this_process(shared.options.concurrency);
    match shared
        .rt
        .store()
        .worker_register(&new, Clock::Database)
        .await
    {
        Ok(id) => shared.worker.store(id, Ordering::Relaxed),
        Err(err) if first => tracing::warn!(error = %err, "could not register as a worker"),
        Err(err) => tracing::debug!(error = %err, "could not register as a worker"),
    }
}

/// Counts the slots of the other live workers, which claims ahead leave due jobs for.
async fn look_at_fleet(shared: &Shared) {
    let me = shared.worker_id();
    match shared
        .rt
        .store()
        .workers_live(Clock::Database, WORKER_SILENT_AFTER)
        .await
    {
        Ok(live) => {
            let elsewhere: i64 = live
                .iter()
                .filter(|w| Some(w.id) != me)
                .map(|w| w.concurrency.max(0))
                .sum();
            let elsewhere = usize::try_from(elsewhere).unwrap_or(usize::MAX);
            shared.slots_elsewhere.store(elsewhere, Ordering::Relaxed);
        }
        Err(err) => tracing::debug!(error = %err, "could not list the live workers"),
    }
}

async fn unregister(shared: &Shared) {
    if let Some(id) = shared.worker_id()
        && let Err(err) = shared.rt.store().worker_stop(id, Clock::Database).await
    {
        tracing::warn!(error = %err, "could not mark this worker stopped");
    }
}

/// Reports this worker's calls in flight and jobs held, and hands back at once the jobs of
/// workers whose process died (PostgreSQL: see [`crate::store::workers`]).
async fn presence(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WORKER_BEAT) => {}
            () = stop.cancelled() => return,
        }
        let (running, held) = {
            let attempts = lock(&shared.running);
            (
                attempts.values().filter(|a| a.started).count(),
                attempts.len(),
            )
        };
        let store = shared.rt.store();
        match shared.worker_id() {
            Some(id) => {
                let reported = store.worker_beat(id, running, held, Clock::Database).await;
                shared.outage.note(&reported);
                match reported {
                    Ok(now_id) => shared.worker.store(now_id, Ordering::Relaxed),
                    Err(err) => tracing::debug!(error = %err, "worker report failed"),
                }
            }
            None => register(&shared, false).await,
        }
        look_at_fleet(&shared).await;
        match store.jobs_rescue_orphaned(Clock::Database).await {
            Ok(rescued) if !rescued.is_empty() => {
                handed_back(&shared, rescued.len());
                tracing::warn!(
                    jobs = rescued.len(),
                    "handed back the jobs of a worker that died"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "looking for dead workers failed"),
        }
    }
}

/// Counts jobs another process's death handed back, and wakes the claim loop for them.
fn handed_back(shared: &Shared, jobs: usize) {
    shared
        .rt
        .metrics()
        .rescued
        .fetch_add(jobs as u64, Ordering::Relaxed);
    shared.rt.work_available().notify_waiters();
}

/// Hands back at once the attempts whose call has not started.
async fn release_unstarted(shared: &Shared) {
    let unstarted: Vec<(JobId, i32)> = {
        let mut running = lock(&shared.running);
        let ids: Vec<AttemptKey> = running
            .iter()
            .filter(|(_, r)| !r.started)
            .map(|(key, _)| *key)
            .collect();
        for key in &ids {
            if let Some(abort) = running.remove(key).and_then(|r| r.abort) {
                abort.abort();
            }
        }
        ids
    };
    release(shared, &unstarted).await;
}

/// Hands back every attempt still held (calls cut by the end of the grace period).
async fn release_all(shared: &Shared) {
    let held: Vec<AttemptKey> = lock(&shared.running).drain().map(|(key, _)| key).collect();
    release(shared, &held).await;
}

async fn release(shared: &Shared, attempts: &[(JobId, i32)]) {
    if attempts.is_empty() {
        return;
    }
    match shared
        .rt
        .store()
        .jobs_release(attempts, Clock::Database, Duration::ZERO)
        .await
    {
        Ok(released) => {
            shared
                .rt
                .metrics()
                .released
                .fetch_add(released, Ordering::Relaxed);
            tracing::info!(jobs = released, "handed jobs back to the queue");
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not hand jobs back; their leases will expire")
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain data behind; keep going with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(prefetch: usize, max_claim: usize) -> PoolOptions {
        PoolOptions {
            concurrency: prefetch,
            max_claim,
            prefetch,
            max_finish: 500,
            poll_interval: Duration::from_secs(1),
            rescue_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_small_pool_can_hand_over_a_whole_finish_without_waiting() {
        assert_eq!(finish_queue(&options(10, 200)), 500);
        assert_eq!(finish_queue(&options(1000, 200)), 2016);
    }

    #[test]
    fn the_buffer_is_refilled_in_batches_but_never_leaves_a_slot_idle() {
        // A slot has nothing to start: claim, whatever the buffer's target.
        assert!(worth_a_claim(1, 0, 200));
        // One slot freed and started a buffered job: not yet worth a statement.
        assert!(!worth_a_claim(0, 199, 200));
        assert!(!worth_a_claim(0, 101, 200));
        // Half the claim-ahead gone: refill.
        assert!(worth_a_claim(0, 100, 200));
        // Nothing wanted.
        assert!(!worth_a_claim(0, 200, 200));
        // A claim-ahead of one job still claims at once.
        assert!(worth_a_claim(0, 0, 1));
    }

    #[test]
    fn claim_ahead_grows_while_slots_wait_and_shrinks_back_when_they_do_not() {
        let mut ahead = ClaimAhead::new(&options(10, 200));
        ahead.starved();
        ahead.claimed(true);
        assert_eq!(ahead.jobs, 20);
        for _ in 0..10 {
            ahead.starved();
            ahead.claimed(true);
        }
        assert_eq!(ahead.jobs, 200, "never more than the largest claim");
        ahead.starved();
        ahead.claimed(false);
        assert_eq!(
            ahead.jobs, 200,
            "a short claim (no more work) does not grow it"
        );
        for _ in 0..60 {
            ahead.claimed(true);
        }
        assert_eq!(
            ahead.jobs, 10,
            "back to the configured prefetch, never below"
        );
        let mut wide = ClaimAhead::new(&options(100, 200));
        for _ in 0..10 {
            wide.starved();
            wide.claimed(true);
        }
        assert_eq!(wide.jobs, 200, "never more than the largest claim");
    }
}
