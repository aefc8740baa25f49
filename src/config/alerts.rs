//! The webhook alerts' settings (`ALERT_*`), checked once like every other setting; no
//! message here ever contains the webhook's URL (Slack's holds a secret token).

use std::time::Duration;

use super::{ConfigError, Settings};
use crate::domain::Secret;

/// The webhook alerts' settings (`ALERT_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// `ALERT_WEBHOOK_URL`: holds a secret token in Slack's case, so never shown.
    pub webhook: Secret,
    /// A finished batch's failed share above this fires an alert.
    pub failure_rate: f64,
    /// How long after a slot its batch may have no jobs; `None` = no dead-man check.
    pub deadman: Option<chrono::Duration>,
    /// Delivery attempts per alert.
    pub max_attempts: i32,
    /// The wait before the first redelivery (doubling after each).
    pub retry: Duration,
    /// Between two passes of the background loop.
    pub every: Duration,
}

impl Settings {
    /// The `ALERT_*` settings, checked; `None` without a webhook. No message names the URL.
    pub(super) fn alert_settings(
        &self,
        secs: &dyn Fn(&str, f64) -> Result<Duration, ConfigError>,
    ) -> Result<Option<AlertSettings>, ConfigError> {
        let Some(webhook) = Secret::from_optional(self.alert_webhook_url.clone()) else {
            return Ok(None);
        };
        let scheme_ok = reqwest::Url::parse(webhook.expose())
            .is_ok_and(|url| matches!(url.scheme(), "https" | "http") && url.has_host());
        if !scheme_ok {
            return Err(ConfigError(
                "ALERT_WEBHOOK_URL must be an https:// (or http://) URL".into(),
            ));
        }
        let rate = self.alert_failure_rate;
        if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
            return Err(ConfigError(
                "ALERT_FAILURE_RATE must be a fraction from 0 to 1 (e.g. 0.1 for 10%)".into(),
            ));
        }
        if self.alert_deadman_minutes > 7 * 24 * 60 {
            return Err(ConfigError(
                "ALERT_DEADMAN_MINUTES must be at most 10080 (a week)".into(),
            ));
        }
        if !(1..=100).contains(&self.alert_max_attempts) {
            return Err(ConfigError(
                "ALERT_MAX_ATTEMPTS must be between 1 and 100".into(),
            ));
        }
        Ok(Some(AlertSettings {
            webhook,
            failure_rate: rate,
            deadman: (self.alert_deadman_minutes > 0)
                .then(|| chrono::Duration::minutes(i64::from(self.alert_deadman_minutes))),
            max_attempts: self.alert_max_attempts as i32,
            retry: secs("ALERT_RETRY_SECS", self.alert_retry_secs)?,
            every: secs("ALERT_CHECK_SECS", self.alert_check_secs)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Settings {
        use clap::{Args, FromArgMatches};
        let command = Settings::augment_args(clap::Command::new("promptq"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["promptq", "--alert-webhook-url", url])
            .unwrap();
        Settings::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn a_bad_webhook_url_is_refused_without_being_shown() {
        for bad in [
            "hooks.slack.com/services/T0/B0/sEcReT",
            "ftp://x/sEcReT",
            "mailto:sEcReT@example.com",
        ] {
            let err = settings(bad).validate().unwrap_err().to_string();
            assert!(
                err.contains("ALERT_WEBHOOK_URL") && !err.contains("sEcReT"),
                "{err}"
            );
        }
        let config = settings("https://hooks.slack.com/services/T0/B0/sEcReT")
            .validate()
            .unwrap();
        let alerts = config.alerts.clone().expect("alerts on");
        assert!(!format!("{config:?}").contains("sEcReT"));
        assert_eq!(alerts.failure_rate, 0.1);
        assert_eq!(alerts.deadman, Some(chrono::Duration::minutes(60)));
        assert!(settings("").validate().unwrap().alerts.is_none());
    }
}
