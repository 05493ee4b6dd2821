//! Schema-driven fuzzing of dojo-service's REST API with schemathesis (PyPI), all checks: no
//! server errors, no responses that break the published OpenAPI document. `./x test` installs
//! schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at it. The live endpoint is left
//! out: it answers WebSocket handshakes only (400 otherwise, as documented).

use std::process::Command;

use serde_json::json;

use crate::harness::Cell;

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let st = test_support::schemathesis();
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
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            // Its example database and caches go to a temporary directory.
            .current_dir(&workdir)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &format!("{base}/openapi.json")])
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--exclude-path", "/v1/dojos/{id}/live"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
}
