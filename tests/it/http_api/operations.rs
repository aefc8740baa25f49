//! `/healthz`, `/metrics` and the OpenAPI document; and what the API answers when the
//! database is gone.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{keys, set, start};

on_both!(
    owned;
    healthz_and_metrics_are_open,
    concurrent_scrapes_share_one_database_read,
    healthz_and_api_answer_503_when_the_database_is_gone,
    openapi_document_describes_the_real_answers,
);

pub async fn healthz_and_metrics_are_open(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    server.cron().await;

    let health = server.send(server.client.get(server.url("/healthz"))).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json, json!({"status": "ok"}));

    let metrics = server.send(server.client.get(server.url("/metrics"))).await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metrics.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "promptq_jobs{status=\"queued\"} 20",
        "promptq_jobs{status=\"succeeded\"} 0",
        "promptq_queue_depth 20",
        "promptq_expired_leases 0",
        "# TYPE promptq_oldest_queued_age_seconds gauge",
    ] {
        assert!(
            metrics.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.text
        );
    }
    assert!(!metrics.text.contains(crate::support::server::SECRET));
}

/// Many scrapes at once share one read of the database: the gauge cache lets at most one
/// aggregate run per period (`promptq_gauge_refreshes_total` counts each read where it
/// starts, before the statement runs), and every scrape still gets the full exposition.
pub async fn concurrent_scrapes_share_one_database_read(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    server.cron().await;
    let reads = || {
        server
            .app
            .metrics()
            .gauge_refreshes
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(reads(), 0);
    let started = std::time::Instant::now();
    let scrapes = (0..48).map(|_| server.send(server.client.get(server.url("/metrics"))));
    let answers = futures_util::future::join_all(scrapes).await;
    let elapsed = started.elapsed();
    for metrics in &answers {
        assert_eq!(metrics.status, 200, "{metrics:?}");
        assert!(
            metrics
                .text
                .lines()
                .any(|l| l == "promptq_jobs{status=\"queued\"} 20"),
            "{}",
            metrics.text
        );
    }
    // Bounded by the periods the scrapes really spanned, so a slow machine cannot fail it.
    let periods = elapsed.as_secs_f64() / promptq::metrics::GAUGE_TTL.as_secs_f64();
    let allowed = 1 + periods.floor() as u64;
    assert!(
        reads() <= allowed,
        "{} database reads for 48 scrapes in {elapsed:?} (at most {allowed})",
        reads()
    );
    let last = server.send(server.client.get(server.url("/metrics"))).await;
    let exposed = format!("promptq_gauge_refreshes_total {}", reads());
    assert!(last.text.lines().any(|l| l == exposed), "{}", last.text);
}

pub async fn healthz_and_api_answer_503_when_the_database_is_gone(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    server.db.store.close().await;

    let health = server.send(server.client.get(server.url("/healthz"))).await;
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json, json!({"status": "unavailable"}));
    for path in [
        "/api/jobs/status",
        "/api/cron",
        "/api/models",
        "/api/jobs/1",
    ] {
        let answer = server.get(path).await;
        answer.assert_error(503);
        assert_eq!(
            answer.json["error"],
            json!("database unavailable"),
            "{path}"
        );
    }
    server
        .post("/api/jobs/process", json!({"jobId": 1}))
        .await
        .assert_error(503);
    let metrics = server.send(server.client.get(server.url("/metrics"))).await;
    metrics.assert_error(503);
}

/// The properties of a schema in the document, and the required ones.
fn schema(document: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    let required = schema["required"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (keys(&schema["properties"]), required)
}

/// A real answer's keys must all be documented, and every required property present.
pub(crate) fn assert_documented(document: &Value, name: &str, answer: &Value) {
    let (properties, required) = schema(document, name);
    let actual = keys(answer);
    let undocumented: Vec<_> = actual.difference(&properties).collect();
    assert!(
        undocumented.is_empty(),
        "{name}: undocumented {undocumented:?}"
    );
    let missing: Vec<_> = required.difference(&actual).collect();
    assert!(
        missing.is_empty(),
        "{name}: required but absent {missing:?}"
    );
}

/// For types whose every field is always present.
pub(crate) fn assert_documented_exactly(document: &Value, name: &str, answer: &Value) {
    let (properties, _) = schema(document, name);
    assert_eq!(properties, keys(answer), "{name}");
}

pub async fn openapi_document_describes_the_real_answers(db: TestDb) {
    let server = start(db).await;
    server.seed_original().await;
    let document = server.get("/api/openapi.json").await;
    assert_eq!(document.status, 200);
    let document = document.json;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );

    let paths = &document["paths"];
    for (path, methods) in [
        ("/api/cron", &["get", "post"][..]),
        ("/api/jobs/process", &["post"]),
        ("/api/jobs/status", &["get"]),
        ("/api/jobs/{id}", &["get"]),
        ("/api/jobs/retry", &["post"]),
        ("/api/jobs/cancel", &["post"]),
        ("/api/responses", &["get"]),
        ("/api/models", &["get", "post"]),
        ("/api/models/{id}", &["get", "patch", "delete"]),
        ("/api/prompts", &["get", "post"]),
        ("/api/prompts/{id}", &["get", "patch", "delete"]),
        ("/api/openapi.json", &["get"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    assert!(document["components"]["securitySchemes"]["cron_secret"].is_object());

    let cron = server.get("/api/cron").await;
    assert_documented(&document, "CronAnswer", &cron.json);
    let batch = cron.json["batchKey"].as_str().unwrap().to_owned();
    let job = server.job_ids(&batch).await[0];
    let processed = server
        .post("/api/jobs/process", json!({"jobId": job}))
        .await;
    assert_documented(&document, "ProcessReport", &processed.json);

    let status = server
        .get(&format!("/api/jobs/status?batchKey={batch}"))
        .await;
    // `alerts` is there only with a webhook (the alerts tests check that answer).
    assert_documented(&document, "StatusAnswer", &status.json);
    assert_documented_exactly(&document, "Summary", &status.json["summary"]);
    assert_documented_exactly(&document, "Job", &status.json["jobs"][0]);
    assert_documented_exactly(&document, "ModelCounts", &status.json["perModel"][0]);
    assert_documented_exactly(&document, "TokenTotals", &status.json["tokens"]);
    assert_documented_exactly(&document, "LatencyStats", &status.json["latencyMs"]);

    let detail = server.get(&format!("/api/jobs/{job}")).await;
    assert_documented_exactly(&document, "JobDetail", &detail.json);
    assert_documented_exactly(&document, "Attempt", &detail.json["attempts"][0]);
    assert_documented_exactly(&document, "StoredResponse", &detail.json["response"]);

    let responses = server.get("/api/responses").await;
    assert_documented_exactly(&document, "Responses", &responses.json);
    let models = server.get("/api/models").await;
    assert_documented_exactly(&document, "Models", &models.json);
    assert_documented_exactly(&document, "Model", &models.json["models"][0]);
    let prompts = server.get("/api/prompts").await;
    assert_documented_exactly(&document, "Prompts", &prompts.json);
    assert_documented_exactly(&document, "Prompt", &prompts.json["prompts"][0]);
    let one = server.get("/api/prompts/1").await;
    assert_documented_exactly(&document, "OnePrompt", &one.json);
    let cancelled = server
        .post("/api/jobs/cancel", json!({"batchKey": batch}))
        .await;
    assert_documented_exactly(&document, "Count", &cancelled.json);
    let error = server.get("/api/jobs/999999").await;
    assert_documented_exactly(&document, "Error", &error.json);
    let health = server.get("/healthz").await;
    assert_documented_exactly(&document, "Health", &health.json);
    assert_eq!(keys(&health.json), set(&["status"]));
}

pub async fn a_panicking_handler_answers_500_without_details(db: TestDb) {
    async fn boom() -> &'static str {
        panic!("boom: SELECT * FROM secrets")
    }
    let extra = axum::Router::new()
        .route("/api/boom", axum::routing::get(boom))
        .route("/boom", axum::routing::get(boom));
    let server = crate::support::server::start_with(
        db,
        crate::support::server::Options {
            extra: Some(extra),
            ..Default::default()
        },
    )
    .await;
    server
        .send(server.client.get(server.url("/api/boom")))
        .await
        .assert_error(401);
    for path in ["/api/boom", "/boom"] {
        let answer = server.get(path).await;
        answer.assert_error(500);
        assert_eq!(answer.json["error"], json!("internal error"));
    }
    // The server is still there.
    server.get("/api/jobs/status").await.assert_ok();
}
