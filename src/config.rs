//! Settings: every flag and environment variable of the contract, parsed and checked once.
//!
//! [`Settings`] is what clap reads (a flag wins over its variable); [`Settings::validate`]
//! turns it into a [`Config`] whose values can only be valid: a parsed schedule and time zone,
//! durations, bounded numbers. Nothing else in promptq reads the environment.

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::Secret;

mod alerts;
pub use alerts::AlertSettings;

/// Settings shared by every command; each one is a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Database: `sqlite:PATH` (embedded, created if missing) or `postgres://…`
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite:promptq.db",
        global = true
    )]
    pub database_url: String,

    /// The PostgreSQL server itself when DATABASE_URL goes through a transaction-mode pooler
    /// (PgBouncer): migrations and LISTEN use it; setting it marks DATABASE_URL as pooled
    #[arg(
        long,
        env = "DATABASE_DIRECT_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_direct_url: Option<String>,

    /// Secret that every /api/* request and the dashboard must present
    #[arg(long, env = "CRON_SECRET", hide_env_values = true, global = true)]
    pub cron_secret: Option<String>,

    /// OpenAI API key
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<String>,

    /// OpenAI API base URL
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1",
        global = true
    )]
    pub openai_base_url: String,

    /// OpenRouter API key
    #[arg(
        long,
        env = "OPENROUTER_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub openrouter_api_key: Option<String>,

    /// OpenRouter API base URL
    #[arg(
        long,
        env = "OPENROUTER_BASE_URL",
        default_value = "https://openrouter.ai/api/v1",
        global = true
    )]
    pub openrouter_base_url: String,

    /// Public base URL of this service (HTTP fan-out dispatch, OpenRouter attribution);
    /// NEXT_PUBLIC_APP_URL is read too
    #[arg(long, env = "APP_URL", global = true)]
    pub app_url: Option<String>,

    /// Trust `X-Forwarded-Proto` from the reverse proxy in front of `serve` (set it only
    /// behind one that sets the header itself): `https` there marks the dashboard's session
    /// cookie `Secure`
    #[arg(long, env = "TRUST_PROXY", global = true)]
    pub trust_proxy: bool,

    /// Listen address of `serve`
    #[arg(long, env = "BIND", default_value = "127.0.0.1:3000", global = true)]
    pub bind: SocketAddr,

    /// Jobs in flight in this process; 0 = this process runs no jobs
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 16, global = true)]
    pub worker_concurrency: u32,

    /// Cron expression (in TIMEZONE) of the built-in scheduler; `off` = only external triggers
    #[arg(
        long,
        env = "CRON_SCHEDULE",
        default_value = "0 0 * * *",
        global = true
    )]
    pub cron_schedule: String,

    /// IANA time zone in which schedules and daily batch keys are read
    #[arg(long, env = "TIMEZONE", default_value = "UTC", global = true)]
    pub timezone: String,

    /// Attempts per job before it is `failed` for good
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 3, global = true)]
    pub max_attempts: u32,

    /// Seconds a claim holds without a heartbeat before the job is rescued
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 30, global = true)]
    pub job_lease_secs: u64,

    /// Limit on one model call, in seconds
    #[arg(long, env = "MODEL_TIMEOUT_SECS", default_value_t = 120, global = true)]
    pub model_timeout_secs: u64,

    /// Seconds running model calls may go on after SIGINT/SIGTERM before they are cut and
    /// their jobs handed back to the queue
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10, global = true)]
    pub shutdown_grace_secs: u64,

    /// How jobs are dispatched after a scheduling pass: `workers` (in-process pool) or
    /// `http` (one POST {APP_URL}/api/jobs/process per job, as on serverless)
    #[arg(long, env = "DISPATCH", default_value = "workers", global = true)]
    pub dispatch: String,

    /// With DISPATCH=http: seconds one pass may spend sending jobs before it hands the rest
    /// to a fresh invocation of itself (POST {APP_URL}/api/jobs/dispatch); decimals allowed;
    /// unset = no limit (the serverless entry point sets one)
    #[arg(long, env = "DISPATCH_BUDGET_SECS", global = true)]
    pub dispatch_budget_secs: Option<f64>,

    /// Days after which attempt records and raw provider bodies are pruned, hourly, by
    /// `serve` and `worker` (jobs and answers stay); unset = keep everything
    #[arg(long, env = "RETENTION_DAYS", global = true)]
    pub retention_days: Option<u32>,

    /// US dollars all models together may spend a day (the day in TIMEZONE): once the day's
    /// answers cost this much, no new model calls start until the next day (calls already
    /// running finish). Per model: `params.budgetUsdPerDay`
    #[arg(long, env = "BUDGET_USD_PER_DAY", global = true)]
    pub budget_usd_per_day: Option<f64>,

    /// Log format: `text` or `json`
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,

    /// Provider Batch API (`params.batch`): the most requests in one batch file
    #[arg(
        long,
        env = "BATCH_MAX_REQUESTS",
        default_value_t = 50_000,
        global = true
    )]
    pub batch_max_requests: u32,

    /// Provider Batch API: the most bytes in one batch file
    #[arg(
        long,
        env = "BATCH_MAX_BYTES",
        default_value_t = 200_000_000,
        global = true
    )]
    pub batch_max_bytes: u64,

    /// Provider Batch API: the longest wait between two polls of a batch, in seconds
    /// (decimals allowed); polls start after a second and back off up to this
    #[arg(long, env = "BATCH_POLL_SECS", default_value_t = 60.0, global = true)]
    pub batch_poll_secs: f64,

    /// Provider Batch API: seconds one process may spend on one step of a batch (an upload,
    /// a submission, reading results) before another process may take the batch over
    #[arg(long, env = "BATCH_STEP_SECS", default_value_t = 600.0, global = true)]
    pub batch_step_secs: f64,

    /// Webhook that receives alerts as Slack-compatible JSON (a Slack incoming webhook works
    /// as is); unset = no alert is created or sent. Never logged or shown
    #[arg(long, env = "ALERT_WEBHOOK_URL", hide_env_values = true, global = true)]
    pub alert_webhook_url: Option<String>,

    /// Alert when a finished batch's failed share (failed jobs over succeeded and failed
    /// ones) is above this fraction
    #[arg(long, env = "ALERT_FAILURE_RATE", default_value_t = 0.1, global = true)]
    pub alert_failure_rate: f64,

    /// Alert when a slot of CRON_SCHEDULE still has no jobs this many minutes after it (the
    /// dead-man check); 0 = no such check
    #[arg(
        long,
        env = "ALERT_DEADMAN_MINUTES",
        default_value_t = 60,
        global = true
    )]
    pub alert_deadman_minutes: u32,

    /// Attempts to deliver one alert before it is marked failed
    #[arg(long, env = "ALERT_MAX_ATTEMPTS", default_value_t = 8, global = true)]
    pub alert_max_attempts: u32,

    /// Seconds before an alert's first redelivery (decimals allowed); doubles with each
    /// attempt, up to an hour; a `Retry-After` from the webhook wins
    #[arg(long, env = "ALERT_RETRY_SECS", default_value_t = 30.0, global = true)]
    pub alert_retry_secs: f64,

    /// Seconds between two alert passes (checks, then deliveries) of `serve` and `worker`
    #[arg(long, env = "ALERT_CHECK_SECS", default_value_t = 30.0, global = true)]
    pub alert_check_secs: f64,
}

/// How jobs reach a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    Workers,
    Http,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// `DATABASE_URL` is pooled, and this reaches the server directly.
    pub database_direct_url: Option<String>,
    pub cron_secret: Option<Secret>,
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: String,
    pub openrouter_api_key: Option<Secret>,
    pub openrouter_base_url: String,
    /// The `openai-compatible` endpoints the operator declared (`<NAME>_BASE_URL` and
    /// `<NAME>_API_KEY`), by name; read from the environment only.
    pub endpoints: std::collections::BTreeMap<String, crate::providers::CompatibleEndpoint>,
    /// `<NAME>_BASE_URL` variables left out because their value is not a usable URL.
    pub ignored_endpoints: Vec<String>,
    pub app_url: Option<String>,
    /// `X-Forwarded-Proto` is believed (a reverse proxy sets it).
    pub trust_proxy: bool,
    pub bind: SocketAddr,
    pub worker_concurrency: usize,
    /// The global schedule; `off` reads as daily and does not tick.
    pub cron_schedule: crate::schedule::Schedule,
    pub timezone: crate::schedule::Zone,
    pub max_attempts: i32,
    pub job_lease: Duration,
    pub model_timeout: Duration,
    pub shutdown_grace: Duration,
    pub dispatch: DispatchMode,
    /// How long one HTTP fan-out pass may send before it hands over; `None` = no limit.
    pub dispatch_budget: Option<Duration>,
    pub log_json: bool,
    /// Age after which `serve` and `worker` prune attempts and raw bodies; `None` = never.
    pub retention: Option<chrono::Duration>,
    /// `BUDGET_USD_PER_DAY`: what all models together may spend a day; `None` = no limit.
    pub budget_usd_per_day: Option<f64>,
    /// How batch-mode models' jobs go through the provider's Batch API.
    pub batch: BatchSettings,
    /// Webhook alerts; `None` without `ALERT_WEBHOOK_URL` (nothing is created or sent).
    pub alerts: Option<AlertSettings>,
}

/// The provider Batch API's settings (`BATCH_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSettings {
    /// Requests per batch file at most (OpenAI: 50,000).
    pub max_requests: usize,
    /// Bytes per batch file at most (OpenAI: 200 MB).
    pub max_bytes: usize,
    /// The longest wait between two polls.
    pub poll_max: Duration,
    /// How long a process may hold one batch's step before another takes it over.
    pub step: Duration,
}

/// A setting that cannot be used, with what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Settings {
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let bad = |message: String| Err(ConfigError(message));
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return bad("DATABASE_URL must start with sqlite: or postgres://".into());
        }
        let database_direct_url = self.database_direct_url.clone().filter(|u| !u.is_empty());
        if database_direct_url.as_ref().is_some_and(|direct| {
            self.database_url.starts_with("sqlite:")
                || !(direct.starts_with("postgres://") || direct.starts_with("postgresql://"))
        }) {
            return bad(
                "DATABASE_DIRECT_URL must be a postgres:// URL, beside a postgres:// DATABASE_URL"
                    .into(),
            );
        }
        let timezone = crate::schedule::parse_time_zone(&self.timezone)
            .map_err(|err| ConfigError(format!("TIMEZONE: {err}")))?;
        let cron_schedule = crate::schedule::Schedule::parse(&self.cron_schedule, timezone)
            .map_err(|err| ConfigError(format!("CRON_SCHEDULE: {err}")))?;
        if !(1..=100).contains(&self.max_attempts) {
            return bad("MAX_ATTEMPTS must be between 1 and 100".into());
        }
        if !(2..=86_400).contains(&self.job_lease_secs) {
            return bad("JOB_LEASE_SECS must be between 2 and 86400".into());
        }
        if !(1..=3_600).contains(&self.model_timeout_secs) {
            return bad("MODEL_TIMEOUT_SECS must be between 1 and 3600".into());
        }
        if self.worker_concurrency > 10_000 {
            return bad("WORKER_CONCURRENCY must be at most 10000".into());
        }
        let dispatch = match self.dispatch.as_str() {
            "workers" => DispatchMode::Workers,
            "http" => DispatchMode::Http,
            other => return bad(format!("DISPATCH must be workers or http, not '{other}'")),
        };
        let app_url = self
            .app_url
            .clone()
            .or_else(|| std::env::var("NEXT_PUBLIC_APP_URL").ok())
            .filter(|url| !url.is_empty())
            .map(|url| url.trim_end_matches('/').to_owned());
        if dispatch == DispatchMode::Http {
            match &app_url {
                None => return bad("DISPATCH=http needs APP_URL (or NEXT_PUBLIC_APP_URL)".into()),
                Some(url) => check_fan_out_url(url)?,
            }
        }
        let log_json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => return bad(format!("LOG_FORMAT must be text or json, not '{other}'")),
        };
        let retention = match self.retention_days {
            None => None,
            Some(days @ 1..=36_500) => Some(chrono::Duration::days(i64::from(days))),
            Some(_) => return bad("RETENTION_DAYS must be between 1 and 36500".into()),
        };
        let secret = |value: &Option<String>| Secret::from_optional(value.clone());
        let crate::providers::ProviderSettings {
            endpoints,
            ignored_endpoints,
            ..
        } = crate::providers::ProviderSettings::from_env(Duration::from_secs(1));
        let dispatch_budget = match self.dispatch_budget_secs {
            None => None,
            Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
                Some(Duration::from_secs_f64(secs))
            }
            Some(_) => {
                return bad(
                    "DISPATCH_BUDGET_SECS must be a number of seconds above 0 (at most 86400)"
                        .into(),
                );
            }
        };
        let budget_usd_per_day = match self.budget_usd_per_day {
            None => None,
            Some(usd) if usd.is_finite() && usd >= 0.0 => Some(usd),
            Some(usd) => {
                return bad(format!(
                    "BUDGET_USD_PER_DAY must be a number of US dollars of at least 0, not {usd}"
                ));
            }
        };
        let secs = |name: &str, value: f64| {
            if value.is_finite() && (0.05..=86_400.0).contains(&value) {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(ConfigError(format!(
                    "{name} must be a number of seconds from 0.05 to 86400"
                )))
            }
        };
        if !(1..=50_000).contains(&self.batch_max_requests) {
            return bad("BATCH_MAX_REQUESTS must be between 1 and 50000".into());
        }
        if !(1_000..=200_000_000).contains(&self.batch_max_bytes) {
            return bad("BATCH_MAX_BYTES must be between 1000 and 200000000".into());
        }
        let batch = BatchSettings {
            max_requests: self.batch_max_requests as usize,
            max_bytes: self.batch_max_bytes as usize,
            poll_max: secs("BATCH_POLL_SECS", self.batch_poll_secs)?,
            step: secs("BATCH_STEP_SECS", self.batch_step_secs)?,
        };
        let alerts = self.alert_settings(&secs)?;
        Ok(Config {
            database_url: self.database_url.clone(),
            database_direct_url,
            cron_secret: secret(&self.cron_secret),
            openai_api_key: secret(&self.openai_api_key),
            openai_base_url: self.openai_base_url.trim_end_matches('/').to_owned(),
            openrouter_api_key: secret(&self.openrouter_api_key),
            openrouter_base_url: self.openrouter_base_url.trim_end_matches('/').to_owned(),
            endpoints,
            ignored_endpoints,
            app_url,
            trust_proxy: self.trust_proxy,
            bind: self.bind,
            worker_concurrency: self.worker_concurrency as usize,
            cron_schedule,
            timezone,
            max_attempts: self.max_attempts as i32,
            job_lease: Duration::from_secs(self.job_lease_secs),
            model_timeout: Duration::from_secs(self.model_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            dispatch,
            dispatch_budget,
            log_json,
            retention,
            budget_usd_per_day,
            batch,
            alerts,
        })
    }
}

/// The HTTP fan-out sends the `CRON_SECRET` with every call: over plain `http://` only to this
/// machine, where it never crosses a network.
fn check_fan_out_url(url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        ConfigError("APP_URL is not a URL (e.g. https://promptq.example.com)".into())
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(ConfigError(
            "DISPATCH=http sends the CRON_SECRET with every call, and APP_URL is plain http:// \
             to another host: use an https:// APP_URL (plain http:// is allowed only to \
             localhost, 127.0.0.1 or [::1])"
                .into(),
        )),
        _ => Err(ConfigError(
            "APP_URL must start with https:// or http://".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fan_out_sends_the_secret_in_clear_only_to_this_machine() {
        for ok in [
            "https://promptq.example.com",
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            assert!(check_fan_out_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://promptq.example.com",
            "http://10.0.0.5:3000",
            "http://localhost.evil.example",
            "ftp://x",
            "promptq",
        ] {
            assert!(check_fan_out_url(bad).is_err(), "{bad}");
        }
    }
}
