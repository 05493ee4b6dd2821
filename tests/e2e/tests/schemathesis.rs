//! Schema-driven fuzzing of the real poc-service binary with schemathesis (PyPI), all checks:
//! no server errors, no responses that break the published OpenAPI document.
//! `./x test` installs schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at it.

use std::process::Command;

use e2e_tests::PocProcess;
use serde_json::json;

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let st = test_support::schemathesis();
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
    let output = Command::new(&st)
        // Its example database and caches go to the test's temporary directory.
        .current_dir(poc.dir.path())
        .args([
            "--config-file",
            &config,
            "run",
            &format!("{}/openapi.json", poc.api.base),
        ])
        .args([
            "--url",
            &poc.api.base,
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .output()
        .expect("run schemathesis");
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
