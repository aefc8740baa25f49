//! The served OpenAPI document is a valid OpenAPI 3.1 document: checked with a real JSON Schema
//! validator against the OpenAPI Initiative's own schema, vendored in `tests/schemas/`.

use crate::support::server::start;
use crate::support::sqlite;

const OPENAPI_3_1_SCHEMA: &str = include_str!("../../schemas/openapi-3.1.json");

pub async fn the_served_document_validates_against_the_openapi_3_1_schema() {
    // The document depends only on the code, so one database is enough.
    let server = start(sqlite().await).await;
    let document = server.get("/api/openapi.json").await;
    assert_eq!(document.status, 200, "{document:?}");

    let schema: serde_json::Value =
        serde_json::from_str(OPENAPI_3_1_SCHEMA).expect("the vendored schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the vendored schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&document.json)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} errors against the OpenAPI 3.1 schema:\n{}",
        errors.len(),
        errors.join("\n")
    );
}
