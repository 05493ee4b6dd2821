//! Schema-driven fuzzing with schemathesis (PyPI), all checks — no server errors, no responses
//! that break the published OpenAPI document, every request the document calls valid accepted
//! (`positive_data_acceptance`; see `schemathesis.toml` for the few rules JSON Schema cannot
//! state): the real poc-service binary on its own, and all three documents through the real
//! router against a tenant of a running platform.
//! `./x test` installs schemathesis into a venv and points `MRBILL_SCHEMATHESIS` at it.

use e2e_tests::PocProcess;
use e2e_tests::platform::Platform;
use serde_json::json;
use test_support::ApiClient;

async fn seed_pocs(api: &ApiClient) -> String {
    let mut id = String::new();
    for (name, lang) in [
        ("Kubernetes operator", "rust"),
        ("Realtime whiteboard", "typescript"),
    ] {
        let body = json!({ "name": name, "repository_url": "https://github.com/acme/demo", "language": lang, "tags": ["demo"] });
        let poc = api.post("/v1/pocs", &body).await;
        id = poc.assert_status(201)["id"]
            .as_str()
            .expect("id")
            .to_owned();
    }
    id
}

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let poc = PocProcess::start(&[]).await;
    let tokens = poc.admin("boss@acme.test").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    seed_pocs(&poc.api.with_token(&token)).await;
    test_support::assert_schemathesis_clean(
        poc.dir.path(),
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml")),
        &format!("{}/openapi.json", poc.api.base),
        &poc.api.base,
        &token,
        &[],
    );
}

/// The same checks through the router (`/t/<slug>`), with each service's committed document and
/// settings: what the router adds (limits, 413s, headers, errors of its own) must hold to the
/// documents too. Rate limits are raised so the fuzzer's pace is not answered with 429s.
#[tokio::test]
async fn through_the_router_every_service_holds_to_its_document() {
    let platform = Platform::up_with(&[
        ("MRBILL_TENANT_RATE", "100000"),
        ("MRBILL_CLIENT_RATE", "100000"),
    ]);
    let tenant = platform.create_tenant("fuzz");
    let token = platform.admin_token(&tenant).await;
    let admin = platform.api("fuzz").with_token(&token);
    let poc = seed_pocs(&admin).await;
    let dojo = admin
        .post(
            "/v1/dojos",
            &json!({ "name": "Fuzzed", "language": "rust" }),
        )
        .await;
    let dojo = dojo.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let report = admin.post("/v1/reports", &json!({ "format": "csv" })).await;
    let report = report.assert_status(202)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let base = format!("{}/t/fuzz", platform.router_url());
    for (service, settings, id, extra) in [
        ("poc", "tests/e2e/schemathesis.toml", poc, &[][..]),
        (
            "dojo",
            "tenant-cell/dojo-service/tests/schemathesis.toml",
            dojo,
            &["--exclude-path", "/v1/dojos/{id}/live"][..],
        ),
        (
            "media",
            "tenant-cell/media-service/tests/schemathesis.toml",
            report,
            &[][..],
        ),
    ] {
        test_support::schemathesis_with_id(
            &format!("router-fuzz-{service}"),
            &std::path::Path::new(root).join(settings),
            &id,
            &format!("{root}/tenant-cell/{service}-service/openapi.json"),
            &base,
            &token,
            extra,
        )
        .await;
    }
}
