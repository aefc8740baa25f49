//! Models and prompts over HTTP: create (201), list, read, patch, delete, and their errors.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestDb;
use crate::support::fake::Fake;
use crate::support::on_both;
use crate::support::server::{Answer, Options, Server, keys, set, start, start_with};

/// Prompts without a model list.
mod all_models;

on_both!(
    owned;
    models_are_created_listed_patched_and_deleted,
    prompts_are_created_listed_patched_and_deleted,
    unknown_params_are_refused_with_the_closest_name,
    a_keyless_model_is_warned_about_and_its_jobs_shown_blocked,
    a_prompt_without_an_active_model_keeps_its_batch,
    the_http_fan_out_does_not_send_jobs_of_blocked_models,
);

pub async fn models_are_created_listed_patched_and_deleted(db: TestDb) {
    let server = start(db).await;
    let created = server
        .post(
            "/api/models",
            json!({"name": "fast", "provider": "mock", "model": "mock-1", "params": {"latencyMs": 5}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.keys(), set(&["success", "model"]));
    let model = &created.json["model"];
    assert_eq!(
        keys(model),
        set(&[
            "id",
            "name",
            "provider",
            "model",
            "params",
            "active",
            "createdAt"
        ])
    );
    assert_eq!(model["active"], json!(true), "active defaults to true");
    assert_eq!(model["params"], json!({"latencyMs": 5}));
    let id = model["id"].as_i64().expect("an integer id");

    let defaults = server
        .post(
            "/api/models",
            json!({"name": "plain", "provider": "mock", "model": "m"}),
        )
        .await;
    assert_eq!(defaults.status, StatusCode::CREATED);
    assert_eq!(defaults.json["model"]["params"], json!({}));

    let taken = server
        .post(
            "/api/models",
            json!({"name": "fast", "provider": "mock", "model": "other"}),
        )
        .await;
    taken.assert_error(409);
    assert_eq!(
        taken.json["error"],
        json!("a model named 'fast' already exists")
    );

    let list = server.get("/api/models").await;
    assert_eq!(list.keys(), set(&["success", "models"]));
    assert_eq!(list.assert_ok()["models"].as_array().unwrap().len(), 2);

    let one = server.get(&format!("/api/models/{id}")).await;
    assert_eq!(one.assert_ok()["model"]["name"], json!("fast"));

    let patched = server
        .patch(
            &format!("/api/models/{id}"),
            json!({"active": false, "params": {"latencyMs": 1}}),
        )
        .await;
    let body = patched.assert_ok();
    assert_eq!(body["model"]["active"], json!(false));
    assert_eq!(body["model"]["params"], json!({"latencyMs": 1}));
    assert_eq!(
        body["model"]["name"],
        json!("fast"),
        "unpatched fields stay"
    );

    let deleted = server.delete(&format!("/api/models/{id}")).await;
    assert_eq!(deleted.assert_ok()["id"], json!(id));
    server
        .get(&format!("/api/models/{id}"))
        .await
        .assert_error(404);
    server
        .delete(&format!("/api/models/{id}"))
        .await
        .assert_error(404);
    server
        .patch("/api/models/999999", json!({"active": true}))
        .await
        .assert_error(404);
    assert_eq!(
        server.get("/api/models").await.json["models"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

pub async fn prompts_are_created_listed_patched_and_deleted(db: TestDb) {
    let server = start(db).await;
    let a = server.model("a", json!({})).await;
    let b = server.model("b", json!({})).await;

    let created = server
        .post("/api/prompts", json!({"text": "Best CRM?"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.keys(), set(&["success", "prompt"]));
    let prompt = &created.json["prompt"];
    for key in [
        "id",
        "text",
        "modelIds",
        "runs",
        "active",
        "schedule",
        "lastRunAt",
        "createdAt",
    ] {
        assert!(prompt.get(key).is_some(), "prompt lacks {key}: {prompt}");
    }
    assert_eq!(
        prompt["modelIds"],
        json!([a, b]),
        "default: every active model"
    );
    assert_eq!(prompt["runs"], json!(1));
    assert_eq!(prompt["active"], json!(true));
    assert!(prompt["schedule"].is_null());
    let id = prompt["id"].as_i64().unwrap();

    let scheduled = server
        .post(
            "/api/prompts",
            json!({"text": "Best ERP?", "modelIds": [b], "runs": 3, "active": false, "schedule": "0 */6 * * *"}),
        )
        .await;
    assert_eq!(scheduled.status, StatusCode::CREATED, "{scheduled:?}");
    let other = scheduled.json["prompt"]["id"].as_i64().unwrap();
    assert_eq!(scheduled.json["prompt"]["modelIds"], json!([b]));
    assert_eq!(scheduled.json["prompt"]["schedule"], json!("0 */6 * * *"));

    server
        .post("/api/prompts", json!({"text": "x", "modelIds": [999_999]}))
        .await
        .assert_error(404);

    let list = server.get("/api/prompts").await;
    assert_eq!(list.keys(), set(&["success", "prompts"]));
    assert_eq!(list.assert_ok()["prompts"].as_array().unwrap().len(), 2);
    let one = server.get(&format!("/api/prompts/{id}")).await;
    assert_eq!(one.assert_ok()["prompt"]["text"], json!("Best CRM?"));

    let patched = server
        .patch(
            &format!("/api/prompts/{other}"),
            json!({"schedule": null, "runs": 2, "modelIds": [a]}),
        )
        .await;
    let body = patched.assert_ok();
    assert!(body["prompt"]["schedule"].is_null(), "null clears it");
    assert_eq!(body["prompt"]["runs"], json!(2));
    assert_eq!(body["prompt"]["modelIds"], json!([a]));
    assert_eq!(body["prompt"]["text"], json!("Best ERP?"));
    let untouched = server
        .patch(&format!("/api/prompts/{id}"), json!({"runs": 4}))
        .await;
    assert_eq!(untouched.assert_ok()["prompt"]["runs"], json!(4));

    let deleted = server.delete(&format!("/api/prompts/{id}")).await;
    assert_eq!(deleted.assert_ok()["id"], json!(id));
    server
        .get(&format!("/api/prompts/{id}"))
        .await
        .assert_error(404);
    server
        .patch("/api/prompts/999999", json!({"runs": 2}))
        .await
        .assert_error(404);
}

/// A typo in a param name is refused on write with the name meant; a row stored before the
/// check (or written by another version) still loads and can be edited.
pub async fn unknown_params_are_refused_with_the_closest_name(db: TestDb) {
    let server = start(db).await;
    let typo = server
        .post(
            "/api/models",
            json!({"name": "m", "provider": "mock", "model": "m", "params": {"temprature": 0.2}}),
        )
        .await;
    typo.assert_error(400);
    let error = typo.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("unknown param `temprature`; did you mean `temperature`?"),
        "{error}"
    );
    let extra = server
        .post(
            "/api/models",
            json!({"name": "m", "provider": "mock", "model": "m",
                   "params": {"latencyMs": 1, "extra": {"top_p": 0.9}}}),
        )
        .await;
    assert_eq!(extra.status, StatusCode::CREATED, "{extra:?}");
    let id = extra.json["model"]["id"].as_i64().expect("an id");
    let patched = server
        .patch(
            &format!("/api/models/{id}"),
            json!({"params": {"latncyMs": 5}}),
        )
        .await;
    patched.assert_error(400);
    let error = patched.json["error"].as_str().unwrap_or_default();
    assert!(error.contains("did you mean `latencyMs`?"), "{error}");

    // A row written without the check: it loads, and edits that leave its params alone pass.
    let old = crate::support::seed_model(
        &server.db.store,
        &crate::support::mock_model("old", "m", json!({"latencyMs": 1, "colour": "red"})),
    )
    .await;
    let list = server.get("/api/models").await;
    assert_eq!(list.assert_ok()["models"].as_array().map(Vec::len), Some(2));
    let renamed = server
        .patch(&format!("/api/models/{}", old.id), json!({"name": "older"}))
        .await;
    assert_eq!(
        renamed.assert_ok()["model"]["params"]["colour"],
        json!("red")
    );
}

/// A server without an OpenAI key (its OpenAI URL a local fake), and the answer to creating
/// an `openai` model `gpt` on it.
async fn server_with_a_keyless_model(db: TestDb, http_dispatch: bool) -> (Fake, Server, Answer) {
    let fake = Fake::start().await;
    let server = start_with(
        db,
        Options {
            http_dispatch,
            args: vec!["--openai-base-url".into(), fake.base_url()],
            ..Options::default()
        },
    )
    .await;
    let gpt = server
        .post(
            "/api/models",
            json!({"name": "gpt", "provider": "openai", "model": "gpt-4o-mini"}),
        )
        .await;
    assert_eq!(gpt.status, StatusCode::CREATED, "{gpt:?}");
    (fake, server, gpt)
}

/// Creating a model this server has no key for answers with a warning; its jobs are listed as
/// blocked in the status, and a process call is refused without spending an attempt.
pub async fn a_keyless_model_is_warned_about_and_its_jobs_shown_blocked(db: TestDb) {
    let (fake, server, gpt) = server_with_a_keyless_model(db, false).await;
    assert_eq!(gpt.keys(), set(&["success", "model", "warnings"]));
    let warning = gpt.json["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("model 'gpt' cannot run here: openai: OPENAI_API_KEY is not set"),
        "{warning}"
    );
    let gpt_id = gpt.json["model"]["id"].as_i64().expect("an id");
    let mock = server
        .post(
            "/api/models",
            json!({"name": "mock", "provider": "mock", "model": "m"}),
        )
        .await;
    assert_eq!(
        mock.keys(),
        set(&["success", "model"]),
        "no warning: {mock:?}"
    );
    let prompt = server.post("/api/prompts", json!({"text": "hello"})).await;
    assert_eq!(prompt.status, StatusCode::CREATED, "{prompt:?}");
    let cron = server.get("/api/cron").await;
    assert_eq!(cron.assert_ok()["jobsCreated"], json!(2));

    let status = server.get("/api/jobs/status").await;
    let body = status.assert_ok();
    assert_eq!(
        body["blocked"],
        json!([{"modelId": gpt_id, "modelName": "gpt",
                "reason": "openai: OPENAI_API_KEY is not set", "queued": 1}])
    );
    let job = body["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["modelId"] == json!(gpt_id)))
        .expect("the openai job")
        .clone();
    let refused = server
        .post("/api/jobs/process", json!({"jobId": job["id"]}))
        .await;
    refused.assert_error(409);
    let error = refused.json["error"].as_str().unwrap_or_default();
    assert!(error.contains("OPENAI_API_KEY is not set"), "{error}");
    let after = server
        .get(&format!("/api/jobs/status?jobId={}", job["id"]))
        .await;
    let after = &after.assert_ok()["jobs"][0];
    assert_eq!(
        (&after["status"], &after["attemptCount"]),
        (&json!("queued"), &json!(0))
    );
    assert!(fake.seen().is_empty());
}

/// A prompt whose models are all inactive creates no jobs and does not use up its batch: once
/// a model is active again, the next cron of the same period creates its jobs.
pub async fn a_prompt_without_an_active_model_keeps_its_batch(db: TestDb) {
    let server = start(db).await;
    let model = server
        .post(
            "/api/models",
            json!({"name": "m", "provider": "mock", "model": "m", "active": false}),
        )
        .await;
    let id = model.json["model"]["id"].as_i64().expect("an id");
    let prompt = server
        .post("/api/prompts", json!({"text": "hello", "modelIds": [id]}))
        .await;
    assert_eq!(prompt.status, StatusCode::CREATED, "{prompt:?}");
    let first = server.get("/api/cron").await;
    assert_eq!(first.assert_ok()["jobsCreated"], json!(0));
    let batch = first.json["batchKey"].clone();
    server
        .patch(&format!("/api/models/{id}"), json!({"active": true}))
        .await
        .assert_ok();
    let second = server.get("/api/cron").await;
    assert_eq!(second.assert_ok()["jobsCreated"], json!(1), "{second:?}");
    assert_eq!(second.json["batchKey"], batch);
    let third = server.get("/api/cron").await;
    assert_eq!(third.assert_ok()["jobsCreated"], json!(0), "once per batch");
}

/// The HTTP fan-out sends only jobs that can run here: a key-less model's job waits, queued,
/// instead of being sent (and refused with a 409) on every pass.
pub async fn the_http_fan_out_does_not_send_jobs_of_blocked_models(db: TestDb) {
    let (fake, server, _) = server_with_a_keyless_model(db, true).await;
    server.model("mock", json!({})).await;
    server.prompt("hello", 1).await;
    let cron = server.get("/api/cron").await;
    let body = cron.assert_ok();
    assert_eq!(body["jobsCreated"], json!(2), "{body}");
    assert_eq!(
        (&body["dispatch"]["sent"], &body["dispatch"]["accepted"]),
        (&json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(body["dispatch"]["conflicts"], json!(0), "{body}");
    let again = server.get("/api/cron").await;
    let body = again.assert_ok();
    assert_eq!(body["dispatch"]["sent"], json!(0), "{body}");
    let status = server.get("/api/jobs/status").await;
    let summary = &status.assert_ok()["summary"];
    assert_eq!(
        (&summary["queued"], &summary["succeeded"]),
        (&json!(1), &json!(1))
    );
    assert!(fake.seen().is_empty());
}
