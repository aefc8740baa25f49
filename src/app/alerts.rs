//! Webhook alerts, delivered through an outbox in the database: what is worth an alert is
//! written once as a row ([`super::alert_checks`]), and a delivery pass claims the rows due,
//! POSTs each to `ALERT_WEBHOOK_URL` ([`crate::engine::webhook`]) and marks it.
//!
//! Never lost: an alert is a row before anything is sent; a failed attempt (network error,
//! timeout, 408, 429, 5xx) puts it back with a later due time (backoff, or the webhook's
//! `Retry-After`), and a process that dies mid-attempt leaves a lease that expires, after which
//! any process claims it again. Only [`crate::config::AlertSettings::max_attempts`] failures,
//! or an answer that says the request itself is wrong (another 4xx), end in `failed`, where
//! the error is kept and `status` shows it.
//!
//! Never sent twice, with one window left: an alert is marked delivered right after the 2xx,
//! in one short statement, so only a process that dies (or loses its database) between the
//! webhook's answer and that statement can have it sent again by the next claimer. The body
//! carries `alertId` and `dedupeKey`, and the request an `X-Promptq-Alert-Id` header, so a
//! receiver can drop such a repeat.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{App, AppResult};
use crate::engine::webhook::{self, Delivery};
use crate::store::{Alert, AlertCounts};

/// Alerts one delivery pass claims at most.
const CLAIM: i64 = 20;
/// How long a claimed alert is held: longer than a POST may take.
const LEASE: Duration = Duration::from_secs(60);

/// What a delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    pub delivered: u64,
    /// Attempts that failed and will be tried again.
    pub retried: u64,
    /// Alerts given up on in this pass.
    pub failed: u64,
}

impl App {
    /// Whether `ALERT_WEBHOOK_URL` is set (without it nothing is created or sent).
    pub fn alerts_enabled(&self) -> bool {
        self.config().alerts.is_some()
    }

    /// Delivers the alerts due at `now` (claimed in rounds until none is left due).
    pub async fn deliver_alerts(&self, now: DateTime<Utc>) -> AppResult<DeliveryReport> {
        let mut report = DeliveryReport::default();
        let Some(settings) = &self.config().alerts else {
            return Ok(report);
        };
        loop {
            let claimed = self.store().alerts_claim(CLAIM, now, LEASE).await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            for alert in claimed {
                match webhook::deliver(&settings.webhook, &alert).await {
                    Delivery::Delivered => {
                        // As soon as the answer is in: the window in which a crash resends.
                        self.store()
                            .alert_delivered(alert.id, alert.attempts, Utc::now().max(now))
                            .await?;
                        report.delivered += 1;
                    }
                    Delivery::Retry { error, retry_after }
                        if alert.attempts < settings.max_attempts =>
                    {
                        let wait = webhook::backoff(settings.retry, alert.attempts, retry_after);
                        let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        tracing::warn!(alert = alert.id, attempt = alert.attempts, %error,
                            "alert not delivered; trying again later");
                        self.store()
                            .alert_retry(alert.id, alert.attempts, at, &error)
                            .await?;
                        report.retried += 1;
                    }
                    Delivery::Retry { error, .. } | Delivery::Refused { error } => {
                        tracing::error!(alert = alert.id, attempt = alert.attempts, %error,
                            "alert given up");
                        self.store()
                            .alert_failed(alert.id, alert.attempts, &error)
                            .await?;
                        report.failed += 1;
                    }
                }
            }
        }
    }

    /// Alerts still to deliver and failed ones; `None` when alerts are off.
    pub async fn alert_counts(&self) -> AppResult<Option<AlertCounts>> {
        if !self.alerts_enabled() {
            return Ok(None);
        }
        Ok(Some(self.store().alerts_count().await?))
    }

    /// The newest `limit` alerts, newest first.
    pub async fn alerts_recent(&self, limit: i64) -> AppResult<Vec<Alert>> {
        super::check_page(crate::store::Page { limit, offset: 0 })?;
        Ok(self.store().alerts_recent(limit).await?)
    }

    /// One alert pass: the checks, then the deliveries, at the database's time. Errors are
    /// logged: a pass that fails is done again by the next one.
    pub async fn alert_pass(&self) {
        if !self.alerts_enabled() {
            return;
        }
        let now = match self.store().clock_now().await {
            Ok(now) => now,
            Err(err) => {
                tracing::warn!(error = %err, "alerts: cannot read the time");
                return;
            }
        };
        if let Err(err) = self.check_alerts(now).await {
            tracing::warn!(error = %err, "alerts: the checks failed");
        }
        match self.deliver_alerts(now).await {
            Ok(report) if report != DeliveryReport::default() => {
                tracing::info!(
                    delivered = report.delivered,
                    retried = report.retried,
                    failed = report.failed,
                    "alerts: delivery pass"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "alerts: delivery failed"),
        }
    }
}

/// The alert loop of `serve` and `worker`: a pass every `ALERT_CHECK_SECS`, until `stop`;
/// `None` without `ALERT_WEBHOOK_URL`. Every process may run it: the outbox's unique keys and
/// claims keep each alert created once and sent by one of them.
pub fn spawn_alerts(app: App, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let every = app.config().alerts.as_ref()?.every;
    Some(tokio::spawn(async move {
        loop {
            app.alert_pass().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }))
}
