//! Login throttling per account and per client IP.

use std::time::Duration;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn repeated_failures_block_the_account_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.account_max_failures = 3;
        c.throttle.block_for = Duration::from_secs(120);
    })
    .await;
    app.admin().await;
    for _ in 0..3 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    // Blocked now, even with the right password.
    let res = app.login("admin@acme.test", PASSWORD).await;
    res.assert_error(429, "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((100..=120).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn a_successful_login_resets_the_account_counter() {
    let app = TestApp::spawn_with(|c| c.throttle.account_max_failures = 3).await;
    app.admin().await;
    for _ in 0..2 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.login("admin@acme.test", PASSWORD)
        .await
        .assert_status(200);
    for _ in 0..2 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.login("admin@acme.test", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn one_client_ip_guessing_many_accounts_is_blocked_but_others_are_not() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.ip_max_failures = 4;
        c.throttle.account_max_failures = 100;
    })
    .await;
    app.admin().await;
    // Tests connect from 127.0.0.1, a trusted proxy in the test config, so X-Forwarded-For
    // names the client, as it does behind the router.
    let attacker = app.api.with_header("x-forwarded-for", "203.0.113.7");
    let login =
        |email: String| serde_json::json!({ "email": email, "password": "wrong password!" });
    for i in 0..4 {
        attacker
            .post("/v1/auth/login", &login(format!("user{i}@acme.test")))
            .await
            .assert_error(401, "invalid_credentials");
    }
    attacker
        .post("/v1/auth/login", &login("someone@acme.test".into()))
        .await
        .assert_error(429, "rate_limited");
    let honest = app.api.with_header("x-forwarded-for", "198.51.100.9");
    honest
        .post(
            "/v1/auth/login",
            &serde_json::json!({ "email": "admin@acme.test", "password": PASSWORD }),
        )
        .await
        .assert_status(200);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_dodge_the_ip_limit() {
    let app = TestApp::spawn_with(|c| {
        c.common.trusted_proxies.clear();
        c.throttle.ip_max_failures = 3;
        c.throttle.account_max_failures = 100;
    })
    .await;
    for i in 0..3 {
        let spoof = app
            .api
            .with_header("x-forwarded-for", &format!("192.0.2.{i}"));
        spoof
            .post(
                "/v1/auth/login",
                &serde_json::json!({ "email": "x@acme.test", "password": "wrong password!" }),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    let spoof = app.api.with_header("x-forwarded-for", "192.0.2.200");
    spoof
        .post(
            "/v1/auth/login",
            &serde_json::json!({ "email": "y@acme.test", "password": "wrong password!" }),
        )
        .await
        .assert_error(429, "rate_limited");
}
