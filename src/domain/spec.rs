//! A model's params read once into typed fields: the generation settings (`temperature`,
//! `maxTokens`, `seed`, `extra`), the endpoint of an `openai-compatible` model (`endpoint`, or
//! `baseUrl` and the older `apiKeyEnv`), the limits (`maxConcurrency`, `rpm`, `tpm`) and the
//! mock's behaviour (`latencyMs`, `failRate`, `answers`), and the money params (`price`,
//! `budgetUsdPerDay`, read in [`spend`]).
//!
//! Params are JSON typed by users. A [`ModelSpec`] is made where a model row is read (and from
//! the params a request wants to write), so that validation, the providers and the limits read
//! fields instead of each parsing the JSON on every call. Reading never fails: params that
//! cannot be used keep their message, which the API gives when it refuses them and a call
//! gives when it fails permanently. The parts are read apart because they fail apart: a model
//! whose limits are unreadable still runs (unlimited), as it always did. Which endpoint a key
//! may go to is the providers' rule, not this module's.

use serde_json::{Map, Value};

mod names;
mod spend;
pub use names::{KNOWN_PARAMS, check_param_names};
pub use spend::Spend;

/// The longest simulated latency the mock accepts, so a typo cannot park a worker for days.
pub const MAX_LATENCY_MS: u64 = 10 * 60 * 1000;

/// The highest `maxConcurrency` honoured (a larger one is clamped to it).
const MAX_CONCURRENCY: u64 = 100_000;

/// A model's params, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    call: Result<CallSpec, String>,
    limits: Result<Limits, String>,
    spend: Result<Spend, String>,
}

/// What a call of the model needs from its params.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSpec {
    pub generation: Generation,
    pub endpoint: EndpointParams,
    pub mock: MockBehaviour,
    /// The model's jobs go through the provider's Batch API (`params.batch`).
    pub batch: bool,
}

/// The settings that shape an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generation {
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub seed: Option<i64>,
    /// Extra request fields merged into the body (`response_format`, `top_p`, OpenRouter's
    /// `provider` routing, …).
    pub extra: Option<Map<String, Value>>,
}

/// Where an `openai-compatible` model's calls go, as its params say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointParams {
    /// The operator's endpoint the model runs on (`OLLAMA` for `OLLAMA_BASE_URL` and
    /// `OLLAMA_API_KEY`).
    pub endpoint: Option<String>,
    /// The URL of a keyless endpoint, up to and excluding `/chat/completions`.
    pub base_url: Option<String>,
    /// The name of the environment variable holding the key (rows from before endpoints).
    pub api_key_env: Option<String>,
}

impl EndpointParams {
    /// The first field set, by its params name: those are for `openai-compatible` models only.
    pub fn first_set(&self) -> Option<&'static str> {
        [
            ("endpoint", self.endpoint.is_some()),
            ("baseUrl", self.base_url.is_some()),
            ("apiKeyEnv", self.api_key_env.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }
}

/// How the mock answers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MockBehaviour {
    /// How long a call takes, in milliseconds (the median when `latency_p99_ms` is set).
    pub latency_ms: u64,
    /// With it, each call's latency is drawn from a log-normal distribution with median
    /// `latency_ms` and this 99th percentile, fixed per prompt and run, cut at three times it.
    pub latency_p99_ms: Option<u64>,
    /// The share of attempts that fail (retryably), from 0 to 1.
    pub fail_rate: f64,
    /// `answers: "brands"`: answers that name brands in a list, with links (the demo's);
    /// otherwise (`"plain"`, the default) words of a fixed vocabulary.
    pub brands: bool,
}

/// A model's configured limits (`maxConcurrency`, `rpm`, `tpm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrency: Option<usize>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::read(&Value::Null)
    }
}

impl ModelSpec {
    pub fn read(params: &Value) -> ModelSpec {
        let map = match params {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => {
                return ModelSpec {
                    call: Err(format!("params must be a JSON object, not {other}")),
                    limits: Ok(Limits::default()),
                    spend: Ok(Spend::default()),
                };
            }
        };
        let empty = Map::new();
        let map = map.unwrap_or(&empty);
        ModelSpec {
            call: read_call(map),
            limits: read_limits(map),
            spend: spend::read_spend(map),
        }
    }

    /// What a call needs, or why these params cannot make one.
    pub fn call(&self) -> Result<&CallSpec, &str> {
        self.call.as_ref().map_err(String::as_str)
    }

    /// The configured limits; none where they cannot be read (such params are refused on
    /// write, and an older row keeps running unlimited).
    pub fn limits(&self) -> Limits {
        self.limits.clone().unwrap_or_default()
    }

    /// The price and daily budget; none where they cannot be read (refused on write; an
    /// older row keeps running, its costs unknown and its budget unlimited).
    pub fn spend(&self) -> Spend {
        self.spend.clone().unwrap_or_default()
    }

    /// The first problem of these params, as the API refuses them.
    pub fn check(&self) -> Result<(), &str> {
        self.call()?;
        self.limits.as_ref().map_err(String::as_str)?;
        self.spend.as_ref().map(|_| ()).map_err(String::as_str)
    }
}

/// Reads leniently where it costs nothing (integers written as `1.0`, numbers written as
/// strings) and strictly where a mistake would silently change the call.
fn read_call(map: &Map<String, Value>) -> Result<CallSpec, String> {
    let temperature = opt(map, "temperature", number)?;
    // The upper bound differs by provider (2 for OpenAI, 5 elsewhere): theirs to refuse.
    if let Some(t) = temperature
        && t < 0.0
    {
        return Err(format!("params.temperature must not be negative, not {t}"));
    }
    let max_tokens = opt(map, "maxTokens", unsigned)?;
    if max_tokens == Some(0) {
        return Err("params.maxTokens must be at least 1".to_owned());
    }
    let seed = opt(map, "seed", integer)?;
    let extra = match map.get("extra") {
        None | Some(Value::Null) => None,
        Some(Value::Object(extra)) => Some(extra.clone()),
        Some(other) => return Err(format!("params.extra must be a JSON object, not {other}")),
    };
    let endpoint = opt(map, "endpoint", string)?;
    if let Some(name) = endpoint
        && endpoint_name(name).is_none()
    {
        return Err(format!(
            "params.endpoint must name an endpoint the operator declared (letters, digits, \
             underscores: OLLAMA for OLLAMA_BASE_URL), not '{name}'"
        ));
    }
    let base_url = opt(map, "baseUrl", string)?;
    if let Some(url) = base_url {
        check_base_url(url).map_err(|e| format!("params.baseUrl: {e}"))?;
    }
    let api_key_env = opt(map, "apiKeyEnv", string)?;
    if let Some(name) = api_key_env
        && !is_key_variable_name(name)
    {
        return Err(format!(
            "params.apiKeyEnv must name an environment variable ending in _API_KEY \
             (upper case, digits, underscores), not '{name}'"
        ));
    }
    let latency_ms = opt(map, "latencyMs", unsigned)?.unwrap_or(0);
    if latency_ms > MAX_LATENCY_MS {
        return Err(format!(
            "params.latencyMs must be at most {MAX_LATENCY_MS}, not {latency_ms}"
        ));
    }
    let latency_p99_ms = opt(map, "latencyP99Ms", unsigned)?;
    if let Some(p99) = latency_p99_ms
        && (p99 > MAX_LATENCY_MS || latency_ms == 0 || p99 < latency_ms)
    {
        return Err(format!(
            "params.latencyP99Ms must be at least latencyMs (above 0) and at most \
             {MAX_LATENCY_MS}, not {p99}"
        ));
    }
    let batch = opt(map, "batch", Value::as_bool)?.unwrap_or(false);
    let fail_rate = opt(map, "failRate", number)?.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&fail_rate) {
        return Err(format!(
            "params.failRate must be between 0 and 1, not {fail_rate}"
        ));
    }
    let brands = match opt(map, "answers", string)? {
        None | Some("plain") => false,
        Some("brands") => true,
        Some(other) => {
            return Err(format!(
                "params.answers must be \"plain\" or \"brands\", not '{other}'"
            ));
        }
    };
    Ok(CallSpec {
        generation: Generation {
            temperature,
            max_tokens,
            seed,
            extra,
        },
        endpoint: EndpointParams {
            endpoint: endpoint.map(str::to_owned),
            base_url: base_url.map(str::to_owned),
            api_key_env: api_key_env.map(str::to_owned),
        },
        mock: MockBehaviour {
            latency_ms,
            latency_p99_ms,
            fail_rate,
            brands,
        },
        batch,
    })
}

/// Limits are whole numbers of at least 1, strictly: a limit that silently meant something
/// else would let a model exceed its provider's quota.
fn read_limits(map: &Map<String, Value>) -> Result<Limits, String> {
    let read = |name: &str| -> Result<Option<u64>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err(format!(
                    "params.{name} must be a whole number of at least 1, not {value}"
                )),
            },
        }
    };
    Ok(Limits {
        max_concurrency: read("maxConcurrency")?.map(|n| n.min(MAX_CONCURRENCY) as usize),
        rpm: read("rpm")?,
        tpm: read("tpm")?,
    })
}

/// `OLLAMA` from `ollama` or `OLLAMA`: letters, digits and `_`, starting with a letter.
pub fn endpoint_name(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    (upper.starts_with(|c: char| c.is_ascii_uppercase())
        && upper
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    .then_some(upper)
}

/// Only names ending in `_API_KEY` may be named by a model: whoever can write a model's
/// params chooses where the key is sent, and must not be able to send `DATABASE_URL` or
/// `CRON_SECRET` there.
pub fn is_key_variable_name(name: &str) -> bool {
    name.len() > "_API_KEY".len()
        && name.ends_with("_API_KEY")
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A base URL must be absolute http(s) and carry no credentials, query or fragment: a URL is
/// logged and shown, a key belongs in the environment, and `/chat/completions` is appended to
/// the path (a query would carry it elsewhere, or smuggle a token).
pub fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| "it is not a URL".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("it must start with http:// or https://".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "it must not contain credentials (user:password@); keys belong in the \
             operator's <NAME>_API_KEY"
                .to_owned(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("it must not have a query (?…) or a fragment (#…)".to_owned());
    }
    Ok(())
}

fn opt<'a, T>(
    map: &'a Map<String, Value>,
    key: &str,
    read: fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| format!("params.{key} has an invalid value: {value}")),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unsigned(value: &Value) -> Option<u64> {
    integer(value).and_then(|i| u64::try_from(i).ok())
}

fn string(value: &Value) -> Option<&str> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(params: Value) -> Result<CallSpec, String> {
        ModelSpec::read(&params)
            .call()
            .cloned()
            .map_err(str::to_owned)
    }

    #[test]
    fn reads_every_known_param() {
        let params = json!({
            "temperature": 0.2, "maxTokens": 256, "seed": 7, "extra": {"top_p": 0.9},
            "baseUrl": "http://localhost:11434/v1", "apiKeyEnv": "OLLAMA_API_KEY",
            "latencyMs": 50, "failRate": 0.25, "rpm": 60, "tpm": 1000, "maxConcurrency": 3
        });
        let spec = ModelSpec::read(&params);
        let parsed = spec.call().expect("valid params");
        let generation = &parsed.generation;
        assert_eq!(generation.temperature, Some(0.2));
        assert_eq!(generation.max_tokens, Some(256));
        assert_eq!(generation.seed, Some(7));
        let top_p = generation.extra.as_ref().and_then(|e| e.get("top_p"));
        assert_eq!(top_p, Some(&json!(0.9)));
        let endpoint = &parsed.endpoint;
        assert_eq!(
            endpoint.base_url.as_deref(),
            Some("http://localhost:11434/v1")
        );
        assert_eq!(endpoint.api_key_env.as_deref(), Some("OLLAMA_API_KEY"));
        assert_eq!(parsed.mock.latency_ms, 50);
        assert_eq!(parsed.mock.fail_rate, 0.25);
        let limits = Limits {
            max_concurrency: Some(3),
            rpm: Some(60),
            tpm: Some(1000),
        };
        assert_eq!(spec.limits(), limits);
        assert_eq!(spec.check(), Ok(()));
    }

    #[test]
    fn null_and_empty_params_mean_defaults() {
        assert_eq!(call(Value::Null), Ok(CallSpec::default()));
        assert_eq!(call(json!({})), Ok(CallSpec::default()));
        assert_eq!(ModelSpec::read(&json!({})).limits(), Limits::default());
    }

    #[test]
    fn integers_written_as_floats_or_strings_are_accepted() {
        let parsed = call(json!({"maxTokens": 100.0, "seed": "3"})).unwrap();
        assert_eq!(parsed.generation.max_tokens, Some(100));
        assert_eq!(parsed.generation.seed, Some(3));
    }

    #[test]
    fn bad_params_are_refused_with_the_field_named() {
        for (params, field) in [
            (json!([1]), "params must be a JSON object"),
            (json!({"temperature": "hot"}), "params.temperature"),
            (json!({"maxTokens": -1}), "params.maxTokens"),
            (json!({"maxTokens": 0}), "params.maxTokens"),
            (json!({"maxTokens": 1.5}), "params.maxTokens"),
            (json!({"extra": "x"}), "params.extra"),
            (json!({"failRate": 1.5}), "params.failRate"),
            (json!({"answers": "poems"}), "params.answers"),
            (json!({"latencyMs": 86_400_000}), "params.latencyMs"),
            (
                json!({"latencyMs": 100, "latencyP99Ms": 50}),
                "params.latencyP99Ms",
            ),
            (json!({"latencyP99Ms": 50}), "params.latencyP99Ms"),
            (json!({"baseUrl": "localhost:11434"}), "params.baseUrl"),
            (
                json!({"baseUrl": "https://u:p@example.com/v1"}),
                "params.baseUrl",
            ),
            (json!({"apiKeyEnv": "DATABASE_URL"}), "params.apiKeyEnv"),
            (
                json!({"baseUrl": "http://h.example/v1?x=1"}),
                "params.baseUrl",
            ),
            (
                json!({"baseUrl": "http://h.example/v1#f"}),
                "params.baseUrl",
            ),
            (json!({"baseUrl": "http://h.example/v1?"}), "params.baseUrl"),
            (json!({"endpoint": "a-b"}), "params.endpoint"),
            (json!({"apiKeyEnv": "sk-abc_API_KEY"}), "params.apiKeyEnv"),
        ] {
            let err = call(params.clone()).expect_err(&params.to_string());
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn limits_fail_apart_from_the_call() {
        for bad in [
            json!({"rpm": 0}),
            json!({"tpm": "60"}),
            json!({"maxConcurrency": 1.5}),
        ] {
            let spec = ModelSpec::read(&bad);
            assert!(spec.call().is_ok(), "{bad}");
            assert_eq!(spec.limits(), Limits::default(), "{bad}");
            let err = spec.check().expect_err(&bad.to_string());
            assert!(
                err.contains("must be a whole number of at least 1"),
                "{err}"
            );
        }
        // The call's problem is named first, as the API always did.
        let both = ModelSpec::read(&json!({"temperature": -1, "rpm": 0}));
        assert!(
            both.check()
                .is_err_and(|e| e.contains("params.temperature"))
        );
        let huge = ModelSpec::read(&json!({"maxConcurrency": 10_000_000}));
        assert_eq!(huge.limits().max_concurrency, Some(100_000));
    }

    #[test]
    fn only_api_key_variables_may_be_named() {
        assert!(is_key_variable_name("OLLAMA_API_KEY"));
        assert!(is_key_variable_name("VLLM2_API_KEY"));
        for bad in [
            "_API_KEY",
            "API_KEY",
            "CRON_SECRET",
            "ollama_api_key",
            "1X_API_KEY",
        ] {
            assert!(!is_key_variable_name(bad), "{bad}");
        }
    }
}
