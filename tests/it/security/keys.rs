//! Key exfiltration: whoever holds the API secret (or the CLI) writes a model whose params
//! try to send one of the operator's keys to a host of their choosing. Three recording
//! servers stand in for the hosts: the attacker's, and two endpoints the operator declared
//! (`OLLAMA_BASE_URL` + `OLLAMA_API_KEY`, `VLLM_BASE_URL` + `VLLM_API_KEY`). Every request
//! they receive is kept, and each must carry its own key or none, never another's.

use serde_json::{Value, json};

use promptq::domain::ProviderKind;
use promptq::store::{NewModel, NewPrompt};

use super::process::{
    ALL_SECRETS, CRON_SECRET, OLLAMA_KEY, OPENAI_KEY, OPENROUTER_KEY, Promptq, VLLM_KEY,
    assert_no_secret,
};
use crate::support::fake::Fake;
use crate::support::{TestDb, on_both};

/// The attacker's host and the operator's two declared endpoints.
pub struct Hosts {
    pub attacker: Fake,
    pub ollama: Fake,
    pub vllm: Fake,
}

impl Hosts {
    pub async fn start() -> Hosts {
        Hosts {
            attacker: Fake::start().await,
            ollama: Fake::start().await,
            vllm: Fake::start().await,
        }
    }

    /// The operator's environment: every key, each beside its endpoint. OpenAI's and
    /// OpenRouter's endpoints are a closed local port, so nothing ever leaves the machine.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_API_KEY", OPENAI_KEY.to_owned()),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1".to_owned()),
            ("OPENROUTER_API_KEY", OPENROUTER_KEY.to_owned()),
            ("OPENROUTER_BASE_URL", "http://127.0.0.1:9/v1".to_owned()),
            ("OLLAMA_BASE_URL", self.ollama.base_url()),
            ("OLLAMA_API_KEY", OLLAMA_KEY.to_owned()),
            ("VLLM_BASE_URL", self.vllm.base_url()),
            ("VLLM_API_KEY", VLLM_KEY.to_owned()),
            ("CRON_SECRET", CRON_SECRET.to_owned()),
            ("MAX_ATTEMPTS", "1".to_owned()),
            ("MODEL_TIMEOUT_SECS", "10".to_owned()),
        ]
    }

    /// Each host received only its own key (`own`), or no `Authorization` at all.
    pub fn assert_each_got_only_its_own_key(&self) {
        for (name, host, own) in [
            ("the attacker's host", &self.attacker, None),
            ("OLLAMA_BASE_URL", &self.ollama, Some(OLLAMA_KEY)),
            ("VLLM_BASE_URL", &self.vllm, Some(VLLM_KEY)),
        ] {
            for seen in host.seen() {
                let everything = format!("{}{}", seen.all_headers(), seen.body);
                for secret in ALL_SECRETS.into_iter().filter(|s| Some(*s) != own) {
                    assert!(
                        !everything.contains(secret),
                        "{name} received a key that is not its own ({}…):\n{everything}",
                        &secret[..8]
                    );
                }
                let expected = own.map(|key| format!("Bearer {key}"));
                assert_eq!(seen.header("authorization"), expected.as_deref(), "{name}");
            }
        }
    }
}

/// Params that ask for a key to go where it does not belong, and why each is an attack.
pub fn attacks(hosts: &Hosts) -> Vec<(&'static str, Value)> {
    let evil = hosts.attacker.base_url();
    let authority = evil.trim_start_matches("http://").to_owned();
    vec![
        (
            "the OpenAI key to the attacker",
            json!({"baseUrl": evil, "apiKeyEnv": "OPENAI_API_KEY"}),
        ),
        (
            "the OpenRouter key to the attacker",
            json!({"baseUrl": evil, "apiKeyEnv": "OPENROUTER_API_KEY"}),
        ),
        (
            "a declared endpoint's key to the attacker",
            json!({"baseUrl": evil, "apiKeyEnv": "OLLAMA_API_KEY"}),
        ),
        (
            "one endpoint's key to another endpoint",
            json!({"baseUrl": hosts.ollama.base_url(), "apiKeyEnv": "VLLM_API_KEY"}),
        ),
        (
            "a named endpoint redirected elsewhere",
            json!({"endpoint": "OLLAMA", "baseUrl": evil}),
        ),
        (
            "a named endpoint with another key",
            json!({"endpoint": "OLLAMA", "apiKeyEnv": "OPENAI_API_KEY"}),
        ),
        (
            "the CRON_SECRET as a key",
            json!({"baseUrl": evil, "apiKeyEnv": "CRON_SECRET"}),
        ),
        (
            "a query string on the URL",
            json!({"baseUrl": format!("{evil}?forward=1")}),
        ),
        (
            "a fragment on the URL",
            json!({"baseUrl": format!("{evil}#x")}),
        ),
        (
            "credentials in the URL",
            json!({"baseUrl": format!("http://user:pw@{authority}")}),
        ),
    ]
}

/// The models an operator may add: a named endpoint, an older model whose pair is the
/// operator's own, and an endpoint without a key at any URL (nothing secret is sent there).
pub fn allowed(hosts: &Hosts) -> Vec<(&'static str, Value)> {
    vec![
        ("named", json!({"endpoint": "ollama"})),
        (
            "older-own-pair",
            json!({"baseUrl": format!("{}/", hosts.vllm.base_url()), "apiKeyEnv": "VLLM_API_KEY"}),
        ),
        ("keyless", json!({"baseUrl": hosts.attacker.base_url()})),
    ]
}

on_both!(
    threads = 2;
    owned;
    the_api_refuses_every_foreign_pairing_and_runs_only_the_operators,
    the_cli_refuses_every_foreign_pairing_and_runs_only_the_operators,
    a_stored_foreign_pairing_is_reported_and_never_run,
);

async fn the_api_refuses_every_foreign_pairing_and_runs_only_the_operators(db: TestDb) {
    let hosts = Hosts::start().await;
    let promptq = Promptq::new(&db.url, &hosts.env());
    let server = promptq.serve(&[]).await;
    for (attack, params) in attacks(&hosts) {
        let answer = server
            .post(
                "/api/models",
                json!({"name": attack, "provider": "openai-compatible",
                       "model": "llama3.2", "params": params}),
            )
            .await;
        assert_eq!(answer.status, 400, "{attack} was accepted: {}", answer.text);
        assert_eq!(answer.json["success"], false, "{attack}");
        assert_no_secret(attack, &answer.text);
    }
    let openai_elsewhere = server
        .post(
            "/api/models",
            json!({"name": "openai-elsewhere", "provider": "openai", "model": "gpt-4o-mini",
                   "params": {"baseUrl": hosts.attacker.base_url()}}),
        )
        .await;
    assert_eq!(openai_elsewhere.status, 400, "{}", openai_elsewhere.text);

    let mut ids = Vec::new();
    for (name, params) in allowed(&hosts) {
        let answer = server
            .post(
                "/api/models",
                json!({"name": name, "provider": "openai-compatible",
                       "model": "llama3.2", "params": params}),
            )
            .await;
        assert!(answer.status < 300, "{name}: {}", answer.text);
        ids.push(answer.json["model"]["id"].clone());
    }
    // Changing an allowed model into an attack is refused the same way.
    let patch = server
        .patch(
            &format!("/api/models/{}", ids[0]),
            json!({"params": {"baseUrl": hosts.attacker.base_url(), "apiKeyEnv": "OPENAI_API_KEY"}}),
        )
        .await;
    assert_eq!(patch.status, 400, "{}", patch.text);

    let prompt = server
        .post("/api/prompts", json!({"text": "Which CRM is best?"}))
        .await;
    assert!(prompt.status < 300, "{}", prompt.text);
    let cron = server.post("/api/cron", json!({})).await;
    assert_eq!(cron.json["jobsCreated"], 3, "{}", cron.text);
    let status = server.drain().await;
    assert_eq!(status["summary"]["succeeded"], 3, "{status}");

    assert_eq!(hosts.ollama.seen().len(), 1);
    assert_eq!(hosts.vllm.seen().len(), 1);
    assert_eq!(
        hosts.attacker.seen().len(),
        1,
        "the keyless model's call only"
    );
    hosts.assert_each_got_only_its_own_key();
}

async fn the_cli_refuses_every_foreign_pairing_and_runs_only_the_operators(db: TestDb) {
    let hosts = Hosts::start().await;
    let promptq = Promptq::new(&db.url, &hosts.env());
    for (attack, params) in attacks(&hosts) {
        let params = params.to_string();
        let err = promptq
            .fails(&[
                "models",
                "add",
                "--name",
                attack,
                "--provider",
                "openai-compatible",
                "--model",
                "llama3.2",
                "--params",
                &params,
            ])
            .await;
        assert!(err.contains("error: "), "{attack}: {err}");
        assert_no_secret(attack, &err);
    }
    // The same attack through a catalog file.
    let file = promptq.path("models.yaml");
    std::fs::write(
        &file,
        format!(
            "models:\n  - name: sneaky\n    provider: openai-compatible\n    model: m\n    \
             params: {{baseUrl: \"{}\", apiKeyEnv: OPENAI_API_KEY}}\n",
            hosts.attacker.base_url()
        ),
    )
    .expect("write the catalog");
    let err = promptq
        .fails(&["models", "import", file.to_str().expect("utf-8 path")])
        .await;
    assert!(err.contains("models[0].params"), "{err}");

    for (name, params) in allowed(&hosts) {
        let params = params.to_string();
        promptq
            .ok(&[
                "models",
                "add",
                "--name",
                name,
                "--provider",
                "openai-compatible",
                "--model",
                "llama3.2",
                "--params",
                &params,
            ])
            .await;
    }
    promptq.ok(&["prompts", "add", "Which CRM is best?"]).await;
    promptq.ok(&["run"]).await;

    assert_eq!(hosts.ollama.seen().len(), 1);
    assert_eq!(hosts.vllm.seen().len(), 1);
    assert_eq!(
        hosts.attacker.seen().len(),
        1,
        "the keyless model's call only"
    );
    hosts.assert_each_got_only_its_own_key();
}

/// A model written before endpoints existed, straight into the database (as an older version
/// or a hand-edited row would leave it): reported at start, and its jobs fail without a call.
async fn a_stored_foreign_pairing_is_reported_and_never_run(db: TestDb) {
    let hosts = Hosts::start().await;
    let now = chrono::Utc::now();
    let insert = |name: &str, params: Value| NewModel {
        name: name.to_owned(),
        provider: ProviderKind::OpenAiCompatible,
        model: "llama3.2".to_owned(),
        params,
        active: true,
    };
    let bad = db
        .store
        .model_insert(
            &insert(
                "legacy-bad",
                json!({"baseUrl": hosts.attacker.base_url(), "apiKeyEnv": "OPENAI_API_KEY"}),
            ),
            now,
        )
        .await
        .expect("insert the legacy row");
    db.store
        .model_insert(
            &insert(
                "legacy-own",
                json!({"baseUrl": hosts.ollama.base_url(), "apiKeyEnv": "OLLAMA_API_KEY"}),
            ),
            now,
        )
        .await
        .expect("insert the legacy row");
    db.store
        .prompt_insert(
            &NewPrompt {
                text: "Which CRM is best?".into(),
                model_ids: None,
                runs: 1,
                active: true,
                schedule: None,
            },
            now,
        )
        .await
        .expect("insert a prompt");

    let promptq = Promptq::new(&db.url, &hosts.env());
    let output = promptq.run(&["run"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a failed job makes `run` fail");
    assert!(
        stderr.contains(&format!("model {} ('legacy-bad') will not run", bad.id)),
        "{stderr}"
    );
    assert!(!stderr.contains("'legacy-own') will not run"), "{stderr}");
    assert_no_secret("the log", &stderr);

    let (out, _) = promptq.ok(&["status", "--json"]).await;
    let status: Value = serde_json::from_str(&out).expect("status JSON");
    let jobs = status["jobs"].as_array().expect("jobs");
    let of = |model: i64| {
        jobs.iter()
            .find(|job| job["modelId"] == model)
            .expect("a job of the model")
    };
    let failed = of(bad.id);
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("OPENAI_API_KEY is sent only to OPENAI_BASE_URL")),
        "{failed}"
    );
    assert!(
        hosts.attacker.seen().is_empty(),
        "no call for the refused model"
    );
    assert_eq!(
        hosts.ollama.seen().len(),
        1,
        "the operator's own pair still runs"
    );
    hosts.assert_each_got_only_its_own_key();
}
