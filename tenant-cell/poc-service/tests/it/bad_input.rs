//! Anything a client sends is answered with a 4xx and a stable code, never a 5xx.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let res = app
        .api
        .raw(
            Method::POST,
            "/v1/auth/login",
            "application/json",
            b"{\"email\": ".to_vec(),
        )
        .await;
    res.assert_error(400, "invalid_json");
    let res = app
        .api
        .raw(
            Method::POST,
            "/v1/auth/login",
            "application/json",
            b"[]".to_vec(),
        )
        .await;
    res.assert_error(400, "invalid_json");
}

#[tokio::test]
async fn unknown_fields_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let res = app
        .api
        .post(
            "/v1/auth/login",
            &json!({ "email": "a@acme.test", "password": PASSWORD, "admin": true }),
        )
        .await;
    res.assert_error(400, "invalid_json");
    assert!(
        res.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("admin"),
        "{}",
        res.text
    );
}

#[tokio::test]
async fn wrong_types_name_their_path() {
    let app = TestApp::spawn().await;
    let res = app
        .api
        .post(
            "/v1/auth/register",
            &json!({ "email": ["a"], "password": PASSWORD }),
        )
        .await;
    res.assert_error(400, "invalid_json");
    assert_eq!(res.body["details"]["path"], "email");
}

#[tokio::test]
async fn invalid_fields_are_422_with_every_field_listed() {
    let app = TestApp::spawn_with(|c| c.dev_mode = true).await;
    let res = app
        .api
        .post(
            "/v1/auth/register",
            &json!({ "email": "not-an-email", "password": "short", "display_name": "" }),
        )
        .await;
    res.assert_error(422, "validation_failed");
    let fields = res.field_errors();
    assert_eq!(
        fields,
        [
            ["email", "invalid_email"],
            ["password", "too_short"],
            ["display_name", "required"]
        ]
    );

    let res = app
        .api
        .post(
            "/v1/auth/register",
            &json!({ "email": "ok@acme.test", "password": "1234567890" }),
        )
        .await;
    res.assert_error(422, "validation_failed");
    assert_eq!(res.body["details"]["fields"][0]["code"], "too_common");
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let res = app
        .api
        .raw(Method::POST, "/v1/auth/login", "text/plain", b"{}".to_vec())
        .await;
    res.assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn().await;
    let huge = json!({ "email": "a@acme.test", "password": "x".repeat(100 * 1024) });
    app.api
        .post("/v1/auth/login", &huge)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    app.api
        .get("/v1/nothing-here")
        .await
        .assert_error(404, "not_found");
    app.api
        .get("/v1/auth/login")
        .await
        .assert_error(405, "method_not_allowed");
    let admin = app.admin().await;
    admin
        .client
        .get("/v1/users/not-a-uuid")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn overlong_passwords_on_login_are_422_not_hashed() {
    let app = TestApp::spawn().await;
    let res = app.login("a@acme.test", &"p".repeat(1000)).await;
    res.assert_error(422, "validation_failed");
}
