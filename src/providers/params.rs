//! The providers' rules on a model's params, beyond what reading them checks
//! ([`crate::domain::spec`]): which endpoint fields each provider takes.
//!
//! Keys never live here, and neither does the choice of where a key goes: that is
//! [`super::endpoints`]' rule.

use crate::domain::ProviderKind;
use crate::domain::spec::ModelSpec;

/// Checks a model's params for its provider, without the operator's settings (those are
/// [`super::Providers::check_params`]' part) and without its limits (the engine's, checked by
/// [`ModelSpec::check`]).
pub fn check_params(provider: ProviderKind, spec: &ModelSpec) -> Result<(), String> {
    let call = spec.call()?;
    if call.batch
        && !matches!(
            provider,
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible
        )
    {
        return Err(format!(
            "params.batch is for openai and openai-compatible models (a Batch API of OpenAI's \
             shape); {provider} has none"
        ));
    }
    if matches!(provider, ProviderKind::OpenAi | ProviderKind::OpenRouter)
        && let Some(field) = call.endpoint.first_set()
    {
        let variable = match provider {
            ProviderKind::OpenAi => "OPENAI_BASE_URL",
            _ => "OPENROUTER_BASE_URL",
        };
        return Err(format!(
            "params.{field} is for openai-compatible models; {provider} models go to \
             {variable} with their own key"
        ));
    }
    if provider == ProviderKind::OpenAiCompatible
        && call.endpoint.endpoint.is_none()
        && call.endpoint.base_url.is_none()
    {
        return Err(
            "an openai-compatible model needs params.endpoint (e.g. OLLAMA, declared by the \
             operator with OLLAMA_BASE_URL) or, for an endpoint without a key, params.baseUrl"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(provider: ProviderKind, params: Value) -> Result<(), String> {
        check_params(provider, &ModelSpec::read(&params))
    }

    #[test]
    fn openai_compatible_models_need_a_base_url() {
        assert!(check(ProviderKind::OpenAiCompatible, json!({})).is_err());
        let keyless = json!({"baseUrl": "http://localhost:8000/v1"});
        assert!(check(ProviderKind::OpenAiCompatible, keyless).is_ok());
        let named = json!({"endpoint": "OLLAMA"});
        assert!(check(ProviderKind::OpenAiCompatible, named).is_ok());
        assert!(check(ProviderKind::Mock, json!({})).is_ok());
        // An openai model always goes to OPENAI_BASE_URL: a URL in its params would mislead.
        let err = check(ProviderKind::OpenAi, json!({"baseUrl": "http://x.example"}));
        assert!(err.is_err_and(|e| e.contains("OPENAI_BASE_URL")));
    }

    #[test]
    fn batch_mode_needs_a_batch_api() {
        assert!(check(ProviderKind::OpenAi, json!({"batch": true})).is_ok());
        let compatible = json!({"batch": true, "baseUrl": "http://localhost:8000/v1"});
        assert!(check(ProviderKind::OpenAiCompatible, compatible).is_ok());
        for provider in [ProviderKind::OpenRouter, ProviderKind::Mock] {
            let err = check(provider, json!({"batch": true})).expect_err("refused");
            assert!(
                err.contains("params.batch") && err.contains(provider.as_str()),
                "{err}"
            );
            assert!(check(provider, json!({"batch": false})).is_ok());
        }
        assert!(check(ProviderKind::OpenAi, json!({"batch": "yes"})).is_err());
    }
}
