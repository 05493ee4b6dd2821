//! Registration, bootstrap, invites, login, me, logout.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn bootstrap_invite_makes_the_first_admin_once_and_only_once() {
    let app = TestApp::spawn().await;
    let invite = app.bootstrap_invite("Boss@Acme.test").await;

    let res = app
        .register("boss@acme.test", PASSWORD, Some(&invite))
        .await;
    assert_eq!(res.assert_status(201)["user"]["role"], "admin");

    // The invite is spent, and the cell refuses a second bootstrap.
    app.register("boss2@acme.test", PASSWORD, Some(&invite))
        .await
        .assert_error(403, "invalid_invite");
    let again = poc_service::bootstrap::bootstrap_admin(&app.pool, "other@acme.test", None).await;
    assert!(
        matches!(
            again,
            Err(poc_service::bootstrap::BootstrapError::AlreadyBootstrapped)
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn bootstrap_invite_is_bound_to_the_admin_email() {
    let app = TestApp::spawn().await;
    let invite = app.bootstrap_invite("boss@acme.test").await;
    app.register("intruder@acme.test", PASSWORD, Some(&invite))
        .await
        .assert_error(403, "invalid_invite");
    app.register("boss@acme.test", PASSWORD, Some(&invite))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn bootstrap_retried_with_the_same_token_is_idempotent_and_a_new_token_replaces_the_old() {
    let app = TestApp::spawn().await;
    let first = poc_service::bootstrap::bootstrap_admin(
        &app.pool,
        "boss@acme.test",
        Some("secret-one".into()),
    )
    .await
    .expect("first");
    let again = poc_service::bootstrap::bootstrap_admin(
        &app.pool,
        "boss@acme.test",
        Some("secret-one".into()),
    )
    .await
    .expect("retry");
    assert_eq!(
        first.expires_at, again.expires_at,
        "a retry re-uses the same invite"
    );

    poc_service::bootstrap::bootstrap_admin(&app.pool, "boss@acme.test", Some("secret-two".into()))
        .await
        .expect("replace");
    app.register("boss@acme.test", PASSWORD, Some("secret-one"))
        .await
        .assert_error(403, "invalid_invite");
    app.register("boss@acme.test", PASSWORD, Some("secret-two"))
        .await
        .assert_status(201);
}

/// The Kubernetes path: the cell is configured with the invite's email and the token's
/// SHA-256 (never the token) and creates the invite at start.
#[tokio::test]
async fn a_cell_configured_with_an_invite_hash_creates_that_invite_at_start() {
    let token = "held-by-the-control-plane";
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .replace_nanosecond(0)
        .expect("whole seconds");
    let app = TestApp::spawn_with(|c| {
        c.bootstrap = Some(poc_service::config::BootstrapConfig {
            admin_email: "Boss@Acme.test".into(),
            invite_token_sha256: service_kit::secrets::token_hash(token),
            expires_at,
        })
    })
    .await;
    let stored: time::OffsetDateTime =
        sqlx::query_scalar("SELECT expires_at FROM invites WHERE bootstrap AND used_at IS NULL")
            .fetch_one(&app.pool)
            .await
            .expect("one pending bootstrap invite");
    assert_eq!(stored, expires_at, "the control plane's expiry is honoured");
    app.register("intruder@acme.test", PASSWORD, Some(token))
        .await
        .assert_error(403, "invalid_invite");
    app.register("boss@acme.test", PASSWORD, Some("a-guess"))
        .await
        .assert_error(403, "invalid_invite");
    let res = app.register("boss@acme.test", PASSWORD, Some(token)).await;
    assert_eq!(res.assert_status(201)["user"]["role"], "admin");

    // A restart with the same configuration (every pod start) changes nothing.
    poc_service::app::App::build_with_pool(app.config.clone(), app.pool.clone())
        .await
        .expect("a restarted cell with an admin starts");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM invites WHERE bootstrap AND used_at IS NULL")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(pending, 0, "no new invite once the admin exists");
}

/// An invite that expired unused must not stop the cell: every pod start re-reads the same
/// `spec.bootstrap`, and the token's hash may be stored only once.
#[tokio::test]
async fn an_expired_configured_invite_is_refused_and_the_cell_still_restarts() {
    let token = "held-by-the-control-plane";
    let app = TestApp::spawn_with(|c| {
        c.bootstrap = Some(poc_service::config::BootstrapConfig {
            admin_email: "boss@acme.test".into(),
            invite_token_sha256: service_kit::secrets::token_hash(token),
            expires_at: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
        })
    })
    .await;
    app.register("boss@acme.test", PASSWORD, Some(token))
        .await
        .assert_error(403, "invalid_invite");

    for restart in 0..2 {
        poc_service::app::App::build_with_pool(app.config.clone(), app.pool.clone())
            .await
            .unwrap_or_else(|e| panic!("restart {restart} with the expired invite failed: {e:#}"));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM invites WHERE bootstrap")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(
        stored, 1,
        "the expired invite is neither duplicated nor revived"
    );
    app.register("boss@acme.test", PASSWORD, Some(token))
        .await
        .assert_error(403, "invalid_invite");
}

#[tokio::test]
async fn registration_without_an_invite_is_closed_by_default() {
    let app = TestApp::spawn().await;
    app.register("dev@acme.test", PASSWORD, None)
        .await
        .assert_error(403, "registration_closed");
}

#[tokio::test]
async fn first_registrant_becomes_admin_only_in_dev_mode() {
    let app = TestApp::spawn_with(|c| c.dev_mode = true).await;
    assert_eq!(
        app.register("first@acme.test", PASSWORD, None)
            .await
            .assert_status(201)["user"]["role"],
        "admin"
    );
    // Then the cell's normal rule applies (invite-only by default).
    app.register("second@acme.test", PASSWORD, None)
        .await
        .assert_error(403, "registration_closed");
}

#[tokio::test]
async fn admin_invites_work_once_and_revoked_invites_not_at_all() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = admin
        .client
        .post("/v1/invites", &json!({ "role": "admin" }))
        .await;
    let token = created.assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let res = app
        .register("second-admin@acme.test", PASSWORD, Some(&token))
        .await;
    assert_eq!(res.assert_status(201)["user"]["role"], "admin");
    app.register("third@acme.test", PASSWORD, Some(&token))
        .await
        .assert_error(403, "invalid_invite");

    let created = admin
        .client
        .post("/v1/invites", &json!({ "email": "late@acme.test" }))
        .await;
    let body = created.assert_status(201).clone();
    assert_eq!(body["invite"]["role"], "member");
    let id = body["invite"]["id"].as_str().expect("id");
    admin
        .client
        .delete(&format!("/v1/invites/{id}"))
        .await
        .assert_status(204);
    app.register("late@acme.test", PASSWORD, body["token"].as_str())
        .await
        .assert_error(403, "invalid_invite");
    admin
        .client
        .delete(&format!("/v1/invites/{id}"))
        .await
        .assert_error(404, "not_found");

    let listed = admin.client.get("/v1/invites").await;
    assert!(
        !listed.text.contains("token_hash") && !listed.text.contains(&token),
        "invite listings never contain secrets"
    );
}

#[tokio::test]
async fn login_issues_tokens_that_work_on_me() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let res = app.login("ADMIN@acme.test", PASSWORD).await;
    let body = res.assert_status(200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().expect("expires_in") <= 300);
    let session = app.session(body);
    let me = session.client.get("/v1/users/me").await;
    assert_eq!(
        me.assert_status(200)["id"].as_str(),
        Some(admin.user_id.as_str())
    );
    assert_eq!(me.body["email"], "admin@acme.test");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = TestApp::spawn().await;
    app.admin().await;
    let wrong = app.login("admin@acme.test", "definitely not it").await;
    let unknown = app.login("nobody@acme.test", PASSWORD).await;
    wrong.assert_error(401, "invalid_credentials");
    unknown.assert_error(401, "invalid_credentials");
    assert_eq!(wrong.body["message"], unknown.body["message"]);
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_family() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let rotated = app
        .api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": admin.refresh }),
        )
        .await;
    let newest = rotated.assert_status(200)["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.api
        .post(
            "/v1/auth/logout",
            &json!({ "refresh_token": admin.refresh }),
        )
        .await
        .assert_status(204);
    app.api
        .post("/v1/auth/refresh", &json!({ "refresh_token": newest }))
        .await
        .assert_error(401, "invalid_refresh_token");
    // Idempotent.
    app.api
        .post("/v1/auth/logout", &json!({ "refresh_token": newest }))
        .await
        .assert_status(204);
}
