//! A local OpenAI-compatible server that answers from a script: the next scripted answer
//! (status, headers as given, a delay), else its default answer (a 200 completion unless set
//! otherwise). It counts the requests it received.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One answer of the server.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer::status(200)
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Answer>,
    default: Option<Answer>,
    requests: usize,
}

#[derive(Clone)]
pub struct Scripted {
    pub base_url: String,
    script: Arc<Mutex<Script>>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Scripted {
            base_url: format!("http://{address}/v1"),
            script,
        }
    }

    /// Answers `answer` to the next request (after those scripted before).
    pub fn then(&self, answer: Answer) {
        self.script.lock().unwrap().next.push_back(answer);
    }

    /// Answers `answer` once the script is used up.
    pub fn by_default(&self, answer: Answer) {
        self.script.lock().unwrap().default = Some(answer);
    }

    pub fn requests(&self) -> usize {
        self.script.lock().unwrap().requests
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>) -> Response {
    let answer = {
        let mut script = script.lock().unwrap();
        script.requests += 1;
        let default = script.default.clone().unwrap_or_else(Answer::ok);
        script.next.pop_front().unwrap_or(default)
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = if answer.status == 200 {
        axum::Json(json!({
            "id": "chatcmpl-1",
            "model": "fake-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        }))
        .into_response()
    } else {
        (
            StatusCode::from_u16(answer.status).unwrap(),
            axum::Json(
                json!({"error": {"message": format!("scripted {}", answer.status), "code": null}}),
            ),
        )
            .into_response()
    };
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// One `openai-compatible` model named `name` at `base_url` (with more `params`).
pub async fn seed_model(
    store: &promptq::store::Store,
    name: &str,
    base_url: &str,
    params: serde_json::Value,
) -> promptq::domain::Model {
    super::seed_model(
        store,
        &super::openai_model(name, "fake-1", base_url, params),
    )
    .await
}

/// `count` prompts of one run on `models`.
pub async fn seed_prompts(
    store: &promptq::store::Store,
    models: &[promptq::domain::ModelId],
    count: usize,
) {
    super::seed_prompts(store, count, 1, Some(models)).await;
}
