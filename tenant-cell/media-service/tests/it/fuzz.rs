//! The committed OpenAPI document, and schema-driven fuzzing of media-service's REST API with
//! schemathesis (PyPI), all checks: no server errors, no responses that break the published
//! document. `./x test` installs schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at
//! it. Workers are off: the fuzzer queues jobs but nothing renders them.

use serde_json::json;

use crate::harness::Cell;

#[test]
fn openapi_document_is_committed_and_current() {
    let generated = media_service::openapi::public_json();
    test_support::assert_committed("openapi.json", &generated, "UPDATE_OPENAPI");
}

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let cell = Cell::start_with(|c| c.jobs.workers = 0).await;
    let admin = cell.poc.admin().await;
    cell.poc.create_poc(&admin, "Fuzzed", json!({})).await;
    let job = cell
        .as_user(&admin)
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await
        .assert_status(202)
        .clone();
    let id = job["id"].as_str().expect("id").to_owned();
    test_support::schemathesis_with_id(
        "media-fuzz",
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        )),
        &id,
        &format!("{}/openapi.json", cell.media.base),
        &cell.media.base,
        &admin.token,
        &[],
    )
    .await;
}
