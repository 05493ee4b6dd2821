//! Schema-driven fuzzing of dojo-service's REST API with schemathesis (PyPI), all checks: no
//! server errors, no responses that break the published OpenAPI document. `./x test` installs
//! schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at it. The live endpoint is left
//! out: it answers WebSocket handshakes only (400 otherwise, as documented).

use serde_json::json;

use crate::harness::Cell;

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let dojo = cell.create_dojo(&admin, json!({ "name": "Fuzzed" })).await;
    let dojo_id = dojo["id"].as_str().expect("id").to_owned();
    // The live endpoint answers WebSocket handshakes only.
    test_support::schemathesis_with_id(
        "dojo-fuzz",
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        )),
        &dojo_id,
        &format!("{}/openapi.json", cell.dojo.base),
        &cell.dojo.base,
        &admin.token,
        &["--exclude-path", "/v1/dojos/{id}/live"],
    )
    .await;
}
