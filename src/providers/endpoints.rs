//! Where a model's call may go and which key it may carry: the operator's endpoints, and the
//! one rule that binds every key to its own host.
//!
//! A key is never chosen by a model row. The operator declares endpoints in the environment:
//! `OPENAI_API_KEY` belongs to `OPENAI_BASE_URL`, `OPENROUTER_API_KEY` to
//! `OPENROUTER_BASE_URL`, and for every other `<NAME>_BASE_URL` the key, if any, is
//! `<NAME>_API_KEY`. An `openai-compatible` model names an endpoint (`params.endpoint`), or
//! gives a `baseUrl` and no key. Rows written before endpoints existed (`baseUrl` plus
//! `apiKeyEnv`) still run where that pair is exactly a declared one; any other pair is
//! [`RouteError::Refused`], so a key can never follow a URL that someone typed into the
//! database.

use std::collections::BTreeMap;

use crate::domain::{Model, ProviderKind};

use super::{ProviderSettings, Secret};
use crate::domain::spec::{CallSpec, check_base_url, endpoint_name};

/// An `openai-compatible` endpoint as the operator declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibleEndpoint {
    /// `<NAME>_BASE_URL`, without a trailing `/`.
    pub base_url: String,
    /// `<NAME>_API_KEY`, when the endpoint needs one.
    pub api_key: Option<Secret>,
}

/// Where one call goes, and with which key.
#[derive(Debug)]
pub struct Route<'s> {
    pub base_url: &'s str,
    pub key: Option<&'s Secret>,
}

/// Why a model cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The model asks for a pairing the operator did not make, or its params are unusable:
    /// refused at creation, and its jobs fail without any request being sent.
    Refused(String),
    /// The pairing is fine but this process lacks what it needs (an endpoint or a key that
    /// is not set here). A model may still be created: another process may have it.
    Unavailable { message: String, missing_key: bool },
}

impl RouteError {
    pub fn message(&self) -> &str {
        match self {
            RouteError::Refused(message) | RouteError::Unavailable { message, .. } => message,
        }
    }
}

/// Every `<NAME>_BASE_URL` of the environment other than OpenAI's and OpenRouter's (which
/// have their own settings), with `<NAME>_API_KEY` beside it. A variable whose value is not
/// a usable base URL is left out and returned with the reason, for a warning at start.
pub fn from_env() -> (BTreeMap<String, CompatibleEndpoint>, Vec<String>) {
    let vars: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    let mut endpoints = BTreeMap::new();
    let mut ignored = Vec::new();
    for (variable, value) in &vars {
        let Some(name) = variable
            .strip_suffix("_BASE_URL")
            .and_then(endpoint_name)
            .filter(|name| variable == &format!("{name}_BASE_URL"))
        else {
            continue;
        };
        if matches!(name.as_str(), "OPENAI" | "OPENROUTER") || value.trim().is_empty() {
            continue;
        }
        let base_url = value.trim().trim_end_matches('/').to_owned();
        if let Err(reason) = check_base_url(&base_url) {
            ignored.push(format!("{variable} is ignored: {reason}"));
            continue;
        }
        let api_key = Secret::from_optional(vars.get(&format!("{name}_API_KEY")).cloned());
        endpoints.insert(name, CompatibleEndpoint { base_url, api_key });
    }
    (endpoints, ignored)
}

impl ProviderSettings {
    /// The declared endpoint `name` (upper case), OpenAI's and OpenRouter's included.
    fn endpoint(&self, name: &str) -> Option<(&str, Option<&Secret>)> {
        match name {
            "OPENAI" => Some((self.openai_base_url.as_str(), self.openai_api_key.as_ref())),
            "OPENROUTER" => Some((
                self.openrouter_base_url.as_str(),
                self.openrouter_api_key.as_ref(),
            )),
            _ => self
                .endpoints
                .get(name)
                .map(|e| (e.base_url.as_str(), e.api_key.as_ref())),
        }
    }
}

/// Two base URLs name the same endpoint when they parse to the same URL, up to a trailing `/`.
fn same_url(a: &str, b: &str) -> bool {
    let parse = |url: &str| reqwest::Url::parse(url.trim().trim_end_matches('/')).ok();
    matches!((parse(a), parse(b)), (Some(a), Some(b)) if a == b)
}

/// Picks the base URL and key for a call of `kind` with `params`.
pub fn route<'s>(
    kind: ProviderKind,
    params: &'s CallSpec,
    settings: &'s ProviderSettings,
) -> Result<Route<'s>, RouteError> {
    let missing_key = |variable: &str| RouteError::Unavailable {
        message: format!("{kind}: {variable} is not set"),
        missing_key: true,
    };
    match kind {
        ProviderKind::OpenAi => Ok(Route {
            base_url: &settings.openai_base_url,
            key: Some(
                settings
                    .openai_api_key
                    .as_ref()
                    .ok_or_else(|| missing_key("OPENAI_API_KEY"))?,
            ),
        }),
        ProviderKind::OpenRouter => Ok(Route {
            base_url: &settings.openrouter_base_url,
            key: Some(
                settings
                    .openrouter_api_key
                    .as_ref()
                    .ok_or_else(|| missing_key("OPENROUTER_API_KEY"))?,
            ),
        }),
        ProviderKind::Mock => Err(RouteError::Refused(
            "mock models do not call an HTTP endpoint".to_owned(),
        )),
        ProviderKind::OpenAiCompatible => compatible_route(params, settings),
    }
}

fn compatible_route<'s>(
    params: &'s CallSpec,
    settings: &'s ProviderSettings,
) -> Result<Route<'s>, RouteError> {
    let refused = |message: String| Err(RouteError::Refused(message));
    let params = &params.endpoint;
    if let Some(raw) = params.endpoint.as_deref() {
        let name = endpoint_name(raw)
            .ok_or_else(|| RouteError::Refused(format!("params.endpoint '{raw}' is not a name")))?;
        if params.base_url.is_some() || params.api_key_env.is_some() {
            return refused(format!(
                "params.endpoint excludes params.baseUrl and params.apiKeyEnv: the endpoint's \
                 URL is {name}_BASE_URL and its key {name}_API_KEY, both set by the operator"
            ));
        }
        let (base_url, key) = settings
            .endpoint(&name)
            .ok_or_else(|| RouteError::Unavailable {
                message: format!(
                    "openai-compatible: endpoint {name} is not declared here (set {name}_BASE_URL, \
                 and {name}_API_KEY if it needs a key)"
                ),
                missing_key: false,
            })?;
        return Ok(Route { base_url, key });
    }
    let Some(base_url) = params.base_url.as_deref() else {
        return refused(
            "an openai-compatible model needs params.endpoint (an endpoint the operator \
             declared with <NAME>_BASE_URL) or, for an endpoint without a key, params.baseUrl"
                .to_owned(),
        );
    };
    let Some(variable) = params.api_key_env.as_deref() else {
        // No key is sent, so the URL may be any http(s) endpoint.
        return Ok(Route {
            base_url,
            key: None,
        });
    };
    // An older model: `baseUrl` + `apiKeyEnv` runs only where that pair is the operator's.
    let name = variable.strip_suffix("_API_KEY").unwrap_or(variable);
    match settings.endpoint(name) {
        Some((declared, key)) if same_url(declared, base_url) => Ok(Route {
            base_url: declared,
            key: Some(key.ok_or_else(|| RouteError::Unavailable {
                message: format!("openai-compatible: {variable} is not set"),
                missing_key: true,
            })?),
        }),
        _ => refused(format!(
            "refused: {variable} is sent only to {name}_BASE_URL, and params.baseUrl is not \
             that URL; name the endpoint instead (params.endpoint: \"{name}\") or drop \
             params.apiKeyEnv for an endpoint without a key"
        )),
    }
}

/// One line per model whose params would be refused at its next call, for a warning at start.
pub fn audit(models: &[Model], settings: &ProviderSettings) -> Vec<String> {
    models
        .iter()
        .filter(|model| model.provider == ProviderKind::OpenAiCompatible)
        .filter_map(|model| {
            let problem = match model.spec.call() {
                Err(err) => err.to_owned(),
                Ok(call) => match route(model.provider, call, settings) {
                    Err(RouteError::Refused(message)) => message,
                    _ => return None,
                },
            };
            Some(format!(
                "model {} ('{}') will not run: {problem}",
                model.id, model.name
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            openai_api_key: Some(Secret::new("openai-key")),
            openai_base_url: "https://api.openai.com/v1".into(),
            endpoints: [(
                "OLLAMA".to_owned(),
                CompatibleEndpoint {
                    base_url: "http://127.0.0.1:11434/v1".into(),
                    api_key: Some(Secret::new("ollama-key")),
                },
            )]
            .into_iter()
            .collect(),
            ..ProviderSettings::default()
        }
    }

    fn compatible(params: serde_json::Value) -> Result<(String, Option<String>), RouteError> {
        let settings = settings();
        let spec = crate::domain::ModelSpec::read(&params);
        let parsed = spec.call().expect("valid params");
        route(ProviderKind::OpenAiCompatible, parsed, &settings)
            .map(|r| (r.base_url.to_owned(), r.key.map(|k| k.expose().to_owned())))
    }

    #[test]
    fn a_named_endpoint_gets_its_own_url_and_key() {
        assert_eq!(
            compatible(json!({"endpoint": "ollama"})),
            Ok((
                "http://127.0.0.1:11434/v1".into(),
                Some("ollama-key".into())
            ))
        );
        assert_eq!(
            compatible(json!({"endpoint": "OPENAI"})),
            Ok((
                "https://api.openai.com/v1".into(),
                Some("openai-key".into())
            ))
        );
        assert!(matches!(
            compatible(json!({"endpoint": "VLLM"})),
            Err(RouteError::Unavailable {
                missing_key: false,
                ..
            })
        ));
    }

    #[test]
    fn a_key_never_follows_a_typed_url() {
        for params in [
            json!({"baseUrl": "http://evil.example/v1", "apiKeyEnv": "OPENAI_API_KEY"}),
            json!({"baseUrl": "http://evil.example/v1", "apiKeyEnv": "OLLAMA_API_KEY"}),
            json!({"baseUrl": "http://127.0.0.1:11434/v1", "apiKeyEnv": "OPENAI_API_KEY"}),
            json!({"baseUrl": "http://evil.example/v1", "apiKeyEnv": "OPENROUTER_API_KEY"}),
            json!({"endpoint": "OLLAMA", "baseUrl": "http://evil.example/v1"}),
            json!({"endpoint": "OLLAMA", "apiKeyEnv": "OPENAI_API_KEY"}),
        ] {
            assert!(
                matches!(compatible(params.clone()), Err(RouteError::Refused(_))),
                "{params}"
            );
        }
    }

    #[test]
    fn an_older_model_with_the_operators_own_pair_still_runs() {
        assert_eq!(
            compatible(
                json!({"baseUrl": "http://127.0.0.1:11434/v1/", "apiKeyEnv": "OLLAMA_API_KEY"})
            ),
            Ok((
                "http://127.0.0.1:11434/v1".into(),
                Some("ollama-key".into())
            ))
        );
        assert_eq!(
            compatible(json!({"baseUrl": "http://anywhere.example/v1"})),
            Ok(("http://anywhere.example/v1".into(), None))
        );
    }

    #[test]
    fn endpoint_names_are_plain_words() {
        assert_eq!(endpoint_name("ollama"), Some("OLLAMA".into()));
        assert_eq!(endpoint_name("VLLM_2"), Some("VLLM_2".into()));
        for bad in ["", "2X", "a-b", "x y", "../"] {
            assert_eq!(endpoint_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_audit_names_models_that_will_not_run() {
        let model = |id, params| {
            Model {
                id,
                name: format!("m{id}"),
                provider: ProviderKind::OpenAiCompatible,
                model: "x".into(),
                params,
                active: true,
                created_at: chrono::Utc::now(),
                spec: Default::default(),
            }
            .with_spec()
        };
        let models = [
            model(1, json!({"endpoint": "OLLAMA"})),
            model(
                2,
                json!({"baseUrl": "http://evil.example/v1", "apiKeyEnv": "OPENAI_API_KEY"}),
            ),
            model(3, json!({"baseUrl": "http://local.example/v1"})),
        ];
        let lines = audit(&models, &settings());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("model 2 ('m2') will not run: refused"),
            "{lines:?}"
        );
    }
}
