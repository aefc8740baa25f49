//! Reading a model's `params` for a call: the generation settings (`temperature`, `maxTokens`,
//! `seed`, `extra`), the endpoint of an `openai-compatible` model (`endpoint`, or `baseUrl`
//! and the older `apiKeyEnv`) and the mock's knobs (`latencyMs`, `failRate`).
//!
//! Params are JSON typed by users, so this is where they are checked: [`check_params`] lets the
//! API refuse a bad model when it is created, and a call with bad params fails permanently
//! with the same message. Reading borrows from the JSON and allocates nothing on success,
//! because the mock reads params on every call of a benchmark. Keys never live here, and
//! neither does the choice of where a key goes: that is [`super::endpoints`]' rule. Limits (`maxConcurrency`, `rpm`, `tpm`) belong to the engine
//! and are ignored here.

use serde_json::{Map, Value};

use crate::domain::ProviderKind;

/// The longest simulated latency the mock accepts, so a typo cannot park a worker for days.
const MAX_LATENCY_MS: u64 = 10 * 60 * 1000;

/// A model's params as a call needs them, borrowed from the model row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelParams<'a> {
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub seed: Option<i64>,
    /// Extra request fields merged into the body (`response_format`, `top_p`, OpenRouter's
    /// `provider` routing, …).
    pub extra: Option<&'a Map<String, Value>>,
    /// The operator's endpoint an `openai-compatible` model runs on (`OLLAMA` for
    /// `OLLAMA_BASE_URL` and `OLLAMA_API_KEY`).
    pub endpoint: Option<&'a str>,
    /// The URL of a keyless `openai-compatible` endpoint, up to and excluding
    /// `/chat/completions`.
    pub base_url: Option<&'a str>,
    /// The name of the environment variable holding the key of an `openai-compatible` model.
    pub api_key_env: Option<&'a str>,
    /// Mock only: how long a call takes.
    pub latency_ms: u64,
    /// Mock only: the share of attempts that fail (retryably), from 0 to 1.
    pub fail_rate: f64,
}

impl<'a> ModelParams<'a> {
    /// Reads params leniently where it costs nothing (integers written as `1.0`, numbers
    /// written as strings) and strictly where a mistake would silently change the call.
    pub fn parse(params: &'a Value) -> Result<Self, String> {
        let map = match params {
            Value::Null => return Ok(ModelParams::default()),
            Value::Object(map) => map,
            other => return Err(format!("params must be a JSON object, not {other}")),
        };
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
            Some(Value::Object(extra)) => Some(extra),
            Some(other) => return Err(format!("params.extra must be a JSON object, not {other}")),
        };
        let endpoint = opt(map, "endpoint", string)?;
        if let Some(name) = endpoint
            && super::endpoints::endpoint_name(name).is_none()
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
        let fail_rate = opt(map, "failRate", number)?.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&fail_rate) {
            return Err(format!(
                "params.failRate must be between 0 and 1, not {fail_rate}"
            ));
        }
        Ok(ModelParams {
            temperature,
            max_tokens,
            seed,
            extra,
            endpoint,
            base_url,
            api_key_env,
            latency_ms,
            fail_rate,
        })
    }
}

/// Checks a model's params for its provider, without the operator's settings (those are
/// [`super::Providers::check_params`]' part).
pub fn check_params(provider: ProviderKind, params: &Value) -> Result<(), String> {
    let parsed = ModelParams::parse(params)?;
    if matches!(provider, ProviderKind::OpenAi | ProviderKind::OpenRouter) {
        for (field, set) in [
            ("endpoint", parsed.endpoint.is_some()),
            ("baseUrl", parsed.base_url.is_some()),
            ("apiKeyEnv", parsed.api_key_env.is_some()),
        ] {
            if set {
                let variable = match provider {
                    ProviderKind::OpenAi => "OPENAI_BASE_URL",
                    _ => "OPENROUTER_BASE_URL",
                };
                return Err(format!(
                    "params.{field} is for openai-compatible models; {provider} models go to \
                     {variable} with their own key"
                ));
            }
        }
    }
    if provider == ProviderKind::OpenAiCompatible
        && parsed.endpoint.is_none()
        && parsed.base_url.is_none()
    {
        return Err(
            "an openai-compatible model needs params.endpoint (e.g. OLLAMA, declared by the \
             operator with OLLAMA_BASE_URL) or, for an endpoint without a key, params.baseUrl"
                .to_owned(),
        );
    }
    Ok(())
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
    let parsed = reqwest::Url::parse(url).map_err(|_| "it is not a URL".to_owned())?;
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

    #[test]
    fn reads_every_known_param() {
        let params = json!({
            "temperature": 0.2, "maxTokens": 256, "seed": 7, "extra": {"top_p": 0.9},
            "baseUrl": "http://localhost:11434/v1", "apiKeyEnv": "OLLAMA_API_KEY",
            "latencyMs": 50, "failRate": 0.25, "rpm": 60
        });
        let parsed = ModelParams::parse(&params).expect("valid params");
        assert_eq!(parsed.temperature, Some(0.2));
        assert_eq!(parsed.max_tokens, Some(256));
        assert_eq!(parsed.seed, Some(7));
        assert_eq!(parsed.extra.and_then(|e| e.get("top_p")), Some(&json!(0.9)));
        assert_eq!(parsed.base_url, Some("http://localhost:11434/v1"));
        assert_eq!(parsed.api_key_env, Some("OLLAMA_API_KEY"));
        assert_eq!(parsed.latency_ms, 50);
        assert_eq!(parsed.fail_rate, 0.25);
    }

    #[test]
    fn null_and_empty_params_mean_defaults() {
        assert_eq!(ModelParams::parse(&Value::Null), Ok(ModelParams::default()));
        assert_eq!(ModelParams::parse(&json!({})), Ok(ModelParams::default()));
    }

    #[test]
    fn integers_written_as_floats_or_strings_are_accepted() {
        let params = json!({"maxTokens": 100.0, "seed": "3"});
        let parsed = ModelParams::parse(&params).unwrap();
        assert_eq!(parsed.max_tokens, Some(100));
        assert_eq!(parsed.seed, Some(3));
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
            (json!({"latencyMs": 86_400_000}), "params.latencyMs"),
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
            let err = ModelParams::parse(&params).expect_err(&params.to_string());
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn openai_compatible_models_need_a_base_url() {
        assert!(check_params(ProviderKind::OpenAiCompatible, &json!({})).is_err());
        assert!(
            check_params(
                ProviderKind::OpenAiCompatible,
                &json!({"baseUrl": "http://localhost:8000/v1"})
            )
            .is_ok()
        );
        assert!(
            check_params(
                ProviderKind::OpenAiCompatible,
                &json!({"endpoint": "OLLAMA"})
            )
            .is_ok()
        );
        assert!(check_params(ProviderKind::Mock, &json!({})).is_ok());
        // An openai model always goes to OPENAI_BASE_URL: a URL in its params would mislead.
        let err = check_params(
            ProviderKind::OpenAi,
            &json!({"baseUrl": "http://x.example"}),
        );
        assert!(err.is_err_and(|e| e.contains("OPENAI_BASE_URL")));
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
