//! Account self-service on a local platform, through the router, with codes read from the
//! cell's mailbox with `mrbill tenant mail`: "forgot password", and open registration, which
//! admits only the tenant's email domains (`mrbill tenant create --email-domain`) and creates
//! the account once the mailed code comes back.

use std::time::{Duration, Instant};

use e2e_tests::PASSWORD;
use e2e_tests::platform::Platform;
use serde_json::{Value, json};

#[tokio::test]
async fn a_forgotten_password_is_reset_with_the_code_from_the_cells_mailbox() {
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    platform.admin_token(&acme).await;
    let email = acme["admin_invite"]["email"].as_str().expect("admin email");
    let api = platform.api("acme");
    let empty = platform
        .mrbill(&["tenant", "mail", "acme", "-o", "json"])
        .json();
    assert_eq!(empty, json!([]));
    api.post("/v1/auth/forgot-password", &json!({ "email": email }))
        .await
        .assert_status(202);
    let code = mailed_code(&platform, "acme", email).await;
    assert!(code.len() >= 40, "a reset token: {code}");
    let new_password = "reset through the mailbox";
    api.post(
        "/v1/auth/password-reset",
        &json!({ "token": code, "new_password": new_password }),
    )
    .await
    .assert_status(204);
    api.post(
        "/v1/auth/login",
        &json!({ "email": email, "password": PASSWORD }),
    )
    .await
    .assert_error(401, "invalid_credentials");
    api.post(
        "/v1/auth/login",
        &json!({ "email": email, "password": new_password }),
    )
    .await
    .assert_status(200);
    let text = platform.mrbill(&["tenant", "mail", "acme"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("Your password reset for acme"),
        "{}",
        text.stdout
    );
}

/// The code in the newest mail to `to` in the tenant's cell mailbox (waits up to 10 s).
async fn mailed_code(platform: &Platform, slug: &str, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mail: Value = loop {
        let mail = platform
            .mrbill(&["tenant", "mail", slug, "-o", "json"])
            .json();
        let newest = mail
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["to"] == to));
        if let Some(newest) = newest {
            break newest.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no mail to {to} in the cell's mailbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    test_support::mail::code_in(mail["message"].as_str().expect("message"))
}

#[tokio::test]
async fn open_registration_admits_the_tenants_domain_with_a_mailed_code() {
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    let admin = platform
        .api("acme")
        .with_token(&platform.admin_token(&acme).await);
    admin
        .patch("/v1/settings", &json!({ "registration": "open" }))
        .await
        .assert_status(200);
    let api = platform.api("acme");
    let register = |email: &str| {
        let body = json!({ "email": email, "password": PASSWORD });
        let api = api.clone();
        async move { api.post("/v1/auth/register", &body).await }
    };
    register("someone@gmail.com")
        .await
        .assert_error(403, "email_domain_not_allowed");
    register("dev@acme.example").await.assert_status(202);
    let code = mailed_code(&platform, "acme", "dev@acme.example").await;
    let tokens = api
        .post(
            "/v1/auth/confirm-email",
            &json!({ "email": "dev@acme.example", "code": code }),
        )
        .await;
    let token = tokens.assert_status(201)["access_token"]
        .as_str()
        .expect("token");
    let me = api.with_token(token).get("/v1/users/me").await;
    assert_eq!(me.assert_status(200)["role"], "member");
}
