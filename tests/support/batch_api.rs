//! A local server speaking OpenAI's Batch API wire format: files (multipart upload, content
//! download), batches (create, get, list with `after`/`limit`, cancel), the status walk
//! validating → in_progress → finalizing → completed (one step per poll), per-line errors in
//! the error file, a batch that expires with partial output, and counters of every request,
//! so that tests can see that nothing was submitted twice. A test can also make one request
//! hang (before or after it takes effect), to kill a worker at that step.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A request the server can be told to hang on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST /files`.
    Upload,
    /// `POST /batches`.
    Create,
    /// `GET /files/{id}/content` of an error file (after the output file was read).
    ErrorFile,
}

/// What the server counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub uploads: usize,
    pub creates: usize,
    pub gets: usize,
    pub lists: usize,
    pub cancels: usize,
    pub downloads: usize,
    /// Requests lines across every created batch.
    pub lines: usize,
    /// Requests left hanging.
    pub hung: usize,
    /// The largest file uploaded, in bytes.
    pub largest_upload: usize,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, Vec<u8>>,
    batches: Vec<Value>,
    counts: Counts,
    /// Prompts containing the key fail with the status; `retry_once` ones only the first time.
    line_errors: Vec<(String, u16)>,
    retry_once: Vec<String>,
    retried: HashSet<String>,
    /// How many of the next created batches expire with partial output.
    expire_next: usize,
    expiring: HashSet<String>,
    /// The next request of this step hangs; `true`: after taking effect.
    hang: Option<(Step, bool)>,
    /// Every custom id answered with a success, for duplicate checks.
    answered: Vec<String>,
    /// Batches stay `in_progress` while set.
    stalled: bool,
}

#[derive(Clone)]
pub struct BatchApi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl BatchApi {
    pub async fn start() -> BatchApi {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/files", post(upload))
            .route("/v1/files/{id}/content", get(content))
            .route("/v1/batches", post(create).get(list))
            .route("/v1/batches/{id}", get(get_batch))
            .route("/v1/batches/{id}/cancel", post(cancel))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        BatchApi { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap().counts.clone()
    }

    /// Lines of prompts containing `needle` are answered with `status` (in the error file).
    pub fn fail_lines(&self, needle: &str, status: u16) {
        self.inner
            .lock()
            .unwrap()
            .line_errors
            .push((needle.into(), status));
    }

    /// Lines of prompts containing `needle` fail with a 500 the first time only.
    pub fn fail_once(&self, needle: &str) {
        self.inner.lock().unwrap().retry_once.push(needle.into());
    }

    /// The next `n` batches created expire, with half their lines answered.
    pub fn expire_next(&self, n: usize) {
        self.inner.lock().unwrap().expire_next = n;
    }

    /// The next request of `step` hangs forever; with `after`, once it took effect.
    pub fn hang(&self, step: Step, after: bool) {
        self.inner.lock().unwrap().hang = Some((step, after));
    }

    /// While `on`, batches stay `in_progress`.
    pub fn stall(&self, on: bool) {
        self.inner.lock().unwrap().stalled = on;
    }

    /// Every custom id the server answered with a success, in order.
    pub fn answered(&self) -> Vec<String> {
        self.inner.lock().unwrap().answered.clone()
    }

    /// The statuses of every batch created, oldest first.
    pub fn statuses(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .batches
            .iter()
            .map(|b| b["status"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Takes the hang for `step` if one is set: `Some(after)`.
fn take_hang(inner: &mut Inner, step: Step) -> Option<bool> {
    match inner.hang {
        Some((s, after)) if s == step => {
            inner.hang = None;
            inner.counts.hung += 1;
            Some(after)
        }
        _ => None,
    }
}

async fn hang_forever() -> Response {
    std::future::pending::<()>().await;
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// The file part of a multipart body.
fn file_part(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let kind = headers.get("content-type")?.to_str().ok()?;
    let boundary = kind.split("boundary=").nth(1)?.trim_matches('"');
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut purpose_batch = false;
    let mut file = None;
    for part in text.split(delimiter.as_str()) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        if head.contains("name=\"purpose\"") {
            purpose_batch = content.trim() == "batch";
        } else if head.contains("name=\"file\"") {
            file = Some(content.as_bytes().to_vec());
        }
    }
    file.filter(|_| purpose_batch)
}

async fn upload(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(file) = file_part(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a multipart file with purpose batch",
        );
    };
    let (answer, hang) = {
        let mut inner = inner.lock().unwrap();
        let hang = take_hang(&mut inner, Step::Upload);
        if hang == Some(false) {
            (None, hang)
        } else {
            inner.counts.uploads += 1;
            let id = format!("file-{}", inner.files.len() + 1);
            let bytes = file.len();
            inner.counts.largest_upload = inner.counts.largest_upload.max(bytes);
            inner.files.insert(id.clone(), file);
            (
                Some(json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch"})),
                hang,
            )
        }
    };
    match (answer, hang) {
        (Some(answer), None) => axum::Json(answer).into_response(),
        _ => hang_forever().await,
    }
}

async fn create(State(inner): State<Shared>, axum::Json(request): axum::Json<Value>) -> Response {
    let (answer, hang) = {
        let mut inner = inner.lock().unwrap();
        let hang = take_hang(&mut inner, Step::Create);
        if hang == Some(false) {
            (None, hang)
        } else {
            let file_id = request["input_file_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let Some(file) = inner.files.get(&file_id) else {
                return error(StatusCode::BAD_REQUEST, "no such file");
            };
            if request["endpoint"] != "/v1/chat/completions"
                || request["completion_window"] != "24h"
            {
                return error(StatusCode::BAD_REQUEST, "unsupported endpoint or window");
            }
            let lines = String::from_utf8_lossy(file).lines().count();
            inner.counts.creates += 1;
            inner.counts.lines += lines;
            let id = format!("batch_{}", inner.batches.len() + 1);
            if inner.expire_next > 0 {
                inner.expire_next -= 1;
                inner.expiring.insert(id.clone());
            }
            let batch = json!({
                "id": id, "object": "batch", "endpoint": "/v1/chat/completions",
                "input_file_id": file_id, "completion_window": "24h", "status": "validating",
                "output_file_id": null, "error_file_id": null, "errors": null,
                "metadata": request["metadata"],
                "request_counts": {"total": lines, "completed": 0, "failed": 0},
            });
            inner.batches.push(batch.clone());
            (Some(batch), hang)
        }
    };
    match (answer, hang) {
        (Some(answer), None) => axum::Json(answer).into_response(),
        _ => hang_forever().await,
    }
}

async fn get_batch(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.counts.gets += 1;
    let Some(index) = inner.batches.iter().position(|b| b["id"] == id.as_str()) else {
        return error(StatusCode::NOT_FOUND, "no such batch");
    };
    let status = inner.batches[index]["status"].as_str().unwrap().to_owned();
    let next = match status.as_str() {
        "validating" => "in_progress",
        "in_progress" if inner.stalled => "in_progress",
        "in_progress" => "finalizing",
        "finalizing" if inner.expiring.contains(&id) => "expired",
        "finalizing" => "completed",
        "cancelling" => "cancelled",
        other => other,
    }
    .to_owned();
    if next != status && matches!(next.as_str(), "completed" | "expired" | "cancelled") {
        let partial = next != "completed";
        finish(&mut inner, index, partial);
    }
    inner.batches[index]["status"] = json!(next);
    axum::Json(inner.batches[index].clone()).into_response()
}

/// Writes the output and error files of batch `index`; `partial`: only the first half of the
/// lines ran, the others are `batch_expired` in the error file.
fn finish(inner: &mut Inner, index: usize, partial: bool) {
    let file_id = inner.batches[index]["input_file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let input = String::from_utf8_lossy(&inner.files[&file_id]).into_owned();
    let lines: Vec<Value> = input
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ran = if partial {
        lines.len() / 2
    } else {
        lines.len()
    };
    let (mut output, mut errors) = (String::new(), String::new());
    for (n, line) in lines.iter().enumerate() {
        let custom_id = line["custom_id"].as_str().unwrap_or_default().to_owned();
        let prompt = line["body"]["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if n >= ran {
            errors.push_str(&json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                "response": null,
                "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}).to_string());
            errors.push('\n');
            continue;
        }
        let mut status = inner
            .line_errors
            .iter()
            .find(|(needle, _)| prompt.contains(needle.as_str()))
            .map(|(_, status)| *status);
        if status.is_none()
            && inner
                .retry_once
                .iter()
                .any(|needle| prompt.contains(needle.as_str()))
            && inner.retried.insert(job_of(&custom_id))
        {
            status = Some(500);
        }
        let request_id = format!("req_{}_{n}", index + 1);
        match status {
            Some(status) => {
                errors.push_str(
                    &json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                    "response": {"status_code": status, "request_id": request_id,
                        "body": {"error": {"message": format!("scripted failure {status}"),
                            "type": "invalid_request_error"}}},
                    "error": null})
                    .to_string(),
                );
                errors.push('\n');
            }
            None => {
                inner.answered.push(custom_id.clone());
                output.push_str(&json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                    "response": {"status_code": 200, "request_id": request_id, "body": {
                        "id": format!("chatcmpl-{n}"), "object": "chat.completion",
                        "model": "gpt-4o-mini-2024-07-18",
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": format!("answer to {prompt}")}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}},
                    "error": null}).to_string());
                output.push('\n');
            }
        }
    }
    for (field, content) in [("output_file_id", output), ("error_file_id", errors)] {
        if content.is_empty() {
            continue;
        }
        let id = format!("file-{}", inner.files.len() + 1);
        inner.files.insert(id.clone(), content.into_bytes());
        inner.batches[index][field] = json!(id);
    }
}

/// `job-12` of `job-12-3`: the job, whatever the attempt.
fn job_of(custom_id: &str) -> String {
    custom_id
        .rsplit_once('-')
        .map_or(custom_id, |(job, _)| job)
        .to_owned()
}

async fn content(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    let (answer, hang) = {
        let mut inner = inner.lock().unwrap();
        let is_error_file = inner
            .batches
            .iter()
            .any(|b| b["error_file_id"] == id.as_str());
        let hang = if is_error_file {
            take_hang(&mut inner, Step::ErrorFile)
        } else {
            None
        };
        inner.counts.downloads += 1;
        (inner.files.get(&id).cloned(), hang)
    };
    match (answer, hang) {
        (Some(content), None) => content.into_response(),
        (None, None) => error(StatusCode::NOT_FOUND, "no such file"),
        _ => hang_forever().await,
    }
}

async fn list(
    State(inner): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.counts.lists += 1;
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20)
        .min(100);
    // Newest first, as the real list is.
    let newest_first: Vec<&Value> = inner.batches.iter().rev().collect();
    let start = match query.get("after") {
        Some(after) => newest_first
            .iter()
            .position(|b| b["id"] == after.as_str())
            .map_or(0, |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| (*b).clone())
        .collect();
    let has_more = start + page.len() < newest_first.len();
    axum::Json(json!({
        "object": "list",
        "first_id": page.first().map(|b| b["id"].clone()),
        "last_id": page.last().map(|b| b["id"].clone()),
        "has_more": has_more,
        "data": page,
    }))
    .into_response()
}

async fn cancel(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.counts.cancels += 1;
    let Some(batch) = inner.batches.iter_mut().find(|b| b["id"] == id.as_str()) else {
        return error(StatusCode::NOT_FOUND, "no such batch");
    };
    if matches!(
        batch["status"].as_str(),
        Some("validating" | "in_progress" | "finalizing")
    ) {
        batch["status"] = json!("cancelling");
    }
    axum::Json(batch.clone()).into_response()
}
