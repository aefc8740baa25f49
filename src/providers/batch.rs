//! OpenAI's Batch API (and the same endpoints on OpenAI-compatible servers): upload a JSONL
//! file of chat completion requests, create a batch from it, read its status, list batches,
//! cancel one, and download its output and error files.
//!
//! Each request line is the body a direct call sends ([`super::openai::request_body`]), and
//! each result line is read by the direct call's parser and classified by its status rules,
//! so that an answer served through a batch is stored exactly like a direct one, and a line's
//! error follows the same retry rules. Nothing here decides what to do next or touches the
//! database: that is the engine's batch loop. Keys never leave this module, as everywhere in
//! [`super`].

use std::time::SystemTime;

use serde_json::{Value, json};

use super::error::{ErrorKind, ProviderError};
use super::openai;
use super::{Completion, Providers};
use crate::domain::{Model, ProviderKind};

/// The metadata key carrying the local batch's token, by which a lost submission is found.
pub const TOKEN_KEY: &str = "promptq_token";

/// How many pages of the provider's batch list are searched for a lost submission (newest
/// first; a lost submission is among the newest).
const LIST_PAGES: usize = 20;

/// A batch as the provider reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBatch {
    pub id: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`,
    /// `cancelling` or `cancelled`.
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// The token promptq put in its metadata, if any.
    pub token: Option<String>,
    /// What the provider said went wrong with the batch as a whole (a failed validation).
    pub errors: Option<String>,
}

impl RemoteBatch {
    /// Whether the provider is done with it (whatever the result).
    pub fn is_over(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }

    fn from_json(body: &Value) -> Option<RemoteBatch> {
        let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
        let errors = body
            .get("errors")
            .and_then(|e| e.get("data"))
            .and_then(Value::as_array)
            .filter(|data| !data.is_empty())
            .map(|data| {
                data.iter()
                    .map(|e| {
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown error")
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        Some(RemoteBatch {
            id: text("id")?,
            status: text("status")?,
            output_file_id: text("output_file_id"),
            error_file_id: text("error_file_id"),
            token: body
                .get("metadata")
                .and_then(|m| m.get(TOKEN_KEY))
                .and_then(Value::as_str)
                .map(str::to_owned),
            errors,
        })
    }
}

/// Whether a result line is one the provider never ran: its batch expired or was cancelled
/// before it (`batch_expired`, `batch_cancelled`).
pub fn never_ran(line: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    value.get("response").is_none_or(Value::is_null)
        && value
            .get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .is_some_and(|code| matches!(code, "batch_expired" | "batch_cancelled"))
}

/// One result line: the `custom_id` it answers and the answer or the error.
pub type LineAnswer = (String, Result<Completion, ProviderError>);

impl Providers {
    /// Whether `model`'s provider has a Batch API promptq can use.
    pub fn has_batch_api(kind: ProviderKind) -> bool {
        matches!(kind, ProviderKind::OpenAi | ProviderKind::OpenAiCompatible)
    }

    /// One JSONL line (without its newline): `prompt` on `model` as a direct call sends it.
    pub fn batch_line(&self, model: &Model, prompt: &str, custom_id: &str) -> String {
        let generation = model
            .spec
            .call()
            .map(|call| call.generation.clone())
            .unwrap_or_default();
        let body = openai::request_body(model.provider, model, &generation, prompt);
        json!({
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        })
        .to_string()
    }

    /// Uploads a JSONL file for a batch (`POST /files`, purpose `batch`); its file id.
    pub async fn batch_upload(
        &self,
        model: &Model,
        jsonl: Vec<u8>,
    ) -> Result<String, ProviderError> {
        let boundary = format!(
            "promptq-{:x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        // One text field and one file: a multipart body is short enough to write out here.
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"promptq.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer = self
            .batch_call(model, reqwest::Method::POST, "/files", |r| {
                r.header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
            })
            .await?;
        json_field(model, &answer, "id")
    }

    /// Creates a batch from an uploaded file, with `token` in its metadata.
    pub async fn batch_create(
        &self,
        model: &Model,
        file_id: &str,
        local_id: i64,
        token: &str,
    ) -> Result<RemoteBatch, ProviderError> {
        let request = json!({
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"promptq_batch": local_id.to_string(), TOKEN_KEY: token},
        });
        let answer = self
            .batch_call(model, reqwest::Method::POST, "/batches", |r| {
                r.json(&request)
            })
            .await?;
        remote(model, &answer)
    }

    /// The batch `id` as the provider reports it now.
    pub async fn batch_get(&self, model: &Model, id: &str) -> Result<RemoteBatch, ProviderError> {
        let answer = self
            .batch_call(
                model,
                reqwest::Method::GET,
                &format!("/batches/{id}"),
                |r| r,
            )
            .await?;
        remote(model, &answer)
    }

    /// Asks the provider to cancel batch `id`.
    pub async fn batch_cancel(
        &self,
        model: &Model,
        id: &str,
    ) -> Result<RemoteBatch, ProviderError> {
        let path = format!("/batches/{id}/cancel");
        let answer = self
            .batch_call(model, reqwest::Method::POST, &path, |r| r)
            .await?;
        remote(model, &answer)
    }

    /// The batch whose metadata carries `token`, searched in the provider's list (newest
    /// first, page by page): a submission whose answer was lost.
    pub async fn batch_find(
        &self,
        model: &Model,
        token: &str,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES {
            let path = match &after {
                Some(id) => format!("/batches?limit=100&after={id}"),
                None => "/batches?limit=100".to_owned(),
            };
            let answer = self
                .batch_call(model, reqwest::Method::GET, &path, |r| r)
                .await?;
            let page: Value = parse_json(model, &answer)?;
            let data = page.get("data").and_then(Value::as_array);
            for batch in data.into_iter().flatten() {
                if let Some(found) = RemoteBatch::from_json(batch)
                    && found.token.as_deref() == Some(token)
                {
                    return Ok(Some(found));
                }
            }
            let more = page
                .get("has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            after = page
                .get("last_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    data.and_then(|d| d.last())
                        .and_then(|b| b.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            if !more || after.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// The content of file `id` (a batch's output or error file).
    pub async fn batch_file(&self, model: &Model, id: &str) -> Result<Vec<u8>, ProviderError> {
        self.batch_call(
            model,
            reqwest::Method::GET,
            &format!("/files/{id}/content"),
            |r| r,
        )
        .await
    }

    /// Reads one line of a result file: its `custom_id`, and the answer or the error, read and
    /// classified as a direct call's. `None` for a line that names no request.
    pub fn batch_result(&self, model: &Model, line: &str) -> Option<LineAnswer> {
        let name = model.provider.as_str();
        let value: Value = serde_json::from_str(line).ok()?;
        let custom_id = value.get("custom_id")?.as_str()?.to_owned();
        let redactor = &self.inner.redactor;
        let result = match value.get("response").filter(|r| !r.is_null()) {
            Some(response) => {
                let status = response
                    .get("status_code")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(500);
                let body = response.get("body").cloned().unwrap_or(Value::Null);
                let bytes = match &body {
                    Value::String(text) => text.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                openai::read_answer(name, status, &bytes, redactor).map(|mut completion| {
                    if let Some(id) = response.get("request_id").and_then(Value::as_str) {
                        completion.request_id = Some(id.to_owned());
                    }
                    super::redact_completion(redactor, completion)
                })
            }
            None => {
                // A line the provider could not run at all (`batch_expired`, …): nothing
                // was wrong with the request itself, so it may go into a later batch.
                let error = value.get("error");
                let text = |field: &str| {
                    error
                        .and_then(|e| e.get(field))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                Err(ProviderError::new(
                    ErrorKind::Retryable,
                    redactor.message(&format!(
                        "{name} batch line was not run: {} {}",
                        text("code"),
                        text("message")
                    )),
                ))
            }
        };
        Some((custom_id, result))
    }

    /// One request to the Batch API of `model`'s endpoint; the body of a 2xx answer.
    async fn batch_call(
        &self,
        model: &Model,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ProviderError> {
        let name = model.provider.as_str();
        let redactor = &self.inner.redactor;
        let call = model
            .spec
            .call()
            .map_err(|e| ProviderError::new(ErrorKind::Permanent, redactor.message(e)))?;
        let route = super::endpoints::route(model.provider, call, &self.inner.settings)
            .map_err(|e| ProviderError::new(ErrorKind::Permanent, redactor.message(e.message())))?;
        let url = format!("{}{path}", route.base_url.trim_end_matches('/'));
        let mut request = build(self.client()?.request(method, url));
        if let Some(key) = route.key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Retryable,
                redactor.message(&format!(
                    "{name} batch request {path} failed: {}",
                    e.without_url()
                )),
            )
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Retryable,
                redactor.message(&format!(
                    "{name} batch answer to {path} was cut: {}",
                    e.without_url()
                )),
            )
        })?;
        if (200..300).contains(&status) {
            Ok(bytes.to_vec())
        } else {
            Err(match openai::read_answer(name, status, &bytes, redactor) {
                Err(err) => err,
                Ok(_) => ProviderError::new(ErrorKind::Retryable, format!("{name} {status}")),
            })
        }
    }
}

fn parse_json(model: &Model, body: &[u8]) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorKind::Retryable,
            format!("{} batch answer is not JSON: {e}", model.provider),
        )
    })
}

fn json_field(model: &Model, body: &[u8], field: &str) -> Result<String, ProviderError> {
    parse_json(model, body)?
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Retryable,
                format!("{} batch answer has no {field}", model.provider),
            )
        })
}

fn remote(model: &Model, body: &[u8]) -> Result<RemoteBatch, ProviderError> {
    RemoteBatch::from_json(&parse_json(model, body)?).ok_or_else(|| {
        ProviderError::new(
            ErrorKind::Retryable,
            format!("{} batch answer is not a batch", model.provider),
        )
    })
}
