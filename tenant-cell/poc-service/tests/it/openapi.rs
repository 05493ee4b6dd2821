//! The committed OpenAPI documents match the code; the served one matches too.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p poc-service --test it openapi`.

use crate::helpers::TestApp;

fn check(file: &str, generated: String) {
    test_support::assert_committed(file, &generated, "UPDATE_OPENAPI");
}

#[test]
fn committed_public_spec_matches_the_code() {
    check("openapi.json", poc_service::openapi::public_json());
}

#[test]
fn committed_internal_spec_matches_the_code() {
    check(
        "openapi.internal.json",
        poc_service::openapi::internal_json(),
    );
}

#[test]
fn spec_is_openapi_3_1_and_request_bodies_reject_unknown_fields() {
    let spec: serde_json::Value =
        serde_json::from_str(&poc_service::openapi::public_json()).expect("json");
    assert!(
        spec["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    for schema in [
        "RegisterRequest",
        "LoginRequest",
        "RefreshRequest",
        "UpdateUserRequest",
        "CreateInviteRequest",
        "UpdateSettingsRequest",
    ] {
        assert_eq!(
            spec["components"]["schemas"][schema]["additionalProperties"], false,
            "{schema}"
        );
    }
}

#[tokio::test]
async fn served_spec_is_the_committed_one() {
    let app = TestApp::spawn().await;
    let served = app.api.get("/openapi.json").await;
    let generated: serde_json::Value =
        serde_json::from_str(&poc_service::openapi::public_json()).expect("json");
    assert_eq!(served.body, generated);
}
