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

pub mod batch;
mod endpoints;
mod error;
mod mock;
pub use mock::latency as mock_latency;
mod mock_brands;
mod openai;
mod params;
mod ratelimit;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Model, ModelSpec, NewResponse, ProviderKind};

pub use crate::domain::spec::{check_base_url, endpoint_name, is_key_variable_name};
pub use endpoints::{CompatibleEndpoint, RouteError};
use error::Redactor;
pub use error::{ErrorKind, MAX_MESSAGE_CHARS, ProviderError, one_line};
pub use params::check_params;
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
    /// The operator's `openai-compatible` endpoints by name (`OLLAMA` for `OLLAMA_BASE_URL`
    /// and `OLLAMA_API_KEY`): the only places their keys may go.
    pub endpoints: BTreeMap<String, CompatibleEndpoint>,
    /// `<NAME>_BASE_URL` variables that were left out, and why (warned about at start).
    pub ignored_endpoints: Vec<String>,
    /// Other secrets (the `CRON_SECRET`) that must never reach a stored error either.
    pub redact_also: Vec<Secret>,
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
            endpoints: BTreeMap::new(),
            ignored_endpoints: Vec::new(),
            redact_also: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ProviderSettings {
    /// Reads the contract's variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
    /// `OPENROUTER_API_KEY`, `OPENROUTER_BASE_URL`, `APP_URL` or `NEXT_PUBLIC_APP_URL`) and
    /// every `<NAME>_BASE_URL` with its `<NAME>_API_KEY` for `openai-compatible` models. The
    /// configuration may override any field afterwards (a flag wins over the environment).
    pub fn from_env(timeout: Duration) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (endpoints, ignored_endpoints) = endpoints::from_env();
        ProviderSettings {
            openai_api_key: Secret::from_optional(var("OPENAI_API_KEY")),
            openai_base_url: var("OPENAI_BASE_URL")
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned()),
            openrouter_api_key: Secret::from_optional(var("OPENROUTER_API_KEY")),
            openrouter_base_url: var("OPENROUTER_BASE_URL")
                .unwrap_or_else(|| DEFAULT_OPENROUTER_BASE_URL.to_owned()),
            app_url: var("APP_URL").or_else(|| var("NEXT_PUBLIC_APP_URL")),
            endpoints,
            ignored_endpoints,
            redact_also: Vec::new(),
            timeout,
        }
    }

    fn all_keys(&self) -> impl Iterator<Item = &str> {
        self.openai_api_key
            .iter()
            .chain(&self.openrouter_api_key)
            .chain(self.endpoints.values().filter_map(|e| e.api_key.as_ref()))
            .chain(&self.redact_also)
            .map(Secret::expose)
    }
}

/// Why [`Providers::new`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{name}: {reason}")]
    InvalidBaseUrl { name: String, reason: String },
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
        let declared = settings
            .endpoints
            .iter()
            .map(|(name, e)| (format!("{name}_BASE_URL"), &e.base_url));
        for (name, url) in [
            ("OPENAI_BASE_URL".to_owned(), &settings.openai_base_url),
            (
                "OPENROUTER_BASE_URL".to_owned(),
                &settings.openrouter_base_url,
            ),
        ]
        .into_iter()
        .chain(declared)
        {
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

    /// Why this process cannot call `model` at all, where that is a setting it lacks (a key,
    /// or an endpoint the operator did not declare here), found without touching the network.
    /// `None` for a model it can call, and for one whose params are refused outright: such a
    /// model's calls fail permanently, with the reason, rather than waiting for a setting.
    pub fn cannot_run(&self, model: &Model) -> Option<String> {
        if model.provider == ProviderKind::Mock {
            return None;
        }
        let call = model.spec.call().ok()?;
        match endpoints::route(model.provider, call, &self.inner.settings) {
            Err(RouteError::Unavailable { message, .. }) => Some(message),
            Ok(_) | Err(RouteError::Refused(_)) => None,
        }
    }

    /// Checks a model's params against the operator's endpoints, for the API and CLI to refuse
    /// a model at creation: bad params, or a key paired with a URL that is not its own. An
    /// endpoint or key that this process lacks is not refused (a worker elsewhere may have it).
    /// Limits are not this module's: [`ModelSpec::check`] has them.
    pub fn check_params(&self, provider: ProviderKind, spec: &ModelSpec) -> Result<(), String> {
        check_params(provider, spec)?;
        if provider != ProviderKind::OpenAiCompatible {
            return Ok(());
        }
        let call = spec.call()?;
        match endpoints::route(provider, call, &self.inner.settings) {
            Err(RouteError::Refused(message)) => Err(message),
            Ok(_) | Err(RouteError::Unavailable { .. }) => Ok(()),
        }
    }

    /// One line per stored model that will be refused at its next call (its params pair a key
    /// with a URL that is not the key's own), for a warning at start.
    pub fn audit(&self, models: &[Model]) -> Vec<String> {
        endpoints::audit(models, &self.inner.settings)
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
        if model.provider == ProviderKind::Mock {
            return None;
        }
        let call = model.spec.call().ok()?;
        let route = endpoints::route(model.provider, call, &self.inner.settings).ok()?;
        let base = route.base_url.trim_end_matches('/');
        // The key enters only as its own digest, and the identity is a digest of that: what is
        // stored and shown tells endpoints apart without saying anything about the key.
        let key = route
            .key
            .map(|key| Sha256::digest(key.expose().as_bytes()))
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(format!("{}\n{base}\n", model.provider).as_bytes());
        hasher.update(key);
        let digest = hasher.finalize();
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
        self.complete_in(model, prompt, run_index, attempt, "")
            .await
    }

    /// [`Self::complete`] for a job of `batch_key`: the mock's `brands` answers differ from
    /// one batch to the next.
    pub async fn complete_in(
        &self,
        model: &Model,
        prompt: &str,
        run_index: i32,
        attempt: i32,
        batch_key: &str,
    ) -> Result<Completion, ProviderError> {
        let params = model.spec.call().map_err(|e| {
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
                    &params.mock,
                    params.generation.max_tokens,
                    prompt,
                    run_index,
                    attempt,
                    batch_key,
                    inner.settings.timeout,
                )
                .await
            }
            kind => {
                let endpoint =
                    openai::Endpoint::resolve(kind, params, &inner.settings).map_err(|err| {
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
                    &params.generation,
                    prompt,
                ))
                .await
                .map(|completion| redact_completion(&inner.redactor, completion))
            }
        }
    }
}

/// Cuts configured secrets out of every text field a provider chose, since each is stored and
/// shown: a server may echo what it received (its key, a secret in a prompt) in its answer.
fn redact_completion(redactor: &Redactor, mut c: Completion) -> Completion {
    let clean = |text: &mut String| *text = redactor.keys_only(text);
    clean(&mut c.text);
    for field in [
        &mut c.served_model,
        &mut c.finish_reason,
        &mut c.request_id,
        &mut c.raw,
    ]
    .into_iter()
    .flatten()
    {
        clean(field);
    }
    if let Some(citations) = &c.citations {
        let text = citations.to_string();
        let redacted = redactor.keys_only(&text);
        if redacted != text {
            c.citations = serde_json::from_str(&redacted).ok();
        }
    }
    c
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
            endpoints: [(
                "LOCAL".to_owned(),
                CompatibleEndpoint {
                    base_url: "http://127.0.0.1:8000/v1".into(),
                    api_key: Some(Secret::new("local-secret")),
                },
            )]
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
            Err(SetupError::InvalidBaseUrl { name, .. }) if name == "OPENAI_BASE_URL"
        ));
        let with_query = ProviderSettings {
            openrouter_base_url: "https://openrouter.ai/api/v1?token=x".into(),
            ..ProviderSettings::default()
        };
        assert!(matches!(
            Providers::new(with_query),
            Err(SetupError::InvalidBaseUrl { name, .. }) if name == "OPENROUTER_BASE_URL"
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
