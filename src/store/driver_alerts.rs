//! The store's contract for the alert outbox: alerts written once under a dedupe key, then
//! claimed, delivered and marked like jobs (claim with a lease and one more attempt; every
//! mark fenced by that attempt, so a stale deliverer cannot overwrite a newer one's outcome).
//!
//! Both backends implement it in a file of their own (`sqlite/alerts.rs`,
//! `postgres/alerts.rs`) over the rows decoded here; `tests/store_conformance.rs` holds them to
//! the same answers (a key inserted twice is one alert; concurrent claimers never share one).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use super::sql::Time;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A tracked term's mention rate changed significantly between two batches.
    Mention,
    /// A finished batch's share of failed jobs is above the threshold.
    Failures,
    /// A scheduled slot's batch has no jobs long after the slot (the dead-man check).
    Deadman,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Mention => "mention",
            AlertKind::Failures => "failures",
            AlertKind::Deadman => "deadman",
        }
    }

    fn parse(text: &str) -> Result<AlertKind, sqlx::Error> {
        Ok(match text {
            "mention" => AlertKind::Mention,
            "failures" => AlertKind::Failures,
            "deadman" => AlertKind::Deadman,
            other => return Err(decode(format!("unknown alert kind '{other}'"))),
        })
    }
}

/// Where an alert is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Waiting for its (next) attempt at `next_attempt_at`.
    Pending,
    /// Claimed by a deliverer until its lease expires.
    Delivering,
    /// The webhook answered 2xx.
    Delivered,
    /// Every attempt failed; `last_error` says how the last one did.
    Failed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Delivering => "delivering",
            AlertStatus::Delivered => "delivered",
            AlertStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<AlertStatus, sqlx::Error> {
        Ok(match text {
            "pending" => AlertStatus::Pending,
            "delivering" => AlertStatus::Delivering,
            "delivered" => AlertStatus::Delivered,
            "failed" => AlertStatus::Failed,
            other => return Err(decode(format!("unknown alert status '{other}'"))),
        })
    }
}

fn decode(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

/// An alert to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// Unique among all alerts ever written: kind, subject and batch or slot
    /// (`failures@2025-10-14`, `deadman@2025-10-14`, `mention:CRMs/HubSpot/gpt@2025-10-14`).
    pub dedupe_key: String,
    pub kind: AlertKind,
    pub batch_key: Option<String>,
    /// The human sentence (Slack's `text`).
    pub message: String,
    pub details: serde_json::Value,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: AlertKind,
    pub batch_key: Option<String>,
    pub message: String,
    pub details: serde_json::Value,
    pub status: AlertStatus,
    /// Attempts started; a claim adds one, and the marks are fenced by it.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Alerts by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertCounts {
    /// Not delivered yet and still being tried (pending or being delivered).
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
}

/// The columns every select of an alert reads.
pub(crate) const ALERT_COLUMNS: &str = "id, dedupe_key, kind, batch_key, message, details, \
    status, attempts, next_attempt_at, last_error, created_at, delivered_at";

/// An `alerts` row as both backends read it.
#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: i64,
    dedupe_key: String,
    kind: String,
    batch_key: Option<String>,
    message: String,
    details: String,
    status: String,
    attempts: i32,
    next_attempt_at: Time,
    last_error: Option<String>,
    created_at: Time,
    delivered_at: Option<Time>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = sqlx::Error;

    fn try_from(row: AlertRow) -> Result<Alert, sqlx::Error> {
        Ok(Alert {
            id: row.id,
            dedupe_key: row.dedupe_key,
            kind: AlertKind::parse(&row.kind)?,
            batch_key: row.batch_key,
            message: row.message,
            details: serde_json::from_str(&row.details)
                .map_err(|err| decode(format!("alert details are not JSON: {err}")))?,
            status: AlertStatus::parse(&row.status)?,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at.into(),
            last_error: row.last_error,
            created_at: row.created_at.into(),
            delivered_at: row.delivered_at.map(Into::into),
        })
    }
}

/// Rows to alerts, oldest first.
pub(crate) fn alerts_from_rows(rows: Vec<AlertRow>) -> StoreResult<Vec<Alert>> {
    let mut alerts = rows
        .into_iter()
        .map(Alert::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    alerts.sort_by_key(|a| a.id);
    Ok(alerts)
}

/// The alert outbox.
pub trait Alerts: Send + Sync {
    /// Writes `new` as a pending alert due at `now`, unless an alert with its dedupe key
    /// exists (whoever wrote it, whenever): the new alert's id, or `None` when the key was
    /// taken. Concurrent inserts of one key write one row.
    fn alert_insert(
        &self,
        new: &NewAlert,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Claims up to `limit` alerts, oldest first, that are pending and due at `now` or being
    /// delivered under a lease that expired (its deliverer died): each becomes `delivering`
    /// until `now + lease`, with one more attempt. Two claimers never get the same alert
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: its single writer).
    fn alerts_claim(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<Vec<Alert>>> + Send;

    /// Marks attempt `attempt` of alert `id` delivered; `false` when that attempt no longer
    /// owns the alert (its lease expired and another claim took it).
    fn alert_delivered(
        &self,
        id: i64,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Puts alert `id` back to pending, due at `at`, with `error`; fenced like
    /// [`Alerts::alert_delivered`].
    fn alert_retry(
        &self,
        id: i64,
        attempt: i32,
        at: DateTime<Utc>,
        error: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Marks alert `id` failed for good with `error`; fenced like [`Alerts::alert_delivered`].
    fn alert_failed(
        &self,
        id: i64,
        attempt: i32,
        error: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// How many alerts are still to deliver, failed, delivered.
    fn alerts_count(&self) -> impl Future<Output = StoreResult<AlertCounts>> + Send;

    /// The newest `limit` alerts, newest first.
    fn alerts_recent(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<Alert>>> + Send;
}
