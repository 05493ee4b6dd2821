//! Cell boundaries: tokens of other cells, forged, expired or tampered tokens, X-Cell-Id.

use std::time::Duration;

use service_kit::jwt::{Claims, TokenSigner};
use wire_types::auth::Role;

use crate::helpers::TestApp;

fn signer_of(app: &TestApp, cell: &str) -> TokenSigner {
    TokenSigner::new(
        &app.config.jwt_kid,
        &app.config.jwt_private_key,
        cell,
        "acme",
        Duration::from_secs(300),
    )
    .expect("signer")
}

#[tokio::test]
async fn a_token_from_another_cell_is_rejected() {
    let acme = TestApp::spawn().await;
    let globex = TestApp::spawn().await;
    let admin = acme.admin().await;
    globex
        .api
        .with_token(&admin.access)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    acme.api
        .with_token(&admin.access)
        .get("/v1/users/me")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_token_signed_with_our_key_for_another_audience_is_rejected() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let forged = signer_of(&app, "c-elsewhere")
        .sign(admin.user_id.parse().expect("uuid"), Role::Admin, 0)
        .expect("sign");
    app.api
        .with_token(&forged)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn expired_tampered_and_missing_tokens_are_401() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cell = &app.config.common.cell_id;
    let expired = signer_of(&app, cell)
        .sign_claims(&Claims {
            sub: admin.user_id.parse().expect("uuid"),
            tenant: "acme".into(),
            cell: cell.clone(),
            role: Role::Admin,
            token_version: 0,
            aud: cell.clone(),
            iat: now - 400,
            exp: now - 100,
        })
        .expect("sign");
    let res = app.api.with_token(&expired).get("/v1/users/me").await;
    res.assert_error(401, "unauthenticated");
    assert!(
        res.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );

    let mut tampered = admin.access.clone();
    tampered.pop();
    tampered.push(if admin.access.ends_with('A') {
        'B'
    } else {
        'A'
    });
    app.api
        .with_token(&tampered)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    app.api
        .with_token("not.a.jwt")
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    app.api
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_request_routed_for_another_cell_gets_421() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let misrouted = admin.client.with_header("x-cell-id", "c-someone-else");
    let res = misrouted.get("/v1/users/me").await;
    res.assert_error(421, "wrong_cell");
    let right = admin
        .client
        .with_header("x-cell-id", &app.config.common.cell_id);
    right.get("/v1/users/me").await.assert_status(200);
}
