//! A promptq HTTP server on a fresh database, and a client that speaks to it.
//!
//! The server is the real router under `axum::serve` on 127.0.0.1:0; no worker pool runs, so
//! jobs move only when a test asks (`/api/jobs/process`). It stops when the [`Server`] drops.

#![allow(dead_code)]

use std::collections::BTreeSet;

use promptq::app::App;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::TestDb;

pub const SECRET: &str = "test-cron-secret-0123456789";

/// How to start a server.
#[derive(Default)]
pub struct Options {
    /// No CRON_SECRET at all (the API is open).
    pub open: bool,
    /// DISPATCH=http with APP_URL pointing at this very server.
    pub http_dispatch: bool,
    /// More flags for `Settings`.
    pub args: Vec<String>,
    /// Routes merged under the same layers (`router_with`).
    pub extra: Option<axum::Router>,
    /// Merge the dashboard's routes too, as `promptq serve` does.
    pub dashboard: bool,
}

pub struct Server {
    pub base: String,
    pub app: App,
    pub client: reqwest::Client,
    pub db: TestDb,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start(db: TestDb) -> Server {
    start_with(db, Options::default()).await
}

pub async fn start_with(db: TestDb, options: Options) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let mut args: Vec<String> = vec![
        "promptq".into(),
        "--database-url".into(),
        db.url.clone(),
        "--timezone".into(),
        "UTC".into(),
        "--cron-schedule".into(),
        "0 0 * * *".into(),
    ];
    if !options.open {
        args.extend(["--cron-secret".into(), SECRET.into()]);
    }
    if options.http_dispatch {
        args.extend([
            "--dispatch".into(),
            "http".into(),
            "--app-url".into(),
            base.clone(),
        ]);
    }
    args.extend(options.args);
    let config = crate::support::settings_from_args(args)
        .validate()
        .expect("valid test settings");
    let app = App::with_store(config, db.store.clone()).expect("build the app");
    let mut extra = options.extra.unwrap_or_default();
    if options.dashboard {
        extra = extra.merge(promptq::http::dashboard::router(app.clone()));
    }
    let router = promptq::http::router_with(app.clone(), extra);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    Server {
        base,
        app,
        client: reqwest::Client::new(),
        db,
        stop,
    }
}

/// An answer: its status, its body as JSON (Null when it is not JSON) and as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub content_type: Option<String>,
}

impl Answer {
    pub fn keys(&self) -> BTreeSet<String> {
        keys(&self.json)
    }

    /// Asserts an error answer: the status and `{"success": false, "error": "<non-empty>"}`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(keys(&self.json), set(&["success", "error"]), "{self:?}");
        assert_eq!(self.json["success"], json!(false), "{self:?}");
        let message = self.json["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{self:?}");
    }

    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.json["success"], json!(true), "{self:?}");
        &self.json
    }
}

pub fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("read the body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        json,
        text,
        content_type,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the secret as a Bearer token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("Authorization", format!("Bearer {SECRET}"))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        answer(request.send().await.expect("send the request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Creates a `mock` model and returns its id.
    pub async fn model(&self, name: &str, params: Value) -> i64 {
        let created = self
            .post(
                "/api/models",
                json!({"name": name, "provider": "mock", "model": format!("mock-{name}"), "params": params}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        created.json["model"]["id"].as_i64().expect("model id")
    }

    /// Creates a prompt on every active model and returns its id.
    pub async fn prompt(&self, text: &str, runs: i32) -> i64 {
        let created = self
            .post("/api/prompts", json!({"text": text, "runs": runs}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        created.json["prompt"]["id"].as_i64().expect("prompt id")
    }

    /// The original design's setup: 2 models × 2 prompts × 5 runs = 20 jobs a batch.
    pub async fn seed_original(&self) {
        self.model("alpha", json!({})).await;
        self.model("beta", json!({})).await;
        self.prompt("Which CRM is best for a small team?", 5).await;
        self.prompt("Which ERP is best for a factory?", 5).await;
    }

    /// Ids of the jobs of `batch_key`.
    pub async fn job_ids(&self, batch_key: &str) -> Vec<i64> {
        let status = self
            .get(&format!("/api/jobs/status?batchKey={batch_key}&limit=1000"))
            .await;
        status.assert_ok()["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|job| job["id"].as_i64().expect("job id"))
            .collect()
    }

    /// The batch key an outside trigger names now, by the server's own schedule.
    pub fn current_batch(&self) -> String {
        let schedule = self.app.default_schedule();
        let slot = schedule
            .trigger_slot(chrono::Utc::now())
            .expect("a trigger slot");
        schedule.batch_key(slot).expect("a batch key").to_string()
    }

    /// Runs `/api/cron` and returns the batch key.
    pub async fn cron(&self) -> String {
        let cron = self.get("/api/cron").await;
        cron.assert_ok()["batchKey"]
            .as_str()
            .expect("batchKey")
            .to_owned()
    }
}
