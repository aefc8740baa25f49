//! The only code in promptq that speaks to LLM APIs.
//!
//! [`Providers`] takes a prompt and a [`Model`] row and returns either a [`Completion`] (text,
//! served model, finish reason, token usage, cost, latency, request id, citations, raw body)
//! or a [`ProviderError`] classified by what the engine should do next: retry (maybe after
//! `retry_after`, maybe slowing down), or give up, and whether the whole provider account is
//! at fault. `openai`, `openrouter` and `openai-compatible` models share one thin chat
//! completions client ([`openai`]); `mock` answers locally and deterministically ([`mock`]).
//!
//! What this module must never do: log, store or return an API key (every message passes
//! through a redactor, and [`Secret`] prints as `[redacted]`); read the environment
//! after start-up (keys are resolved once into [`ProviderSettings`]); touch the database or
//! decide retry policy (backoff and caps belong to the engine). The HTTP client is built once
//! and shared, so calls reuse pooled connections.

mod error;
mod mock;
mod openai;
mod params;
mod ratelimit;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Model, NewResponse, ProviderKind};

use error::Redactor;
pub use error::{ErrorKind, MAX_MESSAGE_CHARS, ProviderError, one_line};
pub use params::{ModelParams, check_base_url, check_params, is_key_variable_name};
pub use ratelimit::{MAX_WAIT, RateLimitHint, parse_duration, parse_http_date, retry_after};

/// OpenAI's endpoint when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// OpenRouter's endpoint when `OPENROUTER_BASE_URL` is not set.
pub const DEFAULT_OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// `MODEL_TIMEOUT_SECS` when not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub use crate::domain::Secret;

/// Everything the providers need from the configuration, read once at start-up.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: String,
    pub openrouter_api_key: Option<Secret>,
    pub openrouter_base_url: String,
    /// Sent to OpenRouter as `HTTP-Referer` for attribution.
    pub app_url: Option<String>,
    /// Keys that `openai-compatible` models may name with `params.apiKeyEnv`, by variable
    /// name. Only `*_API_KEY` names are ever looked up (see [`is_key_variable_name`]).
    pub compatible_keys: BTreeMap<String, Secret>,
    /// The limit on one call, connection to last byte (`MODEL_TIMEOUT_SECS`).
    pub timeout: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            openai_api_key: None,
            openai_base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            openrouter_api_key: None,
            openrouter_base_url: DEFAULT_OPENROUTER_BASE_URL.to_owned(),
            app_url: None,
            compatible_keys: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ProviderSettings {
    /// Reads the contract's variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
    /// `OPENROUTER_API_KEY`, `OPENROUTER_BASE_URL`, `APP_URL` or `NEXT_PUBLIC_APP_URL`) and
    /// every `*_API_KEY` variable for `openai-compatible` models. The configuration may
    /// override any field afterwards (a flag wins over the environment).
    pub fn from_env(timeout: Duration) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        ProviderSettings {
            openai_api_key: Secret::from_optional(var("OPENAI_API_KEY")),
            openai_base_url: var("OPENAI_BASE_URL")
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned()),
            openrouter_api_key: Secret::from_optional(var("OPENROUTER_API_KEY")),
            openrouter_base_url: var("OPENROUTER_BASE_URL")
                .unwrap_or_else(|| DEFAULT_OPENROUTER_BASE_URL.to_owned()),
            app_url: var("APP_URL").or_else(|| var("NEXT_PUBLIC_APP_URL")),
            // vars_os: `vars()` panics on a variable that is not UTF-8, and any process
            // environment may hold one; such variables are simply not keys.
            compatible_keys: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .filter(|(name, _)| is_key_variable_name(name))
                .filter_map(|(name, value)| Secret::from_optional(Some(value)).map(|s| (name, s)))
                .collect(),
            timeout,
        }
    }

    fn all_keys(&self) -> impl Iterator<Item = &str> {
        self.openai_api_key
            .iter()
            .chain(&self.openrouter_api_key)
            .chain(self.compatible_keys.values())
            .map(Secret::expose)
    }
}

/// Why [`Providers::new`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{name}: {reason}")]
    InvalidBaseUrl { name: &'static str, reason: String },
    #[error("the timeout must be longer than zero")]
    ZeroTimeout,
}

/// The model-calling service: one pooled HTTP client and the settings, cheap to clone.
#[derive(Clone)]
pub struct Providers {
    inner: Arc<Inner>,
}

struct Inner {
    /// Built at the first call to a real provider: a process that only runs `mock` models
    /// never pays for the TLS stack (its memory shows in a worker's peak RSS).
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
    settings: ProviderSettings,
    redactor: Redactor,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Providers")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Checks the settings at start-up rather than at the first call; the one HTTP client
    /// (rustls, connection pool) is built at the first call to a real provider.
    pub fn new(settings: ProviderSettings) -> Result<Self, SetupError> {
        for (name, url) in [
            ("OPENAI_BASE_URL", &settings.openai_base_url),
            ("OPENROUTER_BASE_URL", &settings.openrouter_base_url),
        ] {
            check_base_url(url).map_err(|reason| SetupError::InvalidBaseUrl { name, reason })?;
        }
        if settings.timeout.is_zero() {
            return Err(SetupError::ZeroTimeout);
        }
        let redactor = Redactor::new(settings.all_keys());
        Ok(Providers {
            inner: Arc::new(Inner {
                client: std::sync::OnceLock::new(),
                settings,
                redactor,
            }),
        })
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.inner.settings
    }

    /// The HTTP client, built on first use.
    fn client(&self) -> Result<&reqwest::Client, ProviderError> {
        let settings = &self.inner.settings;
        self.inner
            .client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("promptq/", env!("CARGO_PKG_VERSION")))
                    .timeout(settings.timeout)
                    .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
                    .pool_idle_timeout(Duration::from_secs(60))
                    // An API endpoint has no business redirecting a POST; following one would
                    // turn it into a GET, or carry the key to another host.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|message| ProviderError::new(ErrorKind::Permanent, message.clone()))
    }

    /// Whether calls to this provider can be made at all (its key is set), for the CLI and
    /// the dashboard to warn before jobs fail.
    pub fn is_configured(&self, kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::OpenAi => self.inner.settings.openai_api_key.is_some(),
            ProviderKind::OpenRouter => self.inner.settings.openrouter_api_key.is_some(),
            ProviderKind::OpenAiCompatible | ProviderKind::Mock => true,
        }
    }

    /// Redacts every configured key (and anything shaped like one) from `text`, for callers
    /// that must show text which may have come from a provider.
    pub fn redact(&self, text: &str) -> String {
        self.inner.redactor.message(text)
    }

    /// The endpoint `model` calls: models with the same base URL and key share one, and an
    /// account-level failure (bad key, no credit) is the endpoint's, not the provider type's.
    /// `None` for the mock, and for a model whose params name no endpoint.
    pub fn endpoint(&self, model: &Model) -> Option<EndpointIdentity> {
        use sha2::{Digest, Sha256};
        let settings = &self.inner.settings;
        let params = ModelParams::parse(&model.params).ok()?;
        let (base, key_name) = match model.provider {
            ProviderKind::Mock => return None,
            ProviderKind::OpenAi => (settings.openai_base_url.as_str(), "OPENAI_API_KEY"),
            ProviderKind::OpenRouter => {
                (settings.openrouter_base_url.as_str(), "OPENROUTER_API_KEY")
            }
            ProviderKind::OpenAiCompatible => (params.base_url?, params.api_key_env.unwrap_or("")),
        };
        let base = base.trim_end_matches('/');
        // The key's variable name, never the key: the identity is stored and shown.
        let digest = Sha256::digest(format!("{}\n{base}\n{key_name}", model.provider));
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Some(EndpointIdentity {
            id: u64::from_be_bytes(id),
            base_url: base.to_owned(),
        })
    }

    /// Runs `prompt` on `model` once. `run_index` and `attempt` only matter to the mock,
    /// whose answers depend on the run and whose simulated failures depend on the attempt
    /// (so a retry can succeed).
    pub async fn complete(
        &self,
        model: &Model,
        prompt: &str,
        run_index: i32,
        attempt: i32,
    ) -> Result<Completion, ProviderError> {
        let params = ModelParams::parse(&model.params).map_err(|e| {
            ProviderError::new(
                ErrorKind::Permanent,
                self.inner.redactor.message(&format!(
                    "{} model '{}' has invalid params: {e}",
                    model.provider, model.name
                )),
            )
        })?;
        let inner = &*self.inner;
        match model.provider {
            ProviderKind::Mock => {
                mock::complete(
                    model,
                    &params,
                    prompt,
                    run_index,
                    attempt,
                    inner.settings.timeout,
                )
                .await
            }
            kind => {
                let endpoint =
                    openai::Endpoint::resolve(kind, &params, &inner.settings).map_err(|err| {
                        ProviderError {
                            message: inner.redactor.message(&err.message),
                            ..err
                        }
                    })?;
                // Boxed: the HTTP call's state is large, and every worker task would otherwise
                // carry room for it, mock calls included (peak memory of a pool).
                let client = self.client()?;
                Box::pin(openai::complete(
                    client,
                    &inner.redactor,
                    &endpoint,
                    &inner.settings,
                    model,
                    &params,
                    prompt,
                ))
                .await
            }
        }
    }
}

/// Where a model's calls go, without the key: see [`Providers::endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointIdentity {
    /// A hash of the provider type, base URL and the key's variable name.
    pub id: u64,
    /// The base URL (it holds no credentials: those are refused in settings and params).
    pub base_url: String,
}

/// Token counts as the provider reported them; `None` where it reported nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: Option<i64>,
    /// Completion tokens spent on hidden reasoning.
    pub reasoning_tokens: Option<i64>,
}

impl Usage {
    /// Tokens the call consumed, for token-per-minute accounting: the reported total, else
    /// the sum of the parts.
    pub fn tokens_used(&self) -> Option<i64> {
        self.total_tokens
            .or(match (self.prompt_tokens, self.completion_tokens) {
                (None, None) => None,
                (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
            })
    }
}

/// A model's answer. A `finish_reason` of `length` or `content_filter` is still a
/// completion: it is recorded as such, not turned into an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// The model (version) the provider says served the call.
    pub served_model: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// In US dollars, when the provider reports it (OpenRouter's `usage.cost`).
    pub cost_usd: Option<f64>,
    /// From sending the request to reading the last byte.
    pub latency: Duration,
    pub request_id: Option<String>,
    /// Citations or annotations the provider attached.
    pub citations: Option<serde_json::Value>,
    /// The body as received (configured keys redacted); `None` for the mock.
    pub raw: Option<String>,
    /// `None` for the mock.
    pub http_status: Option<u16>,
    pub rate_limit: Option<RateLimitHint>,
}

impl Completion {
    /// The row to store in `responses`.
    pub fn into_response(self) -> NewResponse {
        NewResponse {
            text: self.text,
            served_model: self.served_model,
            finish_reason: self.finish_reason,
            prompt_tokens: self.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens,
            total_tokens: self.usage.total_tokens,
            cached_tokens: self.usage.cached_tokens,
            reasoning_tokens: self.usage.reasoning_tokens,
            cost_usd: self.cost_usd,
            latency_ms: i64::try_from(self.latency.as_millis()).unwrap_or(i64::MAX),
            provider_request_id: self.request_id,
            http_status: self.http_status,
            citations: self.citations.map(|c| c.to_string()),
            raw: self.raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let settings = ProviderSettings {
            openai_api_key: Some(Secret::new("sk-test-abcdefghijklmnop")),
            compatible_keys: [("LOCAL_API_KEY".to_owned(), Secret::new("local-secret"))]
                .into_iter()
                .collect(),
            ..ProviderSettings::default()
        };
        let printed = format!("{settings:?} {}", Secret::new("x-secret"));
        assert!(!printed.contains("abcdefghijklmnop"), "{printed}");
        assert!(!printed.contains("local-secret"), "{printed}");
        assert!(!printed.contains("x-secret"), "{printed}");
        let providers = Providers::new(settings).expect("valid settings");
        let printed = format!("{providers:?}");
        assert!(!printed.contains("abcdefghijklmnop"), "{printed}");
    }

    #[test]
    fn blank_keys_are_no_keys() {
        assert_eq!(Secret::from_optional(Some("  ".into())), None);
        assert_eq!(Secret::from_optional(None), None);
        assert!(Secret::from_optional(Some(" k ".into())).is_some_and(|s| s.expose() == "k"));
    }

    #[test]
    fn bad_settings_fail_at_start() {
        let bad_url = ProviderSettings {
            openai_base_url: "api.openai.com".into(),
            ..ProviderSettings::default()
        };
        assert!(matches!(
            Providers::new(bad_url),
            Err(SetupError::InvalidBaseUrl {
                name: "OPENAI_BASE_URL",
                ..
            })
        ));
        let zero = ProviderSettings {
            timeout: Duration::ZERO,
            ..ProviderSettings::default()
        };
        assert!(matches!(Providers::new(zero), Err(SetupError::ZeroTimeout)));
    }

    #[test]
    fn usage_total_falls_back_to_the_sum() {
        let usage = Usage {
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            ..Usage::default()
        };
        assert_eq!(usage.tokens_used(), Some(15));
        assert_eq!(Usage::default().tokens_used(), None);
    }

    #[test]
    fn a_completion_becomes_a_response_row() {
        let completion = Completion {
            text: "hi".into(),
            served_model: Some("gpt-4o-mini-2024-07-18".into()),
            finish_reason: Some("length".into()),
            usage: Usage {
                prompt_tokens: Some(3),
                completion_tokens: Some(1),
                total_tokens: Some(4),
                cached_tokens: Some(0),
                reasoning_tokens: None,
            },
            cost_usd: Some(0.001),
            latency: Duration::from_millis(1234),
            request_id: Some("req_1".into()),
            citations: Some(serde_json::json!(["https://example.com"])),
            raw: Some("{}".into()),
            http_status: Some(200),
            rate_limit: None,
        };
        let row = completion.into_response();
        assert_eq!(row.latency_ms, 1234);
        assert_eq!(row.finish_reason.as_deref(), Some("length"));
        assert_eq!(row.total_tokens, Some(4));
        assert_eq!(row.citations.as_deref(), Some(r#"["https://example.com"]"#));
        assert_eq!(row.http_status, Some(200));
    }
}
