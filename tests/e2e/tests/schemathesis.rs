//! Schema-driven fuzzing of the real poc-service binary with schemathesis (PyPI), all checks:
//! no server errors, no responses that break the published OpenAPI document.
//! `./x test` installs schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at it.

use e2e_tests::PocProcess;
use serde_json::json;

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let poc = PocProcess::start(&[]).await;
    let tokens = poc.admin("boss@acme.test").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let admin = poc.api.with_token(&token);
    for (name, lang) in [
        ("Kubernetes operator", "rust"),
        ("Realtime whiteboard", "typescript"),
    ] {
        let body = json!({ "name": name, "repository_url": "https://github.com/acme/demo", "language": lang, "tags": ["demo"] });
        admin.post("/v1/pocs", &body).await.assert_status(201);
    }
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let config = format!("{manifest_dir}/schemathesis.toml");
    test_support::assert_schemathesis_clean(
        poc.dir.path(),
        std::path::Path::new(&config),
        &poc.api.base,
        &token,
        &[],
    );
}
