//! The queue's storage contract: the only code in promptq that speaks SQL.
//!
//! The contract is the [`QueueDriver`] trait ([`driver`]): one set of Noun+Verb operations
//! (`jobs_enqueue`, `jobs_claim`, `jobs_finish`, `jobs_rescue_expired`, …), each documented
//! once with its guarantees, with two implementations: [`sqlite`] (the embedded default: WAL,
//! one writer connection, `BEGIN IMMEDIATE`) and [`postgres`] (scale-out: `FOR UPDATE SKIP
//! LOCKED`, `LISTEN/NOTIFY`, advisory locks). Every operation that changes a job is one
//! statement or one short transaction, and every write made on behalf of an attempt is fenced
//! by `(job id, attempt)`: a stale attempt can never overwrite a job that moved on.
//!
//! Whose clock a queue statement reads is the caller's choice, as a [`Clock`]: the processes
//! pass [`Clock::Database`], so that leases, rescues and due-ness are judged by one clock (the
//! database's) whatever the clocks of the machines sharing it say; tests pass an instant
//! ([`Clock::At`]) to move time without sleeping. One conformance suite (`tests/store_conformance.rs`)
//! runs against both implementations, generic over the trait; extend it whenever behaviour
//! changes here. The rest of promptq holds a [`Store`], which delegates to its backend.
//! What the dialects share (filters, rows, the time type) is written once in `sql`.

pub mod driver;
pub mod driver_alerts;
pub mod driver_batches;
pub mod driver_insights;
pub mod driver_spend;
mod handle;
mod insights_sql;
pub mod location;
pub mod postgres;
mod prune;
mod rows;
mod sql;
pub mod sqlite;
mod time;
mod types;
pub mod workers;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use driver::{Catalog, Figures, Jobs, Lifecycle, Pacing, Queue, QueueDriver, Retention};
pub use driver_alerts::{Alert, AlertCounts, AlertKind, AlertStatus, Alerts, NewAlert};
pub use driver_batches::ProviderBatches;
pub use driver_insights::Insights;
pub use driver_spend::{ModelSpend, Spending, TokenAverage};
pub use handle::Store;
pub(crate) use sql::{OutcomeColumns, lock_order};
// The plain values the store takes and gives live in the domain, shared with the use cases.
pub use crate::domain::queries::*;
pub use crate::domain::records::*;
pub use crate::domain::stats::{
    BatchSummary, DueStats, JobStats, LatencyStats, ModelCounts, ModelWindow, QueueFigures,
    TokenTotals,
};
pub use types::*;

/// The instant a queue statement acts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The database's own clock (`now()` on PostgreSQL; on SQLite, whose processes share one
    /// machine, that machine's clock). What every process sharing a database must use: a
    /// process whose clock runs ahead would otherwise rescue live jobs, and one behind would
    /// claim nothing.
    Database,
    /// A given instant (tests, and figures about a moment already chosen).
    At(DateTime<Utc>),
}

impl From<DateTime<Utc>> for Clock {
    fn from(at: DateTime<Utc>) -> Self {
        Clock::At(at)
    }
}

impl Clock {
    /// The instant, or `None` for the database's clock (bound as NULL: `COALESCE($n, now())`).
    pub fn fixed(self) -> Option<DateTime<Utc>> {
        match self {
            Clock::Database => None,
            Clock::At(at) => Some(at),
        }
    }

    /// The instant on this machine's clock (SQLite, where every process shares it).
    pub fn local(self) -> DateTime<Utc> {
        self.fixed().unwrap_or_else(Utc::now)
    }
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What can go wrong in the store, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down: answer 503, try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The URL names no supported database.
    #[error("{0}")]
    InvalidUrl(String),
    /// A row conflicts with an existing one (e.g. a model name already taken).
    #[error("{0}")]
    Conflict(String),
    /// A foreign key names a row that does not exist (e.g. a prompt on an unknown model).
    #[error("{0}")]
    NotFound(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else: a bug or a corrupt database; logged, answered 500 without details.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A prepared statement went missing or collided: the URL goes through a
    /// transaction-mode pooler that promptq was not told about.
    #[error(
        "database error: {0} (DATABASE_URL seems to go through a transaction-mode pooler such \
         as PgBouncer: set DATABASE_DIRECT_URL to the server's own URL, or add ?pgbouncer=true \
         to DATABASE_URL)"
    )]
    UnmarkedPooler(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound(db.message().to_owned())
            }
            // Postgres: admin shutdown, cannot connect now, too many connections.
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "53300")
                ) =>
            {
                StoreError::Unavailable(db.message().to_owned())
            }
            // duplicate_prepared_statement, invalid_sql_statement_name: on sqlx's own names,
            // only a pooler that hands the connection to another client produces them.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("42P05" | "26000"))
                    && db.message().contains("sqlx_s_") =>
            {
                StoreError::UnmarkedPooler(err)
            }
            _ => StoreError::Database(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The message a job carries when it ends `skipped` because its prompt or model went away.
pub const SKIPPED_INACTIVE: &str =
    "skipped: its prompt or model was deactivated or deleted before it ran";
/// The message a job carries when a user cancels it.
pub const SKIPPED_CANCELLED: &str = "skipped: cancelled by a user";

/// The message recorded for an attempt whose worker vanished.
pub const ABANDONED: &str =
    "attempt abandoned: its lease expired (the worker stopped or lost the database)";
/// The message recorded for an attempt whose worker's process died (its lock was released).
pub const ORPHANED: &str =
    "attempt abandoned: its worker's process died (the database saw its session end)";
/// The message recorded for an attempt whose worker's process is gone from its machine.
pub const PROCESS_GONE: &str =
    "attempt abandoned: its worker's process died (it stopped reporting and no longer exists)";
