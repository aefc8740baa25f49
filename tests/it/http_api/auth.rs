//! The secret: every `/api/*` route refuses a request that does not carry it in the
//! `Authorization` header, and no answer ever carries it back.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{Options, SECRET, Server, start, start_with};

on_both!(
    owned;
    every_api_route_refuses_a_missing_or_wrong_secret,
    the_secret_is_accepted_as_is_or_as_a_bearer_token,
    no_error_body_carries_the_secret,
);

/// Every API route, with a body that would be valid.
fn api_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/cron", None),
        (Method::POST, "/api/cron", None),
        (Method::POST, "/api/jobs/process", Some(json!({"jobId": 1}))),
        (Method::GET, "/api/jobs/status", None),
        (Method::GET, "/api/jobs/1", None),
        (Method::POST, "/api/jobs/retry", Some(json!({"jobId": 1}))),
        (Method::POST, "/api/jobs/cancel", Some(json!({"jobId": 1}))),
        (Method::GET, "/api/responses", None),
        (Method::GET, "/api/models", None),
        (
            Method::POST,
            "/api/models",
            Some(json!({"name": "m", "provider": "mock", "model": "m"})),
        ),
        (Method::GET, "/api/models/1", None),
        (
            Method::PATCH,
            "/api/models/1",
            Some(json!({"active": false})),
        ),
        (Method::DELETE, "/api/models/1", None),
        (Method::GET, "/api/prompts", None),
        (Method::POST, "/api/prompts", Some(json!({"text": "t"}))),
        (Method::GET, "/api/prompts/1", None),
        (Method::PATCH, "/api/prompts/1", Some(json!({"runs": 2}))),
        (Method::DELETE, "/api/prompts/1", None),
        (Method::GET, "/api/openapi.json", None),
        // Unknown API routes are refused before routing: they reveal nothing.
        (Method::GET, "/api/nothing-here", None),
        (Method::DELETE, "/api/cron", None),
    ]
}

fn without_auth(
    server: &Server,
    method: &Method,
    path: &str,
    body: &Option<Value>,
) -> reqwest::RequestBuilder {
    let request = server.client.request(method.clone(), server.url(path));
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

pub async fn every_api_route_refuses_a_missing_or_wrong_secret(db: TestDb) {
    let server = start(db).await;
    let wrong_headers = [
        format!("Bearer {SECRET}x"),
        "Bearer wrong".to_owned(),
        SECRET[..SECRET.len() - 1].to_owned(),
        format!("Basic {SECRET}"),
        format!("Token {SECRET}"),
        format!("Bearer{SECRET}"),
        "Bearer".to_owned(),
        String::new(),
    ];
    let in_query = [
        format!("secret={SECRET}"),
        format!("token={SECRET}"),
        format!("cron_secret={SECRET}"),
        format!("CRON_SECRET={SECRET}"),
        format!("authorization=Bearer%20{SECRET}"),
    ];
    for (method, path, body) in api_routes() {
        let missing = server
            .send(without_auth(&server, &method, path, &body))
            .await;
        missing.assert_error(401);
        assert!(
            missing.text.contains("Authorization"),
            "the message says what to send"
        );
        for header in &wrong_headers {
            let wrong = server
                .send(without_auth(&server, &method, path, &body).header("Authorization", header))
                .await;
            wrong.assert_error(401);
            assert!(!wrong.text.contains(SECRET));
        }
        for query in &in_query {
            let path = format!("{path}?{query}");
            let answer = server
                .send(without_auth(&server, &method, &path, &body))
                .await;
            answer.assert_error(401);
            assert!(!answer.text.contains(SECRET));
        }
    }
    // A cookie is no way in either.
    server
        .send(
            server
                .client
                .get(server.url("/api/jobs/status"))
                .header("Cookie", format!("secret={SECRET}")),
        )
        .await
        .assert_error(401);
}

pub async fn the_secret_is_accepted_as_is_or_as_a_bearer_token(db: TestDb) {
    let server = start(db).await;
    for header in [
        SECRET.to_owned(),
        format!("Bearer {SECRET}"),
        format!("bearer {SECRET}"),
    ] {
        let answer = server
            .send(
                server
                    .client
                    .get(server.url("/api/jobs/status"))
                    .header("Authorization", header),
            )
            .await;
        answer.assert_ok();
    }
    // The open routes need nothing.
    for path in ["/healthz", "/metrics"] {
        let answer = server.send(server.client.get(server.url(path))).await;
        assert_eq!(answer.status.as_u16(), 200, "{path}: {answer:?}");
    }
}

pub async fn no_error_body_carries_the_secret(db: TestDb) {
    let server = start(db).await;
    // Inputs that quote the secret back in a naive rejection message.
    let attempts = [
        server
            .request(Method::POST, "/api/jobs/process")
            .body(SECRET),
        server
            .request(Method::POST, "/api/jobs/process")
            .json(&json!({"jobId": SECRET})),
        server
            .request(Method::POST, "/api/jobs/process")
            .json(&json!({SECRET: 1})),
        server.request(Method::GET, &format!("/api/jobs/status?status={SECRET}")),
        server.request(Method::GET, &format!("/api/jobs/status?{SECRET}=1")),
        server.request(Method::GET, &format!("/api/jobs/{SECRET}")),
        server.request(Method::GET, &format!("/api/cron?batchKey={SECRET}")),
        server
            .request(Method::POST, "/api/models")
            .json(&json!({"name": "x", "provider": SECRET, "model": "m"})),
        server
            .request(Method::POST, "/api/prompts")
            .json(&json!({"text": "x", "schedule": SECRET})),
        server.request(Method::GET, &format!("/{SECRET}")),
        server.request(Method::GET, &format!("/api/{SECRET}")),
    ];
    for request in attempts {
        let answer = server.send(request).await;
        assert!(answer.status.is_client_error(), "{answer:?}");
        assert!(
            !answer.text.contains(SECRET),
            "an error body carries the secret: {answer:?}"
        );
    }
}

pub async fn without_a_secret_the_api_is_open(db: TestDb) {
    let server = start_with(
        db,
        Options {
            open: true,
            ..Options::default()
        },
    )
    .await;
    let answer = server
        .send(server.client.get(server.url("/api/jobs/status")))
        .await;
    answer.assert_ok();
    let cron = server
        .send(server.client.get(server.url("/api/cron")))
        .await;
    cron.assert_ok();
}
