//! The providers against a real HTTP server ([`fake`]): a small axum app on 127.0.0.1:0 that
//! speaks the OpenAI chat completions API and answers whatever each test scripts (status,
//! headers, body, delay), recording every request it receives. Nothing of promptq is mocked:
//! the requests go through the real client, over real sockets.

mod answers;
mod failures;
mod first_run;
mod metrics;
mod missing_key;
mod rate_limits;

use std::time::Duration;

use serde_json::{Value, json};

use promptq::domain::{ErrorClass, Model, ProviderKind};
use promptq::providers::{
    CompatibleEndpoint, Completion, ErrorKind, ProviderError, ProviderSettings, Providers, Secret,
};

use fake::{Fake, Reply};

use crate::support::fake;

const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
const OPENROUTER_KEY: &str = "sk-or-v1-test-fedcba9876543210";
const LOCAL_KEY: &str = "local-secret-key-42";
const APP_URL: &str = "https://promptq.example";

fn settings(fake: &Fake, timeout: Duration) -> ProviderSettings {
    ProviderSettings {
        openai_api_key: Some(Secret::new(OPENAI_KEY)),
        openai_base_url: fake.base_url(),
        openrouter_api_key: Some(Secret::new(OPENROUTER_KEY)),
        openrouter_base_url: format!("{}/", fake.base_url()),
        app_url: Some(APP_URL.to_owned()),
        endpoints: [(
            "LOCAL".to_owned(),
            CompatibleEndpoint {
                base_url: fake.base_url(),
                api_key: Some(Secret::new(LOCAL_KEY)),
            },
        )]
        .into_iter()
        .collect(),
        timeout,
        ..ProviderSettings::default()
    }
}

fn providers(fake: &Fake) -> Providers {
    Providers::new(settings(fake, Duration::from_secs(5))).expect("valid settings")
}

fn model(provider: ProviderKind, name: &str, params: Value) -> Model {
    Model {
        id: 1,
        name: format!("test-{name}"),
        provider,
        model: name.to_owned(),
        params,
        active: true,
        created_at: chrono::Utc::now(),
        spec: Default::default(),
    }
    .with_spec()
}

fn openai_model() -> Model {
    model(ProviderKind::OpenAi, "gpt-4o-mini", json!({}))
}

fn openrouter_model() -> Model {
    model(ProviderKind::OpenRouter, "openai/gpt-4o-mini", json!({}))
}

async fn call(providers: &Providers, model: &Model) -> Result<Completion, ProviderError> {
    providers.complete(model, "Say hello", 0, 1).await
}

/// Scripts one reply, makes one call, and expects it to fail.
async fn fails_with(fake: &Fake, model: &Model, reply: Reply) -> ProviderError {
    fake.reply(reply);
    call(&providers(fake), model)
        .await
        .expect_err("the call should fail")
}

fn assert_retryable(err: &ProviderError) {
    assert_eq!(err.kind, ErrorKind::Retryable, "{err:?}");
    assert!(err.is_retryable());
}

fn assert_permanent(err: &ProviderError) {
    assert_eq!(err.kind, ErrorKind::Permanent, "{err:?}");
    assert_eq!(err.to_attempt_error().class, ErrorClass::Permanent);
}

fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "'{text}' should contain '{part}'");
}

fn error_body(message: &str, kind: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
