//! Account self-service: profile, password change, admin-issued reset tokens, and "forgot
//! password" mail — to a mailbox directory, and over SMTP to a real server (PyPI `aiosmtpd`).

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, code_in, mailbox, until};

const NEW_PASSWORD: &str = "a whole new passphrase";

#[tokio::test]
async fn users_edit_their_own_display_name() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let me = admin
        .client
        .patch("/v1/users/me", &json!({ "display_name": "The Boss" }))
        .await;
    assert_eq!(me.assert_status(200)["display_name"], "The Boss");
    assert_eq!(
        admin.client.get("/v1/users/me").await.assert_status(200)["display_name"],
        "The Boss"
    );
    admin
        .client
        .patch("/v1/users/me", &json!({ "display_name": "  " }))
        .await
        .assert_error(422, "validation_failed");
    admin
        .client
        .patch(
            "/v1/users/me",
            &json!({ "display_name": "x", "role": "admin" }),
        )
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_other_session() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let ada = app.member(&admin, "ada@acme.test").await;
    let phone = app.session(
        &app.login("ada@acme.test", PASSWORD)
            .await
            .assert_status(200)
            .clone(),
    );
    ada.client
        .post(
            "/v1/users/me/password",
            &json!({ "current_password": "not my password", "new_password": NEW_PASSWORD }),
        )
        .await
        .assert_error(401, "invalid_credentials");
    ada.client
        .post(
            "/v1/users/me/password",
            &json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await
        .assert_error(422, "validation_failed");
    let changed = ada
        .client
        .post(
            "/v1/users/me/password",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    let fresh = app.session(&changed.assert_status(200).clone());
    // This session goes on with its new tokens; every other one is over.
    fresh.client.get("/v1/users/me").await.assert_status(200);
    phone.client.get("/v1/users/me").await.assert_status(401);
    ada.client.get("/v1/users/me").await.assert_status(401);
    app.api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": phone.refresh }),
        )
        .await
        .assert_status(401);
    app.login("ada@acme.test", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    app.login("ada@acme.test", NEW_PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_admin_issued_reset_token_sets_a_password_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let ada = app.member(&admin, "ada@acme.test").await;
    let path = format!("/v1/users/{}/password-reset", ada.user_id);
    ada.client
        .post(&path, &json!({}))
        .await
        .assert_error(403, "forbidden");
    let first = admin
        .client
        .post(&path, &json!({}))
        .await
        .assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let reset = admin.client.post(&path, &json!({})).await;
    let token = reset.assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM password_resets")
        .fetch_all(&app.pool)
        .await
        .expect("hashes");
    assert!(!stored.contains(&token), "tokens are stored hashed");
    let set = |token: &str| {
        let api = app.api.clone();
        let token = token.to_owned();
        async move {
            api.post(
                "/v1/auth/password-reset",
                &json!({ "token": token, "new_password": NEW_PASSWORD }),
            )
            .await
        }
    };
    set(&first).await.assert_error(403, "invalid_reset_token");
    set(&token).await.assert_status(204);
    set(&token).await.assert_error(403, "invalid_reset_token");
    ada.client.get("/v1/users/me").await.assert_status(401);
    app.login("ada@acme.test", NEW_PASSWORD)
        .await
        .assert_status(200);
    // Expired tokens are refused.
    let late = admin
        .client
        .post(&path, &json!({}))
        .await
        .assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    sqlx::query("UPDATE password_resets SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    set(&late).await.assert_error(403, "invalid_reset_token");
}

#[tokio::test]
async fn forgot_password_mails_a_code_only_to_existing_accounts_and_is_rate_limited() {
    let dir = tempfile::tempdir().expect("mailbox");
    let mailbox_dir = dir.path().to_owned();
    let app = TestApp::spawn_with(|c| {
        c.mail = poc_service::mail::MailConfig::Mailbox {
            dir: mailbox_dir.clone(),
            from: "no-reply@acme.test".into(),
        }
    })
    .await;
    let admin = app.admin().await;
    app.member(&admin, "ada@acme.test").await;
    let ask = |email: &str| {
        let api = app.api.clone();
        let email = email.to_owned();
        async move {
            api.post("/v1/auth/forgot-password", &json!({ "email": email }))
                .await
        }
    };
    // Unknown addresses get the same answer, and no mail.
    ask("nobody@acme.test").await.assert_status(202);
    ask("ada@acme.test").await.assert_status(202);
    let mail = until("the mail", || mailbox(dir.path()).pop()).await;
    assert!(mail.contains("To: ada@acme.test"), "{mail}");
    assert_eq!(
        mailbox(dir.path()).len(),
        1,
        "nothing for the unknown address"
    );
    let code = code_in(&mail);
    app.api
        .post(
            "/v1/auth/password-reset",
            &json!({ "token": code, "new_password": NEW_PASSWORD }),
        )
        .await
        .assert_status(204);
    app.login("ada@acme.test", NEW_PASSWORD)
        .await
        .assert_status(200);
    // A few per address, then 429.
    ask("ada@acme.test").await.assert_status(202);
    ask("ada@acme.test").await.assert_status(202);
    let refused = ask("ada@acme.test").await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.headers.contains_key("retry-after"));
}

/// A real SMTP server receives the mail (aiosmtpd, storing into a Maildir).
#[tokio::test]
async fn forgot_password_mail_goes_out_over_smtp() {
    let smtp = test_support::mail::SmtpReceiver::start();
    let app = TestApp::spawn_with(|c| {
        c.mail = poc_service::mail::MailConfig::Smtp {
            url: smtp.url().into(),
            from: "no-reply@acme.test".into(),
        }
    })
    .await;
    let admin = app.admin().await;
    app.member(&admin, "ada@acme.test").await;
    app.api
        .post(
            "/v1/auth/forgot-password",
            &json!({ "email": "ada@acme.test" }),
        )
        .await
        .assert_status(202);
    let mail = smtp.mail_to("ada@acme.test").await;
    let code = code_in(&mail);
    app.api
        .post(
            "/v1/auth/password-reset",
            &json!({ "token": code, "new_password": NEW_PASSWORD }),
        )
        .await
        .assert_status(204);
}
