//! Prompts without a model list: they run on every model active when a batch is created, and
//! switch to and from an explicit list through the API, `prompts edit` and `prompts import`.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::on_both;
use crate::support::server::{Server, start};

on_both!(
    owned;
    a_prompt_without_a_list_runs_on_models_added_later,
    an_import_without_models_runs_on_all_and_with_models_on_those,
);

/// `(promptId, modelId)` of every job of `batch`, created by a cron pass for that batch.
async fn cron_pairs(server: &Server, batch: &str) -> BTreeSet<(i64, i64)> {
    let cron = server.get(&format!("/api/cron?batchKey={batch}")).await;
    cron.assert_ok();
    let status = server
        .get(&format!("/api/jobs/status?batchKey={batch}&limit=1000"))
        .await;
    status.assert_ok()["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| {
            (
                job["promptId"].as_i64().unwrap_or(-1),
                job["modelId"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// `promptq ARGS…` on the server's database, as a user would run it; its standard output.
async fn promptq(url: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new(crate::support::PROMPTQ);
    command.args(args).env_clear().env("DATABASE_URL", url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run promptq");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `promptq prompts edit ID ARGS…`.
async fn edit_prompt(url: &str, id: i64, args: &[&str]) -> String {
    let id = id.to_string();
    promptq(url, &[&["prompts", "edit", id.as_str()], args].concat()).await
}

/// A prompt created without a model list runs on every model active when its batch is
/// enqueued: a model added later joins the next batch, a prompt with its own list does not
/// get it, and `prompts edit --all-models` (then a list again) switches from the next batch on.
pub async fn a_prompt_without_a_list_runs_on_models_added_later(db: TestDb) {
    let server = start(db).await;
    let url = server.db.url.clone();
    let a = server.model("a", json!({})).await;
    let all = server.post("/api/prompts", json!({"text": "on all"})).await;
    assert_eq!(all.status, StatusCode::CREATED, "{all:?}");
    assert_eq!(
        (
            &all.json["prompt"]["allModels"],
            &all.json["prompt"]["modelIds"]
        ),
        (&json!(true), &json!([a]))
    );
    let all = all.json["prompt"]["id"].as_i64().expect("an id");
    let listed = server
        .post("/api/prompts", json!({"text": "on a", "modelIds": [a]}))
        .await;
    assert_eq!(
        listed.json["prompt"]["allModels"],
        json!(false),
        "{listed:?}"
    );
    let listed = listed.json["prompt"]["id"].as_i64().expect("an id");
    assert_eq!(
        cron_pairs(&server, "2030-01-01").await,
        BTreeSet::from([(all, a), (listed, a)])
    );

    let b = server.model("b", json!({})).await;
    let shown: Value = server.get(&format!("/api/prompts/{all}")).await.json;
    assert_eq!(shown["prompt"]["modelIds"], json!([a, b]), "{shown}");
    assert_eq!(
        cron_pairs(&server, "2030-01-02").await,
        BTreeSet::from([(all, a), (all, b), (listed, a)]),
        "the new model joins the all-models prompt only"
    );

    let out = edit_prompt(&url, listed, &["--all-models"]).await;
    assert!(out.contains("all models, now 2 models"), "{out}");
    let c = server.model("c", json!({})).await;
    assert_eq!(
        cron_pairs(&server, "2030-01-03").await,
        BTreeSet::from([
            (all, a),
            (all, b),
            (all, c),
            (listed, a),
            (listed, b),
            (listed, c)
        ])
    );

    edit_prompt(&url, all, &["--model-id", &b.to_string()]).await;
    let shown = server.get(&format!("/api/prompts/{all}")).await;
    assert_eq!(
        (
            &shown.json["prompt"]["allModels"],
            &shown.json["prompt"]["modelIds"]
        ),
        (&json!(false), &json!([b]))
    );
    server.model("d", json!({})).await;
    let fourth = cron_pairs(&server, "2030-01-04").await;
    assert_eq!(
        fourth.iter().filter(|(p, _)| *p == all).count(),
        1,
        "{fourth:?}"
    );
    assert_eq!(
        fourth.iter().filter(|(p, _)| *p == listed).count(),
        4,
        "{fourth:?}"
    );

    // The same switch over HTTP, and its bad forms.
    server
        .patch(
            &format!("/api/prompts/{all}"),
            json!({"allModels": true, "modelIds": [a]}),
        )
        .await
        .assert_error(400);
    server
        .patch(&format!("/api/prompts/{all}"), json!({"allModels": false}))
        .await
        .assert_error(400);
    let back = server
        .patch(&format!("/api/prompts/{all}"), json!({"allModels": true}))
        .await;
    assert_eq!(
        back.assert_ok()["prompt"]["modelIds"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}

/// `prompts import`: a prompt without `models:` runs on every model, one with a list on those;
/// importing switches an existing prompt either way, and importing again changes nothing.
pub async fn an_import_without_models_runs_on_all_and_with_models_on_those(db: TestDb) {
    let server = start(db).await;
    let url = server.db.url.clone();
    let a = server.model("a", json!({})).await;
    let b = server.model("b", json!({})).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("catalog.yaml");
    let file = path.to_str().expect("a utf-8 path");
    let import = async |models: &str| {
        std::fs::write(&path, format!("prompts:\n  - text: imported\n{models}")).expect("write");
        let out = promptq(&url, &["prompts", "import", file]).await;
        let list = server.get("/api/prompts").await;
        let prompt = list.assert_ok()["prompts"][0].clone();
        (out, prompt["allModels"].clone(), prompt["modelIds"].clone())
    };
    let (out, all, ids) = import("").await;
    assert!(out.contains("1 created"), "{out}");
    assert_eq!((all, ids), (json!(true), json!([a, b])));
    let (out, all, ids) = import("    models: [b]\n").await;
    assert!(out.contains("1 updated"), "{out}");
    assert_eq!((all, ids), (json!(false), json!([b])));
    let (out, all, _) = import("").await;
    assert!(out.contains("1 updated"), "{out}");
    assert_eq!(all, json!(true));
    let (out, _, _) = import("").await;
    assert!(out.contains("0 updated, 1 unchanged"), "{out}");
}
