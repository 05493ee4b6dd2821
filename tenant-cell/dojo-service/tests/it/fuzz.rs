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
    let workdir = std::env::temp_dir().join(format!("dojo-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    // The committed settings, plus the id of a dojo that exists, so that requests reach
    // past "not found".
    let settings = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/schemathesis.toml"
    ))
    .expect("schemathesis.toml");
    let config = workdir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!("{settings}\n[parameters]\n\"path.id\" = \"{dojo_id}\"\n"),
    )
    .expect("config");
    let base = cell.dojo.base.clone();
    let token = admin.token.clone();
    tokio::task::spawn_blocking(move || {
        test_support::assert_schemathesis_clean(
            &workdir,
            &config,
            &base,
            &token,
            // The live endpoint answers WebSocket handshakes only.
            &["--exclude-path", "/v1/dojos/{id}/live"],
        );
    })
    .await
    .expect("schemathesis run");
}
