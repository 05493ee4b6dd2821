//! The internal listener: service token only, never user tokens; not on the public listener.

use crate::helpers::TestApp;

#[tokio::test]
async fn token_version_needs_the_service_token() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let path = format!("/internal/v1/users/{}/token-version", admin.user_id);

    let res = app.internal_with_service_token().get(&path).await;
    let body = res.assert_status(200);
    assert_eq!(
        (body["token_version"].as_i64(), body["disabled"].as_bool()),
        (Some(0), Some(false))
    );

    app.internal
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
    app.internal
        .with_token(&admin.access)
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
    app.internal
        .with_token("guess")
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn token_version_reflects_disabling() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let member = app.member(&admin, "dev@acme.test").await;
    admin
        .client
        .patch(
            &format!("/v1/users/{}", member.user_id),
            &serde_json::json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    let res = app
        .internal_with_service_token()
        .get(&format!(
            "/internal/v1/users/{}/token-version",
            member.user_id
        ))
        .await;
    let body = res.assert_status(200);
    assert_eq!(
        (body["token_version"].as_i64(), body["disabled"].as_bool()),
        (Some(1), Some(true))
    );
}

#[tokio::test]
async fn unknown_users_and_bad_ids_on_the_internal_api() {
    let app = TestApp::spawn().await;
    let internal = app.internal_with_service_token();
    internal
        .get(&format!(
            "/internal/v1/users/{}/token-version",
            uuid::Uuid::new_v4()
        ))
        .await
        .assert_error(404, "not_found");
    internal
        .get("/internal/v1/users/not-a-uuid/token-version")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn the_public_listener_does_not_serve_the_internal_api() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let path = format!("/internal/v1/users/{}/token-version", admin.user_id);
    let service_token = secrecy::ExposeSecret::expose_secret(&app.config.service_token).to_owned();
    app.api
        .with_token(&service_token)
        .get(&path)
        .await
        .assert_error(404, "not_found");
}
