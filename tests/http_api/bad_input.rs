//! Bad input: each answers its 4xx with `{"success": false, "error": "…"}` saying what is
//! wrong, never a 5xx, never axum's default 415 or 422.

use reqwest::Method;
use serde_json::json;

use crate::harness::{SECRET, start};
use crate::support::TestDb;

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
    let model_path = Box::leak(model_path.into_boxed_str()) as &'static str;

    use Body::*;
    let cases: Vec<(Method, &str, Body, u16, &str)> = vec![
        // /api/jobs/process
        (
            Method::POST,
            "/api/jobs/process",
            Json("{"),
            400,
            "malformed JSON",
        ),
        (Method::POST, "/api/jobs/process", None, 400, "no body"),
        (
            Method::POST,
            "/api/jobs/process",
            Json("   "),
            400,
            "blank body",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json("{}"),
            400,
            "missing jobId",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":"12"}"#),
            400,
            "jobId as a string",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":1.5}"#),
            400,
            "jobId not an integer",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":null}"#),
            400,
            "jobId null",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":1,"x":2}"#),
            400,
            "unknown field",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobid":1}"#),
            400,
            "misspelt field",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json("[1]"),
            400,
            "an array",
        ),
        (Method::POST, "/api/jobs/process", Json("null"), 400, "null"),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":1} x"#),
            400,
            "trailing text",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Json(r#"{"jobId":99999999999999999999}"#),
            400,
            "jobId out of range",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Bare(r#"{"jobId":999999}"#),
            404,
            "no Content-Type: accepted",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Typed("text/plain", r#"{"jobId":999999}"#),
            404,
            "another Content-Type: accepted",
        ),
        (
            Method::POST,
            "/api/jobs/process",
            Bare("jobId=1"),
            400,
            "a form, not JSON",
        ),
        // /api/jobs/status
        (
            Method::GET,
            "/api/jobs/status?status=done",
            None,
            400,
            "unknown status",
        ),
        (
            Method::GET,
            "/api/jobs/status?status=QUEUED",
            None,
            400,
            "status is lowercase",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=0",
            None,
            400,
            "limit 0",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=1001",
            None,
            400,
            "limit over 1000",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=-5",
            None,
            400,
            "negative limit",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=ten",
            None,
            400,
            "limit not a number",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=99999999999999999999",
            None,
            400,
            "limit out of range",
        ),
        (
            Method::GET,
            "/api/jobs/status?offset=-1",
            None,
            400,
            "negative offset",
        ),
        (
            Method::GET,
            "/api/jobs/status?jobId=x",
            None,
            400,
            "jobId not a number",
        ),
        (
            Method::GET,
            "/api/jobs/status?promptId=1.0",
            None,
            400,
            "promptId not an integer",
        ),
        (
            Method::GET,
            "/api/jobs/status?batchKey=yesterday",
            None,
            400,
            "bad batch key",
        ),
        (
            Method::GET,
            "/api/jobs/status?batch_key=2025-10-14",
            None,
            400,
            "misspelt parameter",
        ),
        (
            Method::GET,
            "/api/jobs/status?limit=1&limit=2",
            None,
            400,
            "repeated parameter",
        ),
        // /api/cron
        (
            Method::GET,
            "/api/cron?batchKey=2025-13-40",
            None,
            400,
            "impossible date",
        ),
        (
            Method::GET,
            "/api/cron?batch=2025-10-14",
            None,
            400,
            "unknown parameter",
        ),
        (
            Method::POST,
            "/api/cron",
            Json(r#"{"batchKey":5}"#),
            400,
            "batchKey not a string",
        ),
        (
            Method::POST,
            "/api/cron",
            Json(r#"{"batchKey":"2025-10-14","x":1}"#),
            400,
            "unknown field",
        ),
        (Method::POST, "/api/cron", Json("nope"), 400, "not JSON"),
        // /api/jobs/{id}, retry, cancel
        (Method::GET, "/api/jobs/abc", None, 400, "id not a number"),
        (Method::GET, "/api/jobs/999999", None, 404, "unknown job"),
        (
            Method::POST,
            "/api/jobs/retry",
            Json("{}"),
            400,
            "no selector",
        ),
        (
            Method::POST,
            "/api/jobs/retry",
            Json(r#"{"jobId":1,"batchKey":"2025-10-14"}"#),
            400,
            "two selectors",
        ),
        (
            Method::POST,
            "/api/jobs/retry",
            Json(r#"{"jobId":1,"status":"failed"}"#),
            400,
            "status without a batch",
        ),
        (
            Method::POST,
            "/api/jobs/retry",
            Json(r#"{"batchKey":"2025-10-14","status":"nope"}"#),
            400,
            "unknown status",
        ),
        (
            Method::POST,
            "/api/jobs/cancel",
            Json(r#"{"status":"queued"}"#),
            400,
            "status alone",
        ),
        (
            Method::POST,
            "/api/jobs/cancel",
            Json(r#"{"batchKey":"14/10/2025"}"#),
            400,
            "bad batch key",
        ),
        (
            Method::POST,
            "/api/jobs/cancel",
            Json(r#"{"jobId":999999}"#),
            404,
            "unknown job",
        ),
        // /api/responses
        (Method::GET, "/api/responses?limit=0", None, 400, "limit 0"),
        (
            Method::GET,
            "/api/responses?modelId=m",
            None,
            400,
            "modelId not a number",
        ),
        (
            Method::GET,
            "/api/responses?text=x",
            None,
            400,
            "unknown parameter",
        ),
        // models
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"x","provider":"anthropic","model":"m"}"#),
            400,
            "unknown provider",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"provider":"mock","model":"m"}"#),
            400,
            "missing name",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":" ","provider":"mock","model":"m"}"#),
            400,
            "blank name",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"x","provider":"mock","model":"m","params":5}"#),
            400,
            "params not an object",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"x","provider":"mock","model":"m","params":{"failRate":7}}"#),
            400,
            "params out of range",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"x","provider":"openai-compatible","model":"m"}"#),
            400,
            "compatible without baseUrl",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"x","provider":"mock","model":"m","active":"yes"}"#),
            400,
            "active not a boolean",
        ),
        (
            Method::POST,
            "/api/models",
            Json(r#"{"name":"m","provider":"mock","model":"m"}"#),
            409,
            "name taken",
        ),
        (
            Method::PATCH,
            "/api/models/abc",
            Json("{}"),
            400,
            "id not a number",
        ),
        (
            Method::PATCH,
            model_path,
            Json(r#"{"nme":"x"}"#),
            400,
            "unknown field",
        ),
        (
            Method::PATCH,
            model_path,
            Json(r#"{"name":""}"#),
            400,
            "blank name",
        ),
        (
            Method::DELETE,
            "/api/models/999999",
            None,
            404,
            "unknown model",
        ),
        (Method::PUT, "/api/models", Json("{}"), 405, "no PUT"),
        // prompts
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":""}"#),
            400,
            "empty text",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{}"#),
            400,
            "missing text",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","runs":0}"#),
            400,
            "runs 0",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","runs":1001}"#),
            400,
            "runs over 1000",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","runs":10000000000}"#),
            400,
            "runs out of range",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","schedule":"every day"}"#),
            400,
            "bad schedule",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","modelIds":"1"}"#),
            400,
            "modelIds not a list",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","modelIds":[999999]}"#),
            404,
            "unknown model id",
        ),
        (
            Method::POST,
            "/api/prompts",
            Json(r#"{"text":"x","model_ids":[1]}"#),
            400,
            "snake_case field",
        ),
        (
            Method::PATCH,
            "/api/prompts/1",
            Json(r#"{"runs":-1}"#),
            400,
            "negative runs",
        ),
        (
            Method::GET,
            "/api/prompts/999999",
            None,
            404,
            "unknown prompt",
        ),
        // routes
        (Method::GET, "/api/nothing", None, 404, "unknown API route"),
        (Method::GET, "/nothing", None, 404, "unknown route"),
        (Method::POST, "/healthz", None, 405, "healthz is GET only"),
        (
            Method::GET,
            "/api/jobs/process",
            None,
            405,
            "process is POST only",
        ),
    ];

    let mut failures = Vec::new();
    for (method, path, body, expected, what) in cases {
        let mut request = server
            .client
            .request(method.clone(), server.url(path))
            .header("Authorization", SECRET);
        request = match body {
            None => request,
            Json(text) => request
                .header("Content-Type", "application/json")
                .body(text),
            Bare(text) => request.body(text),
            Typed(content_type, text) => request.header("Content-Type", content_type).body(text),
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

pub async fn bodies_over_one_mebibyte_answer_413(db: TestDb) {
    let server = start(db).await;
    let big = format!(
        r#"{{"text": "{}"}}"#,
        "x".repeat(promptq::http::BODY_LIMIT + 1)
    );
    // With a Content-Length: refused before the body is read.
    let answer = server
        .send(
            server
                .request(Method::POST, "/api/prompts")
                .header("Content-Type", "application/json")
                .body(big.clone()),
        )
        .await;
    answer.assert_error(413);
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in body.chunks(64 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and close before reading everything: stop writing then.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}
