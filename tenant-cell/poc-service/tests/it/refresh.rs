//! Rotating refresh tokens: reuse detection and the concurrent-refresh grace window.

use std::time::Duration;

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn refresh_rotates_and_reuse_after_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = Duration::ZERO).await;
    let admin = app.admin().await;
    let first = app
        .api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": admin.refresh }),
        )
        .await;
    let body = first.assert_status(200).clone();
    let next = body["refresh_token"].as_str().expect("token").to_owned();
    assert_ne!(next, admin.refresh);
    app.api
        .with_token(body["access_token"].as_str().expect("access"))
        .get("/v1/users/me")
        .await
        .assert_status(200);

    // The old token again: theft assumed, the whole family dies, including the newest token.
    app.api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": admin.refresh }),
        )
        .await
        .assert_error(401, "refresh_token_reused");
    app.api
        .post("/v1/auth/refresh", &json!({ "refresh_token": next }))
        .await
        .assert_error(401, "invalid_refresh_token");
    // Other sign-ins are untouched.
    let other = app.login("admin@acme.test", crate::helpers::PASSWORD).await;
    let other_refresh = other.assert_status(200)["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": other_refresh }),
        )
        .await
        .assert_status(200);
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_both_succeed() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let body = json!({ "refresh_token": admin.refresh });
    let (a, b) = tokio::join!(
        app.api.post("/v1/auth/refresh", &body),
        app.api.post("/v1/auth/refresh", &body)
    );
    a.assert_status(200);
    b.assert_status(200);
    let (ta, tb) = (
        a.body["refresh_token"].as_str().expect("a"),
        b.body["refresh_token"].as_str().expect("b"),
    );
    assert_ne!(ta, tb);
    // Both successors keep working; the family was not revoked.
    app.api
        .post("/v1/auth/refresh", &json!({ "refresh_token": ta }))
        .await
        .assert_status(200);
    app.api
        .post("/v1/auth/refresh", &json!({ "refresh_token": tb }))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn unknown_refresh_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    app.api
        .post("/v1/auth/refresh", &json!({ "refresh_token": "nope" }))
        .await
        .assert_error(401, "invalid_refresh_token");
}
