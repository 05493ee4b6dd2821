//! Open registration: only addresses at the tenant's email domains, and no account (so no
//! tenant data) until the code mailed to the address comes back.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, code_in, mailbox, until};

/// A cell with open registration whose mail goes to a mailbox directory.
async fn open_cell() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("mailbox");
    let mailbox_dir = dir.path().to_owned();
    let app = TestApp::spawn_with(|c| {
        c.mail = poc_service::mail::MailConfig::Mailbox {
            dir: mailbox_dir,
            from: "no-reply@acme.test".into(),
        }
    })
    .await;
    let admin = app.admin().await;
    admin
        .client
        .patch("/v1/settings", &json!({ "registration": "open" }))
        .await
        .assert_status(200);
    (app, dir)
}

async fn confirm(app: &TestApp, email: &str, code: &str) -> test_support::ApiResponse {
    app.api
        .post(
            "/v1/auth/confirm-email",
            &json!({ "email": email, "code": code }),
        )
        .await
}

/// The newest mail to `email` and the code in it.
async fn code_for(dir: &tempfile::TempDir, email: &str, mails_before: usize) -> String {
    let to = format!("To: {email}");
    let mail = until("the confirmation mail", || {
        let mails = mailbox(dir.path());
        (mails.len() > mails_before)
            .then(|| mails.into_iter().rev().find(|m| m.contains(&to)))
            .flatten()
    })
    .await;
    assert!(mail.contains("confirmation code"), "{mail}");
    code_in(&mail)
}

#[tokio::test]
async fn open_registration_admits_the_tenants_domains_once_the_address_is_confirmed() {
    let (app, dir) = open_cell().await;
    app.register("dev@elsewhere.test", PASSWORD, None)
        .await
        .assert_error(403, "email_domain_not_allowed");
    let pending = app.register("Dev@acme.test", PASSWORD, None).await;
    assert_eq!(pending.assert_status(202)["email"], "dev@acme.test");
    // No account yet: nothing to sign in to.
    app.login("dev@acme.test", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    let code = code_for(&dir, "dev@acme.test", 0).await;
    assert_eq!(code.len(), 6, "{code}");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    confirm(&app, "dev@acme.test", wrong)
        .await
        .assert_error(403, "invalid_confirmation_code");
    let tokens = confirm(&app, "dev@acme.test", &code).await;
    assert_eq!(tokens.assert_status(201)["user"]["role"], "member");
    let me = app.session(tokens.assert_status(201));
    me.client.get("/v1/pocs").await.assert_status(200);
    app.login("dev@acme.test", PASSWORD)
        .await
        .assert_status(200);
    // A code works once; the address is taken now.
    confirm(&app, "dev@acme.test", &code)
        .await
        .assert_error(403, "invalid_confirmation_code");
    app.register("DEV@acme.test", PASSWORD, None)
        .await
        .assert_error(409, "conflict");
    // Malformed codes are field errors.
    let bad = confirm(&app, "dev@acme.test", "12345").await;
    bad.assert_error(422, "validation_failed");
    assert_eq!(bad.field_errors()[0][0], "code");
}

/// Registering an address someone else started (without its mail) replaces their pending
/// registration: only the newest code works, with the newest password.
#[tokio::test]
async fn a_pending_registration_cannot_squat_an_address() {
    let (app, dir) = open_cell().await;
    app.register("ada@acme.test", "a squatter's passphrase", None)
        .await
        .assert_status(202);
    let squatter = code_for(&dir, "ada@acme.test", 0).await;
    app.register("ada@acme.test", PASSWORD, None)
        .await
        .assert_status(202);
    let own = code_for(&dir, "ada@acme.test", 1).await;
    if squatter != own {
        confirm(&app, "ada@acme.test", &squatter)
            .await
            .assert_error(403, "invalid_confirmation_code");
    }
    confirm(&app, "ada@acme.test", &own)
        .await
        .assert_status(201);
    app.login("ada@acme.test", PASSWORD)
        .await
        .assert_status(200);
    app.login("ada@acme.test", "a squatter's passphrase")
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn codes_cannot_be_guessed() {
    let (app, dir) = open_cell().await;
    app.register("bob@acme.test", PASSWORD, None)
        .await
        .assert_status(202);
    let code = code_for(&dir, "bob@acme.test", 0).await;
    let wrong: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "{:06}",
                (code.parse::<u32>().expect("digits") + 1 + i) % 1_000_000
            )
        })
        .collect();
    for guess in &wrong[..5] {
        confirm(&app, "bob@acme.test", guess)
            .await
            .assert_error(403, "invalid_confirmation_code");
    }
    // Past five wrong codes the address is blocked, even for the right one.
    confirm(&app, "bob@acme.test", &code)
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn closing_registration_stops_pending_ones_and_invites_still_work() {
    let (app, dir) = open_cell().await;
    app.register("cy@acme.test", PASSWORD, None)
        .await
        .assert_status(202);
    let code = code_for(&dir, "cy@acme.test", 0).await;
    let admin = app.login("admin@acme.test", PASSWORD).await;
    let admin = app.session(admin.assert_status(200));
    admin
        .client
        .patch("/v1/settings", &json!({ "registration": "invite_only" }))
        .await
        .assert_status(200);
    confirm(&app, "cy@acme.test", &code)
        .await
        .assert_error(403, "registration_closed");
    // An invite needs no confirmation and no company address: the admin vouches for it.
    let invite = admin
        .client
        .post("/v1/invites", &json!({ "role": "member" }))
        .await;
    let token = invite.assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.register("guest@partner.test", PASSWORD, Some(&token))
        .await
        .assert_status(201);
}
