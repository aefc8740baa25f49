//! Open mode on a developer's laptop: what another site's page can make the browser send to
//! `127.0.0.1`, byte for byte, and what the server does with it.
//!
//! Requests are written by hand on a TCP socket ([`raw`]) so that `Host`, `Origin` and
//! `Content-Type` are exactly what a browser puts there: a cross-site "simple" POST
//! (`text/plain`, or a form), and a DNS-rebound page whose own name now points at 127.0.0.1.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::server::{Options, Server, start_with};
use crate::support::{TestDb, on_both};

/// An answer read off the socket.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts `{"success": false, "error": …}` with `status`, and returns the message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert_eq!(json["success"], json!(false), "{self:?}");
        let message = json["error"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "{self:?}");
        message
    }

    /// The values of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    }
}

/// Sends `method path` to `server` with exactly `headers` (plus `Content-Length` and
/// `Connection: close`) and `body`, and reads the whole answer.
pub async fn raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Raw {
    let address = server.base.trim_start_matches("http://");
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the server");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers within 20 s")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `127.0.0.1:PORT` of the server, as a browser's `Host` for `http://127.0.0.1:PORT`.
pub fn host(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

fn port(server: &Server) -> String {
    host(server)
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default()
}

async fn open_server(db: TestDb) -> Server {
    start_with(
        db,
        Options {
            open: true,
            dashboard: true,
            ..Options::default()
        },
    )
    .await
}

/// How many models and jobs the store holds, and how many jobs are still queued: what a forged
/// request would have changed.
async fn store_state(server: &Server) -> (usize, i64, i64) {
    let models = server.get("/api/models").await;
    let models = models.assert_ok()["models"].as_array().map_or(0, Vec::len);
    let status = server.get("/api/jobs/status").await;
    let summary = &status.assert_ok()["summary"];
    (
        models,
        summary["total"].as_i64().unwrap_or(-1),
        summary["queued"].as_i64().unwrap_or(-1),
    )
}

/// A cross-site page's `fetch(url, {method: "POST", mode: "no-cors", body})`: a simple request
/// (no preflight), `text/plain;charset=UTF-8`, with the attacking page as `Origin`.
pub async fn text_plain_posts_from_another_site_change_nothing(db: TestDb) {
    let server = open_server(db).await;
    let model = server.model("alpha", json!({})).await;
    server.prompt("Which CRM?", 2).await;
    let batch = server.cron().await;
    let before = store_state(&server).await;
    assert_eq!(before, (1, 2, 2));
    let host = host(&server);
    let attacks = [
        ("/api/cron", json!({"batchKey": "2020-01-01"})),
        (
            "/api/models",
            json!({"name": "evil", "provider": "mock", "model": "m"}),
        ),
        (
            "/api/jobs/cancel",
            json!({"batchKey": batch, "status": "queued"}),
        ),
    ];
    for (path, body) in &attacks {
        let body = body.to_string();
        // With the attacking page's Origin, as every browser sends on a cross-site POST.
        let forged = raw(
            &server,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Mode", "no-cors"),
            ],
            &body,
        )
        .await;
        forged.assert_error(403);
        // Even without an Origin (an old browser, a privacy extension): not a JSON request.
        let no_origin = raw(
            &server,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Content-Type", "text/plain;charset=UTF-8"),
            ],
            &body,
        )
        .await;
        let message = no_origin.assert_error(415);
        assert!(message.contains("application/json"), "{message}");
        // An HTML form post (`<form method=post enctype=...urlencoded>`): the same.
        let form = raw(
            &server,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "jobId=1",
        )
        .await;
        form.assert_error(403);
        let form = raw(
            &server,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "",
        )
        .await;
        form.assert_error(415);
    }
    assert_eq!(
        store_state(&server).await,
        before,
        "a forged request changed the store"
    );
    assert_eq!(
        server.get(&format!("/api/models/{model}")).await.status,
        200
    );

    // The same page cannot read the queue either.
    let read = raw(
        &server,
        "GET",
        "/api/jobs/status",
        &[("Host", &host), ("Origin", "http://evil.example")],
        "",
    )
    .await;
    read.assert_error(403);
}

/// A page on `evil.example` whose name was rebound to 127.0.0.1: its requests are same-origin
/// for the browser (so JSON needs no preflight), but carry `Host: evil.example:PORT`. The
/// loopback names and APP_URL's host are still served ([`loopback_clients_and_app_url_are_served`]).
pub async fn dns_rebinding_is_refused_by_host(db: TestDb) {
    let server = start_with(
        db,
        Options {
            open: true,
            dashboard: true,
            args: vec!["--app-url".into(), "https://q.example.com".into()],
            ..Options::default()
        },
    )
    .await;
    server.model("alpha", json!({})).await;
    server.prompt("Which CRM?", 1).await;
    let before = store_state(&server).await;
    let rebound = format!("evil.example:{}", port(&server));
    let origin = format!("http://{rebound}");
    let json_headers = [
        ("Host", rebound.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "application/json"),
    ];
    let model = json!({"name": "evil", "provider": "mock", "model": "m"}).to_string();
    for (method, path, body) in [
        ("POST", "/api/cron", ""),
        ("POST", "/api/models", model.as_str()),
        ("POST", "/api/jobs/cancel", "{\"jobId\": 1}"),
    ] {
        let answer = raw(&server, method, path, &json_headers, body).await;
        let message = answer.assert_error(421);
        assert!(message.contains("evil.example"), "{message}");
        assert!(message.contains("APP_URL"), "{message}");
    }
    // Reads are refused too: the rebound page could otherwise read answers and the dashboard.
    for path in [
        "/api/jobs/status",
        "/api/models",
        "/api/cron",
        "/",
        "/failed",
    ] {
        let answer = raw(&server, "GET", path, &[("Host", rebound.as_str())], "").await;
        answer.assert_error(421);
    }
    assert_eq!(store_state(&server).await, before);
    loopback_clients_and_app_url_are_served(&server).await;
}

/// What must keep working: Vercel Cron and curl (`GET /api/cron`, no Origin), the loopback
/// names with any port, this server's own pages (same Origin), and APP_URL's host.
async fn loopback_clients_and_app_url_are_served(server: &Server) {
    let port = port(server);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
        "q.example.com".to_owned(),
    ] {
        let cron = raw(
            server,
            "GET",
            "/api/cron",
            &[("Host", &host), ("User-Agent", "vercel-cron/1.0")],
            "",
        )
        .await;
        assert_eq!(cron.status, 200, "{host}: {cron:?}");
        assert_eq!(cron.json()["success"], json!(true));
    }
    // curl -X POST with no body: no Content-Type, no Origin.
    let post = raw(server, "POST", "/api/cron", &[("Host", &host(server))], "").await;
    assert_eq!(post.status, 200, "{post:?}");
    // A page of this very server (or of APP_URL) may post JSON.
    for origin in [server.base.clone(), "https://q.example.com".to_owned()] {
        let body = json!({"name": format!("m{}", origin.len()), "provider": "mock", "model": "m"});
        let created = raw(
            server,
            "POST",
            "/api/models",
            &[
                ("Host", &host(server)),
                ("Origin", &origin),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            &body.to_string(),
        )
        .await;
        assert_eq!(created.status, 201, "{origin}: {created:?}");
    }
}

/// With a secret, a cross-origin Origin is refused on /api/* even with the secret (the API is
/// not meant for other sites' scripts), while the Host is not checked (proxies rewrite it).
pub async fn with_a_secret_origin_is_checked_and_host_is_not(db: TestDb) {
    let server = start_with(db, Options::default()).await;
    let bearer = format!("Bearer {}", crate::support::server::SECRET);
    let from_evil = raw(
        &server,
        "GET",
        "/api/jobs/status",
        &[
            ("Host", &host(&server)),
            ("Origin", "http://evil.example"),
            ("Authorization", &bearer),
        ],
        "",
    )
    .await;
    from_evil.assert_error(403);
    let proxied = raw(
        &server,
        "GET",
        "/api/jobs/status",
        &[("Host", "internal-name:8080"), ("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(proxied.status, 200, "{proxied:?}");
}

on_both!(
    threads = 2;
    owned;
    text_plain_posts_from_another_site_change_nothing,
    dns_rebinding_is_refused_by_host,
    with_a_secret_origin_is_checked_and_host_is_not,
);
