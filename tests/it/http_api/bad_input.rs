//! Bad input: each answers its 4xx with `{"success": false, "error": "…"}` saying what is
//! wrong, never a 5xx, never axum's default 415 or 422.

use reqwest::Method;
use serde_json::json;

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{SECRET, start};

on_both!(
    owned;
    bad_inputs_answer_4xx_with_a_message,
    bodies_over_one_mebibyte_answer_413,
);

/// How a body is sent.
enum Body {
    None,
    /// Raw bytes with `Content-Type: application/json`.
    Json(&'static str),
    /// Raw bytes without a `Content-Type`.
    Bare(&'static str),
    /// Raw bytes with another `Content-Type`.
    Typed(&'static str, &'static str),
}

pub async fn bad_inputs_answer_4xx_with_a_message(db: TestDb) {
    let server = start(db).await;
    let model = server.model("m", json!({})).await;
    server.prompt("p", 1).await;
    let model_path = format!("/api/models/{model}");

    let cases = cases(&model_path);
    let mut failures = Vec::new();
    for (method, path, body, expected, what) in cases {
        let path = path.as_str();
        let mut request = server
            .client
            .request(method.clone(), server.url(path))
            .header("Authorization", SECRET);
        request = match body {
            Body::None => request,
            Body::Json(text) => request
                .header("Content-Type", "application/json")
                .body(text),
            Body::Bare(text) => request.body(text),
            Body::Typed(content_type, text) => {
                request.header("Content-Type", content_type).body(text)
            }
        };
        let answer = server.send(request).await;
        let shape_ok = answer.json["success"] == json!(false)
            && answer.json["error"].as_str().is_some_and(|e| !e.is_empty())
            && answer.json.as_object().is_some_and(|o| o.len() == 2);
        if answer.status.as_u16() != expected || !shape_ok {
            failures.push(format!(
                "{what}: {method} {path} answered {} {} (expected {expected})",
                answer.status, answer.text
            ));
        }
        assert!(
            !answer.status.is_server_error(),
            "{what}: {method} {path} answered {answer:?}"
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// (method, path, body, expected status, what is wrong)
type Case = (Method, String, Body, u16, &'static str);

#[rustfmt::skip]
fn cases(model_path: &str) -> Vec<Case> {
    use Body::*;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    let raw: Vec<(Method, &str, Body, u16, &'static str)> = vec![
        // /api/jobs/process
        (POST, "/api/jobs/process", Json("{"), 400, "malformed JSON"),
        (POST, "/api/jobs/process", None, 400, "no body"),
        (POST, "/api/jobs/process", Json("   "), 400, "blank body"),
        (POST, "/api/jobs/process", Json("{}"), 400, "missing jobId"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":"12"}"#), 400, "jobId as a string"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":1.5}"#), 400, "jobId not an integer"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":null}"#), 400, "jobId null"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":1,"x":2}"#), 400, "unknown field"),
        (POST, "/api/jobs/process", Json(r#"{"jobid":1}"#), 400, "misspelt field"),
        (POST, "/api/jobs/process", Json("[1]"), 400, "an array"),
        (POST, "/api/jobs/process", Json("null"), 400, "null"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":1} x"#), 400, "trailing text"),
        (POST, "/api/jobs/process", Json(r#"{"jobId":99999999999999999999}"#), 400, "jobId out of range"),
        // A JSON body must say so: what a web page can send without a CORS preflight is refused.
        (POST, "/api/jobs/process", Bare(r#"{"jobId":999999}"#), 415, "no Content-Type"),
        (POST, "/api/jobs/process", Typed("text/plain", r#"{"jobId":999999}"#), 415, "text/plain"),
        (POST, "/api/jobs/process", Typed("application/x-www-form-urlencoded", "jobId=1"), 415, "a form, not JSON"),
        (POST, "/api/jobs/process", Typed("application/vnd.api+json; charset=utf-8", r#"{"jobId":999999}"#), 404, "a +json type"),
        // /api/jobs/status
        (GET, "/api/jobs/status?status=done", None, 400, "unknown status"),
        (GET, "/api/jobs/status?status=QUEUED", None, 400, "status is lowercase"),
        (GET, "/api/jobs/status?limit=0", None, 400, "limit 0"),
        (GET, "/api/jobs/status?limit=1001", None, 400, "limit over 1000"),
        (GET, "/api/jobs/status?limit=-5", None, 400, "negative limit"),
        (GET, "/api/jobs/status?limit=ten", None, 400, "limit not a number"),
        (GET, "/api/jobs/status?limit=99999999999999999999", None, 400, "limit out of range"),
        (GET, "/api/jobs/status?offset=-1", None, 400, "negative offset"),
        (GET, "/api/jobs/status?jobId=x", None, 400, "jobId not a number"),
        (GET, "/api/jobs/status?promptId=1.0", None, 400, "promptId not an integer"),
        (GET, "/api/jobs/status?batchKey=yesterday", None, 400, "bad batch key"),
        (GET, "/api/jobs/status?batch_key=2025-10-14", None, 400, "misspelt parameter"),
        (GET, "/api/jobs/status?limit=1&limit=2", None, 400, "repeated parameter"),
        // /api/cron
        (GET, "/api/cron?batchKey=2025-13-40", None, 400, "impossible date"),
        (GET, "/api/cron?batch=2025-10-14", None, 400, "unknown parameter"),
        (POST, "/api/cron", Json(r#"{"batchKey":5}"#), 400, "batchKey not a string"),
        (POST, "/api/cron", Json(r#"{"batchKey":"2025-10-14","x":1}"#), 400, "unknown field"),
        (POST, "/api/cron", Json("nope"), 400, "not JSON"),
        // /api/jobs/{id}, retry, cancel
        (GET, "/api/jobs/abc", None, 400, "id not a number"),
        (GET, "/api/jobs/999999", None, 404, "unknown job"),
        (POST, "/api/jobs/retry", Json("{}"), 400, "no selector"),
        (POST, "/api/jobs/retry", Json(r#"{"jobId":1,"batchKey":"2025-10-14"}"#), 400, "two selectors"),
        (POST, "/api/jobs/retry", Json(r#"{"jobId":1,"status":"failed"}"#), 400, "status without a batch"),
        (POST, "/api/jobs/retry", Json(r#"{"batchKey":"2025-10-14","status":"nope"}"#), 400, "unknown status"),
        (POST, "/api/jobs/cancel", Json(r#"{"status":"queued"}"#), 400, "status alone"),
        (POST, "/api/jobs/cancel", Json(r#"{"batchKey":"14/10/2025"}"#), 400, "bad batch key"),
        (POST, "/api/jobs/cancel", Json(r#"{"jobId":999999}"#), 404, "unknown job"),
        // /api/responses
        (GET, "/api/responses?limit=0", None, 400, "limit 0"),
        (GET, "/api/responses?modelId=m", None, 400, "modelId not a number"),
        (GET, "/api/responses?text=x", None, 400, "unknown parameter"),
        // models
        (POST, "/api/models", Json(r#"{"name":"x","provider":"anthropic","model":"m"}"#), 400, "unknown provider"),
        (POST, "/api/models", Json(r#"{"provider":"mock","model":"m"}"#), 400, "missing name"),
        (POST, "/api/models", Json(r#"{"name":" ","provider":"mock","model":"m"}"#), 400, "blank name"),
        (POST, "/api/models", Json(r#"{"name":"x","provider":"mock","model":"m","params":5}"#), 400, "params not an object"),
        (POST, "/api/models", Json(r#"{"name":"x","provider":"mock","model":"m","params":{"failRate":7}}"#), 400, "params out of range"),
        (POST, "/api/models", Json(r#"{"name":"x","provider":"openai-compatible","model":"m"}"#), 400, "compatible without baseUrl"),
        (POST, "/api/models", Json(r#"{"name":"x","provider":"mock","model":"m","active":"yes"}"#), 400, "active not a boolean"),
        (POST, "/api/models", Json(r#"{"name":"m","provider":"mock","model":"m"}"#), 409, "name taken"),
        (PATCH, "/api/models/abc", Json("{}"), 400, "id not a number"),
        (PATCH, model_path, Json(r#"{"nme":"x"}"#), 400, "unknown field"),
        (PATCH, model_path, Json(r#"{"name":""}"#), 400, "blank name"),
        (Method::DELETE, "/api/models/999999", None, 404, "unknown model"),
        (Method::PUT, "/api/models", Json("{}"), 405, "no PUT"),
        // prompts
        (POST, "/api/prompts", Json(r#"{"text":""}"#), 400, "empty text"),
        (POST, "/api/prompts", Json(r#"{}"#), 400, "missing text"),
        (POST, "/api/prompts", Json(r#"{"text":"x","runs":0}"#), 400, "runs 0"),
        (POST, "/api/prompts", Json(r#"{"text":"x","runs":1001}"#), 400, "runs over 1000"),
        (POST, "/api/prompts", Json(r#"{"text":"x","runs":10000000000}"#), 400, "runs out of range"),
        (POST, "/api/prompts", Json(r#"{"text":"x","schedule":"every day"}"#), 400, "bad schedule"),
        (POST, "/api/prompts", Json(r#"{"text":"x","modelIds":"1"}"#), 400, "modelIds not a list"),
        (POST, "/api/prompts", Json(r#"{"text":"x","modelIds":[999999]}"#), 404, "unknown model id"),
        (POST, "/api/prompts", Json(r#"{"text":"x","model_ids":[1]}"#), 400, "snake_case field"),
        (PATCH, "/api/prompts/1", Json(r#"{"runs":-1}"#), 400, "negative runs"),
        (GET, "/api/prompts/999999", None, 404, "unknown prompt"),
        // routes
        (GET, "/api/nothing", None, 404, "unknown API route"),
        (GET, "/nothing", None, 404, "unknown route"),
        (POST, "/healthz", None, 405, "healthz is GET only"),
        (GET, "/api/jobs/process", None, 405, "process is POST only"),
    ];
    raw.into_iter().map(|(m, p, b, s, w)| (m, p.to_owned(), b, s, w)).collect()
}

pub async fn bodies_over_one_mebibyte_answer_413(db: TestDb) {
    let server = start(db).await;
    let big = format!(
        r#"{{"text": "{}"}}"#,
        "x".repeat(promptq::http::BODY_LIMIT + 1)
    );
    // With a Content-Length: refused before the body is read (sent over a raw connection that
    // writes only the head: a client still writing the body when the refusal closes the
    // connection may see a reset instead of the answer).
    let (status, text) = raw_post(
        &server.base,
        "/api/prompts",
        &format!("Content-Length: {}\r\n", big.len()),
        &[],
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(r#""success":false"#), "{text}");
    // Streamed without a length (chunked): refused once the limit is crossed.
    let (status, text) = chunked_post(&server.base, "/api/jobs/process", big.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(r#""success":false"#), "{text}");
    // Just under the limit is read (and refused for what it says, not for its size).
    let under = format!(r#"{{"jobId": 1{}}}"#, " ".repeat(1024 * 1024 - 20));
    let answer = server
        .send(
            server
                .request(Method::POST, "/api/jobs/process")
                .header("Content-Type", "application/json")
                .body(under),
        )
        .await;
    answer.assert_error(404);
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw connection (the client library
/// always sends a length for a body it holds) and returns the status and the whole answer.
async fn chunked_post(base: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut framed = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        framed.push([format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat());
    }
    framed.push(b"0\r\n\r\n".to_vec());
    raw_post(base, path, "Transfer-Encoding: chunked\r\n", &framed).await
}

/// POSTs a head with `extra_headers` and then `parts` over a raw connection, and returns the
/// status and the whole answer.
async fn raw_post(base: &str, path: &str, extra_headers: &str, parts: &[Vec<u8>]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: application/json\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    for part in parts {
        // The server may answer and close before reading everything: stop writing then.
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    // A server that waited for a body it was never sent would answer nothing (status 0).
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}
