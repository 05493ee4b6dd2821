//! Account self-service on a local platform: "forgot password" through the router, the code
//! read from the cell's mailbox with `mrbill tenant mail`, the new password set with it.

use std::time::{Duration, Instant};

use e2e_tests::PASSWORD;
use e2e_tests::platform::Platform;
use serde_json::json;

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
    let deadline = Instant::now() + Duration::from_secs(10);
    let mail = loop {
        let mail = platform
            .mrbill(&["tenant", "mail", "acme", "-o", "json"])
            .json();
        if let Some(first) = mail.as_array().and_then(|m| m.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no mail in the cell's mailbox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mail["to"], email);
    let message = mail["message"]
        .as_str()
        .expect("message")
        .replace("=\n", "");
    let code = message
        .lines()
        .find(|l| l.starts_with("    ") && l.trim().len() >= 40)
        .expect("a reset code")
        .trim()
        .to_owned();
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
