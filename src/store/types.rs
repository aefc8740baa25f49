//! The values the store's operations take and give: plain data, no SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Clock;
use crate::domain::{ClaimedJob, JobId, JobStatus, ModelId, ProviderKind};

/// How many reads a process runs side by side. It sizes SQLite's reader connections, each of
/// which holds its own schema, statements and page cache on its own thread; PostgreSQL's
/// pool does not depend on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readers {
    /// A worker, a cron pass, a command: reads come one after another.
    #[default]
    One,
    /// `serve`: requests to the API and the dashboard read side by side.
    Several,
}

/// Settings of one enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// When the jobs are created and fall due.
    pub now: Clock,
    pub max_attempts: i32,
    /// Record the batch as the prompts' latest run (`last_run_at`, `last_batch_key`).
    /// Off for an explicit backfill of an older batch.
    pub mark_prompts: bool,
}

/// What an enqueue really did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueReport {
    /// Rows actually inserted (jobs that already existed are not counted).
    pub jobs_created: u64,
    /// Prompts that got at least one new job.
    pub prompt_count: u64,
}

/// How many jobs one claim takes: those for slots free now, and those claimed ahead of them.
///
/// Jobs claimed ahead wait for this process's slots, so near the queue's end they are taken
/// only while enough stay due for the slots that free sooner elsewhere: a fleet's last jobs
/// then go to whichever process has a slot first, not to the one that asked first (three
/// workers ran a 4 s batch in 4.4 s when one of them held a wave's worth claimed ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimSize {
    /// Jobs for free slots: taken while any is due.
    pub now: i64,
    /// Jobs claimed ahead: taken only from those due beyond `now + spare`.
    pub ahead: i64,
    /// Due jobs to leave for other processes' slots (0: no such check, nothing read).
    pub spare: i64,
}

impl ClaimSize {
    /// Up to `jobs` jobs, whatever else is due.
    pub fn exactly(jobs: i64) -> Self {
        ClaimSize {
            now: jobs,
            ahead: 0,
            spare: 0,
        }
    }

    /// The most jobs the claim may take.
    pub fn most(&self) -> i64 {
        self.now.max(0) + self.ahead.max(0)
    }

    /// The due jobs worth counting before the claim; `None` when no count is needed.
    pub fn probe(&self) -> Option<i64> {
        (self.ahead > 0 && self.spare > 0).then(|| self.most() + self.spare)
    }

    /// The jobs to take once `due` jobs (counted up to [`Self::probe`]) are known to be due.
    pub fn given_due(&self, due: i64) -> i64 {
        let now = self.now.max(0);
        match self.probe() {
            Some(_) => now + (due - now - self.spare).clamp(0, self.ahead.max(0)),
            None => self.most(),
        }
    }
}

/// The answer to "claim this job" (`POST /api/jobs/process`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOne {
    Claimed(Box<ClaimedJob>),
    /// The job exists but is not `queued` (or not due yet); its current status.
    NotClaimable(JobStatus),
    /// The job was queued but its prompt or model is no longer active: it is now `skipped`.
    Skipped,
    NotFound,
}

/// A job that a rescue moved out of an expired lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rescued {
    pub job_id: JobId,
    pub attempt: i32,
    /// `queued` when attempts remain, else `failed`.
    pub status: JobStatus,
}

/// The version key of a prompt text: its SHA-256, in lower-case hex.
pub fn prompt_version_hash(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// What a pause applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseScope {
    /// Every model of a provider type. Kept for pauses recorded by earlier versions; the engine
    /// pauses an endpoint instead, so that one bad key does not stop its neighbours.
    Provider(ProviderKind),
    Model(ModelId),
    /// One endpoint (base URL and key), by its identity hash
    /// ([`crate::providers::Providers::endpoint`]): every model that calls it.
    Endpoint(u64),
}

impl PauseScope {
    /// The key stored in `pauses.scope`.
    pub fn key(&self) -> String {
        match self {
            PauseScope::Provider(kind) => format!("provider:{kind}"),
            PauseScope::Model(id) => format!("model:{id}"),
            PauseScope::Endpoint(id) => format!("endpoint:{id:016x}"),
        }
    }
}

/// The answer of [`Pacing::rate_reserve_within`](super::Pacing::rate_reserve_within).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateGrant {
    /// Reserved: the call may start at this time.
    Reserved(DateTime<Utc>),
    /// Nothing reserved: the first free slot is at this time, beyond the allowed wait.
    Busy(DateTime<Utc>),
}

/// What a prune removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PruneTarget {
    /// `job_attempts` rows finished before the cutoff, of jobs that are no longer live.
    Attempts,
    /// The raw provider body (`responses.raw`) of responses stored before the cutoff; the
    /// answer's text, tokens and cost stay.
    RawBodies,
    /// Finished jobs (`succeeded`, `failed`, `skipped`) that ended before the cutoff, with
    /// their response and attempts.
    Jobs,
}

/// Rows a prune would remove (or did), by target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneCounts {
    pub attempts: u64,
    pub raw_bodies: u64,
    /// Jobs, and in `responses` how many of them have a stored response.
    pub jobs: u64,
    pub responses: u64,
}

/// What one bounded prune transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// Rows deleted or cleared (for `Jobs`: jobs deleted).
    pub changed: u64,
    /// Responses deleted with those jobs (`Jobs` only).
    pub responses: u64,
    /// The greatest id this batch looked at; `None` when no candidate was left.
    pub last_id: Option<i64>,
}
