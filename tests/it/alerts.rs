//! Webhook alerts end to end, on both databases, over real HTTP: a local receiver stands in
//! for Slack's incoming webhook (it answers as scripted: 500, then 200), jobs run through
//! `/api/jobs/process`, and the checks and delivery passes are run at chosen instants (the
//! app takes the time as an argument), so retries and deadlines need no sleeping.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use promptq::app::{App, DeliveryReport};
use serde_json::{Value, json};

use crate::http_api::operations::assert_documented;
use crate::support::fake::{Fake, Reply};
use crate::support::server::{Options, Server, start_with};
use crate::support::{TestDb, on_both};

on_both!(owned;
    a_failed_batch_alerts_once_and_a_500_is_retried_then_delivered_once,
    the_dead_man_fires_once_per_slot_and_reaches_a_receiver_that_was_down,
    the_dead_man_watches_prompts_on_a_schedule_of_their_own,
    a_significant_mention_change_fires_one_alert,
);

/// The secret part of the webhook's URL, as in Slack's `hooks.slack.com/services/T…/B…/TOKEN`.
const TOKEN: &str = "xoxb-SECRET-TOKEN-4f1c";

#[derive(Default)]
struct Inbox {
    /// Statuses to answer next, in order; 200 once they are used up.
    script: VecDeque<u16>,
    received: Vec<(HeaderMap, Value)>,
}

/// A webhook receiver on 127.0.0.1.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start(addr: &str) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new().fallback(receive).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, inbox }
    }

    fn url(&self) -> String {
        webhook_url(self.addr)
    }

    fn answer_next(&self, statuses: &[u16]) {
        self.inbox.lock().unwrap().script.extend(statuses);
    }

    fn received(&self) -> Vec<(HeaderMap, Value)> {
        self.inbox.lock().unwrap().received.clone()
    }
}

fn webhook_url(addr: SocketAddr) -> String {
    format!("http://{addr}/services/T000/B000/{TOKEN}")
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    let mut inbox = inbox.lock().unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inbox.received.push((headers, body));
    match inbox.script.pop_front() {
        Some(status) => (StatusCode::from_u16(status).unwrap(), "internal_error"),
        None => (StatusCode::OK, "ok"),
    }
}

/// A server whose alerts go to `webhook`, with more flags.
async fn server(db: TestDb, webhook: &str, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec!["--alert-webhook-url".into(), webhook.into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    start_with(
        db,
        Options {
            args,
            ..Options::default()
        },
    )
    .await
}

/// Another process on the same database: an app of its own, on a connection of its own.
async fn another_app(server: &Server, extra: &[&str]) -> App {
    let mut args = vec!["--cron-schedule", "0 0 * * *", "--timezone", "UTC"];
    args.extend_from_slice(extra);
    let config = crate::support::config(&server.db.url, &args);
    let store = promptq::store::Store::open(&server.db.url)
        .await
        .expect("open the database");
    App::with_store(config, store).expect("app")
}

/// Creates the jobs of `batch` and runs every one of them through `/api/jobs/process`.
async fn run_batch(server: &Server, batch: &str) -> Vec<Value> {
    let cron = server.get(&format!("/api/cron?batchKey={batch}")).await;
    cron.assert_ok();
    let mut ids = server.job_ids(batch).await;
    ids.sort();
    let mut answers = Vec::new();
    for id in ids {
        let done = server.post("/api/jobs/process", json!({"jobId": id})).await;
        answers.push(done.assert_ok().clone());
    }
    answers
}

fn delivered(n: u64) -> DeliveryReport {
    DeliveryReport {
        delivered: n,
        ..DeliveryReport::default()
    }
}

fn retried(n: u64) -> DeliveryReport {
    DeliveryReport {
        retried: n,
        ..DeliveryReport::default()
    }
}

async fn a_failed_batch_alerts_once_and_a_500_is_retried_then_delivered_once(db: TestDb) {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = server(
        db,
        &receiver.url(),
        &["--alert-failure-rate", "0.25", "--max-attempts", "1"],
    )
    .await;
    let app = &server.app;
    server.model("good", json!({})).await;
    server.model("bad", json!({"failRate": 1.0})).await;
    server.prompt("Which CRM is best?", 2).await;
    let batch = "2025-10-14";
    server
        .get(&format!("/api/cron?batchKey={batch}"))
        .await
        .assert_ok();
    let mut ids = server.job_ids(batch).await;
    ids.sort();
    assert_eq!(ids.len(), 4);
    let now = Utc::now();
    // All but one job ran: the batch is not finished, whatever has failed so far.
    for id in &ids[..3] {
        let done = server.post("/api/jobs/process", json!({"jobId": id})).await;
        done.assert_ok();
    }
    assert_eq!(app.check_alerts(now).await.unwrap(), 0);
    let last = server
        .post("/api/jobs/process", json!({"jobId": ids[3]}))
        .await;
    last.assert_ok();
    let summary = server
        .get(&format!("/api/jobs/status?batchKey={batch}"))
        .await;
    assert_eq!(summary.assert_ok()["summary"]["failed"], 2, "{summary:?}");

    // Finished with 2 of 4 failed (50% > 25%): one alert, however often it is checked.
    assert_eq!(app.check_alerts(now).await.unwrap(), 1);
    assert_eq!(app.check_alerts(now).await.unwrap(), 0);
    let other = another_app(&server, &["--alert-webhook-url", &receiver.url()]).await;
    assert_eq!(other.check_alerts(now).await.unwrap(), 0);
    // Without a webhook nothing is created at all.
    let silent = another_app(&server, &[]).await;
    assert_eq!(silent.check_alerts(now).await.unwrap(), 0);
    assert_eq!(silent.alert_counts().await.unwrap(), None);

    // The receiver fails once: the alert waits for its retry, with the error kept.
    receiver.answer_next(&[500]);
    assert_eq!(app.deliver_alerts(now).await.unwrap(), retried(1));
    assert_eq!(
        app.deliver_alerts(now).await.unwrap(),
        DeliveryReport::default(),
        "not due again before its backoff"
    );
    let status = server.get("/api/jobs/status").await;
    assert_eq!(
        status.assert_ok()["alerts"],
        json!({"pending": 1, "failed": 0, "delivered": 0})
    );
    let stored = app.alerts_recent(10).await.unwrap();
    let error = stored[0].last_error.clone().expect("the error is kept");
    assert!(error.contains("500"), "{error}");
    assert!(
        !error.contains(TOKEN),
        "the webhook's URL is never shown: {error}"
    );

    // After the backoff (30 s by default) it is delivered, and never again.
    let later = now + Duration::minutes(2);
    assert_eq!(app.deliver_alerts(later).await.unwrap(), delivered(1));
    assert_eq!(
        other
            .deliver_alerts(later + Duration::days(1))
            .await
            .unwrap(),
        DeliveryReport::default()
    );
    let received = receiver.received();
    assert_eq!(received.len(), 2, "one failed attempt, one delivery");
    let (headers, body) = &received[1];
    assert_eq!(received[0].1, *body, "a retry sends the same body");
    assert_eq!(body["dedupeKey"], format!("failures@{batch}"));
    assert_eq!(body["kind"], "failures");
    let text = body["text"].as_str().expect("a text fallback");
    assert!(text.contains(batch) && text.contains("2 of 4"), "{text}");
    assert_eq!(body["blocks"][0]["text"]["text"], text);
    assert_eq!(body["details"]["failed"], 2);
    let id = body["alertId"].as_i64().expect("alertId");
    assert_eq!(
        headers
            .get("x-promptq-alert-id")
            .and_then(|v| v.to_str().ok()),
        Some(id.to_string().as_str())
    );
    let status = server.get("/api/jobs/status").await;
    assert_eq!(
        status.assert_ok()["alerts"],
        json!({"pending": 0, "failed": 0, "delivered": 1})
    );
    let document = server.get("/api/openapi.json").await.json;
    assert_documented(&document, "StatusAnswer", &status.json);
    assert_documented(&document, "AlertCounts", &status.json["alerts"]);
    assert!(!status.text.contains(TOKEN));
}

async fn the_dead_man_fires_once_per_slot_and_reaches_a_receiver_that_was_down(db: TestDb) {
    // A port nobody listens on yet: the receiver is down.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = webhook_url(addr);
    let server = server(db, &url, &["--alert-deadman-minutes", "60"]).await;
    let app = &server.app;
    server.model("m", json!({})).await;
    server.prompt("Which CRM is best?", 1).await;
    let schedule = app.default_schedule().clone();
    let slot = schedule.next_after(Utc::now()).unwrap();
    let key = schedule.batch_key(slot).unwrap().to_string();

    // Before the deadline, and for a slot older than every prompt, nothing fires.
    assert_eq!(
        app.check_deadman(slot + Duration::minutes(30))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        app.check_deadman(slot - Duration::minutes(1))
            .await
            .unwrap(),
        0
    );
    // 61 minutes after a slot without jobs, two processes check at the same moment, again and
    // again: one alert.
    let other = another_app(&server, &["--alert-webhook-url", &url]).await;
    let late = slot + Duration::minutes(61);
    let mut created = 0;
    for _ in 0..3 {
        let (a, b) = tokio::join!(app.check_deadman(late), other.check_deadman(late));
        created += a.unwrap() + b.unwrap();
    }
    assert_eq!(created, 1);
    // A slot whose batch has jobs is not missed.
    assert_a_slot_with_its_job_is_not_missed(&server, &schedule, slot).await;

    // The receiver is down: the attempts fail and the alert waits, its error without the URL.
    assert_eq!(app.deliver_alerts(late).await.unwrap(), retried(1));
    assert_eq!(
        other
            .deliver_alerts(late + Duration::hours(1))
            .await
            .unwrap(),
        retried(1)
    );
    let stored = &app.alerts_recent(1).await.unwrap()[0];
    assert_eq!(stored.attempts, 2);
    let error = stored.last_error.clone().unwrap_or_default();
    assert!(error.contains("connect"), "{error}");
    assert!(
        !error.contains(TOKEN) && !error.contains(&addr.to_string()),
        "{error}"
    );
    // It comes back: the next pass delivers, once.
    let receiver = Receiver::start(&addr.to_string()).await;
    assert_eq!(
        app.deliver_alerts(late + Duration::hours(2)).await.unwrap(),
        delivered(1)
    );
    assert_eq!(
        app.deliver_alerts(late + Duration::hours(3)).await.unwrap(),
        DeliveryReport::default()
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let body = &received[0].1;
    assert_eq!(body["dedupeKey"], format!("deadman@{key}"));
    assert!(body["text"].as_str().unwrap().contains(&key), "{body}");
}

/// A prompt on its own schedule is watched on that schedule's slots, under a key of its own.
async fn the_dead_man_watches_prompts_on_a_schedule_of_their_own(db: TestDb) {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = server(db, &receiver.url(), &["--alert-deadman-minutes", "60"]).await;
    let app = &server.app;
    server.model("m", json!({})).await;
    let expr = "30 6 * * *";
    let created = server
        .post(
            "/api/prompts",
            json!({"text": "Which CRM is best?", "runs": 1, "schedule": expr}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let own = promptq::schedule::Schedule::parse(expr, promptq::schedule::Zone::UTC).unwrap();
    let slot = own.next_after(Utc::now()).unwrap();
    let key = own.batch_key(slot).unwrap().to_string();

    // Before the deadline, and for a slot older than the prompt, nothing fires; nor does the
    // global schedule, which no prompt is on.
    for early in [slot + Duration::minutes(30), slot - Duration::minutes(1)] {
        assert_eq!(app.check_deadman(early).await.unwrap(), 0);
    }
    let late = slot + Duration::minutes(61);
    assert_eq!(app.check_deadman(late).await.unwrap(), 1);
    assert_eq!(app.check_deadman(late).await.unwrap(), 0, "once per slot");
    let stored = &app.alerts_recent(5).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].dedupe_key, format!("deadman:{expr}@{key}"));
    assert!(
        stored[0].message.contains("1 prompt"),
        "{}",
        stored[0].message
    );

    // The next slot's batch has its job: not missed.
    assert_a_slot_with_its_job_is_not_missed(&server, &own, slot).await;
}

/// The slot after `slot`, its batch created (one job): no dead-man alert an hour after it.
async fn assert_a_slot_with_its_job_is_not_missed(
    server: &Server,
    schedule: &promptq::schedule::Schedule,
    slot: chrono::DateTime<Utc>,
) {
    let next = schedule.next_after(slot).unwrap();
    let next_key = schedule.batch_key(next).unwrap().to_string();
    let cron = server.get(&format!("/api/cron?batchKey={next_key}")).await;
    assert_eq!(cron.assert_ok()["jobsCreated"], 1);
    assert_eq!(
        server
            .app
            .check_deadman(next + Duration::minutes(61))
            .await
            .unwrap(),
        0
    );
}

/// An answer naming the brands in `text`.
fn answer(text: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "gen-1", "model": "fake-1", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}}),
    )
}

async fn a_significant_mention_change_fires_one_alert(db: TestDb) {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = server(db, &receiver.url(), &["--alert-deadman-minutes", "0"]).await;
    let app = &server.app;
    let fake = Fake::start().await;
    let model = server
        .post(
            "/api/models",
            json!({"name": "fake", "provider": "openai-compatible", "model": "fake-1",
                   "params": {"baseUrl": fake.base_url()}}),
        )
        .await;
    assert_eq!(model.status, 201, "{model:?}");
    server
        .prompt("Which CRM is best for a small team?", 4)
        .await;
    let tracker = server
        .post(
            "/api/insights/trackers",
            json!({"name": "CRMs", "terms": [{"name": "HubSpot"}, {"name": "Salesforce"}]}),
        )
        .await;
    assert_eq!(tracker.status, 201, "{tracker:?}");
    // Batch 1: every run names Salesforce only; batch 2: every run names both. HubSpot goes
    // from 0 of 4 to 4 of 4 (significant); Salesforce stays at 4 of 4.
    fake.reply(answer("I would pick Salesforce."));
    run_batch(&server, "2025-10-14").await;
    let now = Utc::now();
    assert_eq!(
        app.check_alerts(now).await.unwrap(),
        0,
        "nothing to compare with"
    );
    fake.reply(answer("HubSpot first, then Salesforce."));
    run_batch(&server, "2025-10-15").await;

    assert_eq!(app.check_alerts(now).await.unwrap(), 1);
    assert_eq!(app.check_alerts(now).await.unwrap(), 0);
    assert_eq!(app.deliver_alerts(now).await.unwrap(), delivered(1));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let body = &received[0].1;
    assert_eq!(body["kind"], "mention");
    assert_eq!(body["details"]["term"], "HubSpot");
    assert_eq!(body["details"]["change"]["significant"], true);
    let key = body["dedupeKey"].as_str().unwrap();
    assert!(
        key.starts_with("mention:") && key.ends_with("@2025-10-15"),
        "{key}"
    );
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("HubSpot") && text.contains("4 of 4"),
        "{text}"
    );
}
